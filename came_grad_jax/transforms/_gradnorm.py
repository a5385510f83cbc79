"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization
for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018).

Task weights ``q`` (summing to K, in the state) are trained so that the weighted
gradient norms at a chosen shared layer ``W`` follow the tasks' relative
training rates::

    G_k = q_k ||w_k grad_W L_k||,   r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0)),
    L_grad = sum_k |G_k - mean(G) r_k^alpha|     (the target held constant),
    q <- q - lr dL_grad/dq,   q <- K max(q, 0) / sum max(q, 0),

and the update is ``d = sum_k q_k w_k g_k`` with this step's (not yet updated) ``q``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._gram import combine
from came_grad_jax._numerics import compute_dtype, safe_divide
from came_grad_jax._stacked import (
  all_finite,
  checked_num_tasks,
  per_task_sum,
  required_num_tasks,
  skip_unless,
  weights_or_ones,
)

Array = jax.Array
LayerSelector = str | Callable[[str], bool] | None


class GradNormState(NamedTuple):
  """State of :func:`gradnorm`."""

  weights: Array
  """``q`` (K,), summing to K."""
  initial_losses: Array
  """``L(0)`` (K,), the first step's losses."""
  count: Array
  """Number of steps seen, int32."""


def _selector(layer: LayerSelector) -> Callable[[str], bool]:
  if layer is None:
    return lambda path: True
  if isinstance(layer, str):
    return lambda path: layer in path
  if callable(layer):
    return layer
  raise TypeError(f"layer must be None, a str (part of a parameter path) or a callable "
                  f"path -> bool, got {type(layer).__name__}")


def layer_norms(updates, layer: LayerSelector = None) -> Array:
  """``||grad_W L_k||`` (K,) over the leaves whose path (``jax.tree_util.keystr``) ``layer`` selects.

  Raises:
    ValueError: naming ``layer`` when it selects no leaf.

  Example:
    >>> g = {"shared": jnp.array([[3.0, 4.0], [0.0, 1.0]]), "head": jnp.ones((2, 3))}
    >>> layer_norms(g, "shared")
    Array([5., 1.], dtype=float32)
  """
  select = _selector(layer)
  paths = jax.tree_util.tree_flatten_with_path(updates)[0]
  chosen = [leaf for path, leaf in paths if select(jax.tree_util.keystr(path))]
  if not chosen:
    raise ValueError(f"layer={layer!r} selects no parameter; paths are "
                     f"{[jax.tree_util.keystr(p) for p, _ in paths][:8]}")
  squares = per_task_sum([jnp.square(x.astype(compute_dtype(x.dtype))) for x in chosen])
  return jnp.sqrt(squares)


def gradnorm(alpha: float = 1.5, lr: float = 0.025, layer: LayerSelector = None,
             task_weights: jax.typing.ArrayLike | None = None, *,
             num_tasks: int | None = None) -> optax.GradientTransformationExtraArgs:
  """GradNorm as an Optax transformation; ``update`` takes the task losses: ``losses=``.

  Call it as ``tx.update(task_grads, state, params, losses=losses)`` (inside
  ``optax.chain`` too, which passes extra arguments on).

  Args:
    alpha: the restoring force toward equal training rates (the paper's 1.5).
    lr: step size of the weights (plain gradient descent on ``L_grad``).
    layer: which parameters are the "last shared layer" ``W``: a str contained in
      their path (``jax.tree_util.keystr``, e.g. ``"['encoder']['out']"`` or just
      ``"encoder"``), a callable ``path -> bool``, or None for all parameters.
    task_weights: ``w`` (K,), finite and >= 0; None means all ones.
    num_tasks: K (required: the state holds K weights).

  Returns:
    An ``optax.GradientTransformationExtraArgs``: stacked task gradients and
    ``losses`` (K,) in, a params-shaped update out.

  Raises:
    ValueError: if K is unknown, a hyperparameter is out of range, ``losses``
      is missing or not (K,), or ``layer`` selects nothing.

  Notes:
    The paper differentiates only at ``W`` to save backward passes; here the
    K task gradients are already there (:func:`came_grad_jax.value_and_task_grads`)
    and ``W`` only chooses whose norms are balanced. Non-finite or non-positive
    losses skip the step (NaN update, state unchanged). The weights sum to K, as
    in the paper and LibMTL (whose weights are trained by the model's optimizer;
    here by plain gradient descent with ``lr``, clipped at 0). TorchJD's
    ``GradNormWeighting(n_tasks, alpha)`` is the same Algorithm 1 (weights summing to
    K) with the weights stepped by an external optimizer on ``balancing_loss()``
    and norms from the Gramian it is given (all columns, or the rows you pass).

  References:
    Zhao Chen, Vijay Badrinarayanan, Chen-Yu Lee, Andrew Rabinovich, "GradNorm:
    Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks",
    ICML 2018. https://arxiv.org/abs/1711.02257

  Example:
    >>> tx = gradnorm(1.5, layer="shared", num_tasks=2)
    >>> grads = {"shared": jnp.array([[3.0, 4.0], [0.0, 1.0]]), "head": jnp.ones((2, 3))}
    >>> params = {"shared": jnp.zeros(2), "head": jnp.zeros(3)}
    >>> update, state = tx.update(grads, tx.init(params), params, losses=jnp.array([1.0, 2.0]))
    >>> update["shared"]  # q = 1 at the first step: the sum
    Array([3., 5.], dtype=float32)
    >>> state.weights  # the larger gradient is turned down
    Array([0.921..., 1.078...], dtype=float32)
  """
  hyperparams.check_scalar("alpha", alpha, lower=0.0)
  hyperparams.check_scalar("lr", lr, lower=0.0, lower_open=True)
  _selector(layer)
  task_weights = hyperparams.check_task_weights(task_weights)
  k_static = required_num_tasks(task_weights, num_tasks, "gradnorm", "the K task weights")

  def init_fn(params):
    del params
    return GradNormState(jnp.ones((k_static,)), jnp.ones((k_static,)), jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, *, losses=None, **extra_args):
    del params, extra_args
    k = checked_num_tasks(updates, k_static, "gradnorm")
    if losses is None:
      raise ValueError("gradnorm needs the task losses: call update(task_grads, state, params, "
                       "losses=losses)")
    losses = jax.lax.stop_gradient(jnp.asarray(losses))
    if losses.shape != (k,):
      raise ValueError(f"losses must have shape ({k},), got {losses.shape}")
    w = weights_or_ones(task_weights, k)
    q = state.weights
    losses = losses.astype(q.dtype)
    out = combine(updates, (q * w).astype(q.dtype))
    norms = (jnp.abs(w) * layer_norms(updates, layer)).astype(q.dtype)  # ||w_k grad_W L_k||
    initial = jnp.where(state.count == 0, losses, state.initial_losses)
    rates = losses / initial
    rates = rates / jnp.mean(rates)
    weighted = q * norms
    target = jnp.mean(weighted) * rates**alpha
    new_q = jnp.maximum(q - lr * jnp.sign(weighted - target) * norms, 0.0)
    total = jnp.sum(new_q)
    new_q = jnp.where(total > 0, k * safe_divide(new_q, total), q)
    new_state = GradNormState(new_q, initial, jnp.asarray(optax.safe_increment(state.count)))
    ok = all_finite(updates) & jnp.all(jnp.isfinite(losses)) & jnp.all(losses > 0)
    return skip_unless(ok, out, new_state, state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
