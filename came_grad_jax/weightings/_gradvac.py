"""GradVac (Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task
Optimization in Massively Multilingual Models", ICLR 2021).

PCGrad's generalisation: each task gradient ``g_i`` visits the others in a
random order and, when its cosine ``phi_ij`` with ``h_j`` is below a target
``phi_hat_ij``, adds the multiple of ``h_j`` that lifts the cosine to the
target::

    g_i <- g_i + ||g_i|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
                 / (||h_j|| sqrt(1 - phi_hat^2)) h_j.

The targets are exponential moving averages of the observed cosines, kept in
the state: ``phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij``. They start at
0, where the rule is PCGrad's projection. ``d = sum_i g_i``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax import _numerics as numerics
from came_grad_jax._numerics import safe_divide
from came_grad_jax._random import as_key, fresh_key
from came_grad_jax.weightings._base import StatefulWeighting, check_gram, scale_covariant_stateful
from came_grad_jax.weightings._pcgrad import random_orders, visit_others

Array = jax.Array


def vaccinate(gram: Array, targets: Array, orders: Array,
              beta: float) -> tuple[Array, Array]:
  """Adjust each task gradient toward its target cosines; returns ``(A, new_targets)``.

  Args:
    gram: Gram matrix ``M`` (K, K), float32 or wider.
    targets: ``phi_hat`` (K, K), row i the targets of task i.
    orders: (K, T) task indices; task i visits ``orders[i]`` in turn (itself skipped).
    beta: EMA rate of the targets, in [0, 1].

  Returns:
    ``A`` (K, K) with ``g_i = sum_k A_ik h_k``, and the updated targets (a
    target is left as it was when a cosine is undefined: a zero gradient).

  Example:
    >>> m = jnp.array([[1.0, -1.0], [-1.0, 2.0]])
    >>> a, t = vaccinate(m, jnp.zeros((2, 2)), jnp.array([[0, 1], [1, 0]]), 0.5)
    >>> a.round(4)  # zero targets: PCGrad's projections
    Array([[1. , 0.5],
           [1. , 1. ]], dtype=float32)
  """
  k = gram.shape[0]
  # Safe square roots: the sines vanish on a task's own (skipped) visit, where phi = 1, and
  # a plain sqrt's infinite derivative there would make jax.grad NaN.
  sqrt = numerics.safe_sqrt
  norms = sqrt(jnp.diagonal(gram))

  def step(carry, j):
    a, row = carry
    g_norm = numerics.norm_of(gram, a)
    defined = (g_norm > 0) & (norms[j] > 0)
    phi = jnp.clip((a @ gram[:, j]) / jnp.where(defined, g_norm * norms[j], 1.0), -1.0, 1.0)
    target = row[j]
    denom = norms[j] * sqrt(1.0 - target**2)
    lift = defined & (phi < target) & (denom > 0)
    weight = g_norm * (target * sqrt(1.0 - phi**2) - phi * sqrt(1.0 - target**2))
    a = a.at[j].add(safe_divide(weight, denom, where=lift))
    row = row.at[j].set(jnp.where(defined, (1.0 - beta) * target + beta * phi, target))
    return a, row

  return visit_others(step, (jnp.eye(k, dtype=gram.dtype), targets.astype(gram.dtype)), orders)


class GradVacState(NamedTuple):
  """State of :func:`gradvac`."""

  key: Array
  """Typed PRNG key (``jax.random.key``) of the next step's task orders."""
  targets: Array
  """(K, K) EMA cosine targets ``phi_hat_ij`` (diagonal unused)."""


def gradvac(beta: float = 0.01, key: jax.Array | int = 0) -> StatefulWeighting:
  """GradVac: ``c = A^T 1`` with ``A`` from ``vaccinate``, EMA targets in the state.

  Args:
    beta: EMA rate of the cosine targets in [0, 1] (the paper's 1e-2).
    key: the PRNG key of the task orders (``jax.random.key``) or an int seed.

  Returns:
    A :class:`StatefulWeighting` whose state is a :class:`GradVacState`.

  Example:
    >>> w = gradvac(beta=0.5)
    >>> c, state = w.apply(jnp.array([[1.0, -1.0], [-1.0, 2.0]]), w.init(2))
    >>> state.targets  # half of the observed cosine -1/sqrt(2)
    Array([[ 0.        , -0.35355338],
           [-0.35355338,  0.        ]], dtype=float32)
  """
  hyperparams.check_scalar("beta", beta, lower=0.0, upper=1.0)
  key = as_key(key)

  def init(num_tasks: int | None) -> GradVacState:
    if num_tasks is None:
      raise ValueError(
          "gradvac needs the number of tasks at construction (its state holds the K x K "
          "EMA cosine targets): pass task_weights (K weights) or num_tasks=K")
    return GradVacState(fresh_key(key), jnp.zeros((num_tasks, num_tasks)))

  def apply(gram: Array, state: GradVacState) -> tuple[Array, GradVacState]:
    gram = check_gram(gram)
    key, sub = jax.random.split(state.key)
    a, targets = vaccinate(gram, state.targets, random_orders(sub, gram.shape[0]), beta)
    return jnp.sum(a, axis=0), GradVacState(key, targets.astype(state.targets.dtype))

  return scale_covariant_stateful(StatefulWeighting(init, apply))
