"""The two-objective toy problem of CAGrad (Liu et al., NeurIPS 2021, Figure 1).

Two losses of a point ``x = (x1, x2)``, reconstructed from the description in
the paper and the authors' script. Above the x1 axis (``x2 > 0``) each loss is
a logarithmic valley, ``log max(|a_k(x)|, 5e-6) + 6``, whose floor is the curve
``a_k(x) = 0``::

    a_1 = (-x1 - 7) / 2 - tanh(-x2),     a_2 = (-x1 + 3) / 2 + tanh(-x2) + 2,

gated in by ``max(tanh(x2 / 2), 0)``; below it each is a wide quadratic bowl,
``((x1 -+ 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20``, gated in by ``max(tanh(-x2 / 2), 0)``.
The valleys' floors meet the Pareto set in the upper half plane; the two
objectives conflict strongly across the x1 axis and inside the valleys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Where the logarithmic valleys are clipped (the authors' ``LOWER``).
LOWER = 5e-6
#: The starting points of the paper's Figure 1.
STARTS = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
#: The plotting window.
BOUNDS = (-10.0, 10.0)


def task_losses(x: Array) -> Array:
  """``(f1, f2)`` at ``x = (x1, x2)``; broadcasts over leading axes of ``x[..., :]``."""
  x1, x2 = x[..., 0], x[..., 1]
  valley_1 = jnp.log(jnp.maximum(jnp.abs(0.5 * (-x1 - 7) - jnp.tanh(-x2)), LOWER)) + 6
  valley_2 = jnp.log(jnp.maximum(jnp.abs(0.5 * (-x1 + 3) + jnp.tanh(-x2) + 2), LOWER)) + 6
  bowl_1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
  bowl_2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
  upper = jnp.maximum(jnp.tanh(x2 * 0.5), 0.0)
  lower = jnp.maximum(jnp.tanh(-x2 * 0.5), 0.0)
  return jnp.stack([valley_1 * upper + bowl_1 * lower, valley_2 * upper + bowl_2 * lower], -1)


def loss_grid(resolution: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(x1, x2, losses)`` on a regular grid of the window; losses has shape (res, res, 2)."""
  axis = np.linspace(*BOUNDS, resolution)
  x1, x2 = np.meshgrid(axis, axis)
  losses = np.asarray(task_losses(jnp.stack([x1, x2], -1)))
  return x1, x2, losses


def pareto_front(losses: np.ndarray) -> np.ndarray:
  """The indices (into the flattened grid) of the non-dominated points, sorted by f1.

  A point is kept when no other grid point is at least as good on both losses
  and better on one: sorted by f1 (ties by f2), it must improve on the best f2
  seen so far.
  """
  flat = losses.reshape(-1, 2)
  order = np.lexsort((flat[:, 1], flat[:, 0]))
  f2 = flat[order, 1]
  best_before = np.concatenate([[np.inf], np.minimum.accumulate(f2)[:-1]])
  return order[f2 < best_before]


def domination_gap(point: np.ndarray, front: np.ndarray) -> float:
  """How much some front point improves on ``point`` in both losses at once (<= 0: on the front).

  ``max_p min(f1 - f1_p, f2 - f2_p)`` over the front points ``p``.
  """
  return float(np.max(np.min(point[None, :] - front, axis=1)))
