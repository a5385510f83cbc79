"""Optax transformations: stacked task gradients in, one params-shaped update out.

Each transformation (1) validates the stacked task gradients (leading axis K on
every leaf), (2) computes the Gram matrix of the task-weighted gradients
``h_k = w_k g_k`` leaf by leaf, (3) asks a weighting for the coefficients ``c``
and (4) returns ``sum_k c_k h_k``, recording the step's diagnostics in its
state. Shape contract as ``optax.contrib.differentially_private_aggregate``:
updates carry a leading axis that the transformation reduces.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._diagnostics import (
  Diagnostics,
  compute_diagnostics,
  empty_diagnostics,
  keep_like,
)
from came_grad_jax._gram import checked_gram, combine, num_tasks_of
from came_grad_jax._numerics import compute_dtype
from came_grad_jax.weightings import AnyWeighting, StatefulWeighting, as_stateful, came

Array = jax.Array


class AggregateState(NamedTuple):
  """State of :func:`aggregate` and :func:`came_grad`."""

  count: Array
  """Number of updates applied, int32."""
  weighting_state: Any
  """The weighting's own state (empty for stateless weightings)."""
  diagnostics: Diagnostics
  """The last step's diagnostics (zeros before the first step)."""


def resolve_num_tasks(task_weights, num_tasks) -> int | None:
  """K when it is known at construction (from ``task_weights`` or ``num_tasks``), else None."""
  if num_tasks is not None:
    if isinstance(num_tasks, jax.Array):
      raise TypeError(
          "num_tasks must be a static Python int, got an array; under "
          "optax.inject_hyperparams pass static_args=('num_tasks',)")
    if (isinstance(num_tasks, (bool, np.bool_)) or not isinstance(num_tasks, numbers.Integral)
        or int(num_tasks) < 1):
      raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
    num_tasks = int(num_tasks)
  if task_weights is not None:
    k = np.shape(task_weights)[0]
    if num_tasks is not None and num_tasks != k:
      raise ValueError(f"num_tasks={num_tasks} disagrees with len(task_weights)={k}")
    return k
  return num_tasks


def _state_dtype(params) -> jnp.dtype:
  leaves = jax.tree_util.tree_leaves(params)
  floating = [jnp.result_type(x) for x in leaves
              if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
  return compute_dtype(jnp.result_type(*floating)) if floating else jnp.dtype(jnp.float32)


def _check_against_params(updates, params, k: int) -> None:
  """Stacked task gradients must be params-shaped with a leading K (shapes are static)."""
  if params is None:
    return
  try:
    pairs = jax.tree.map(lambda u, p: (jnp.shape(u), jnp.shape(p)), updates, params)
  except ValueError:
    raise ValueError("updates and params have different tree structures: stacked task "
                     "gradients are params-shaped with a leading task axis K") from None
  for got, want in jax.tree.leaves(pairs, is_leaf=lambda x: isinstance(x, tuple)
                                   and len(x) == 2 and isinstance(x[0], tuple)):
    if tuple(got) != (k, *want):
      raise ValueError(
          f"updates must be params-shaped with a leading task axis K = {k}: got a leaf "
          f"of shape {tuple(got)} for a parameter of shape {tuple(want)}. Pass stacked "
          "task gradients (value_and_task_grads); if this transformation sits inside "
          "optax.MultiSteps, put MultiSteps after it instead: "
          "optax.chain(<method>, optax.MultiSteps(optax.adamw(...), k))")


def _weighted_aggregate(
    weighting_at: Callable[[Array], StatefulWeighting],
    task_weights: jax.typing.ArrayLike | None,
    num_tasks: int | None,
    name: str,
    precise_gram: bool = False,
) -> optax.GradientTransformation:
  """The transformation, given the weighting to use at each step count."""
  task_weights = hyperparams.check_task_weights(task_weights)
  k_static = resolve_num_tasks(task_weights, num_tasks)
  # Fails here, not at the first update, for a weighting whose state needs K.
  weighting_at(jnp.zeros([], jnp.int32)).init(k_static)

  def init_fn(params: optax.Params) -> Any:
    return AggregateState(
        count=jnp.zeros([], jnp.int32),
        weighting_state=weighting_at(jnp.zeros([], jnp.int32)).init(k_static),
        diagnostics=empty_diagnostics(k_static, _state_dtype(params)))

  def update_fn(updates, state, params=None):
    k = num_tasks_of(updates)
    if k_static is not None and k != k_static:
      raise ValueError(
          f"updates have a leading task axis of {k} but {name} was built for K = "
          f"{k_static} tasks (from task_weights or num_tasks)")
    _check_against_params(updates, params, k)
    weights = jnp.ones((k,)) if task_weights is None else task_weights
    m, in_range = checked_gram(updates, weights, precise=precise_gram)
    coeffs, weighting_state = weighting_at(state.count).apply(m, state.weighting_state)
    coeffs = coeffs.astype(m.dtype)
    out = combine(updates, coeffs * jnp.asarray(weights, m.dtype))
    diag_dtype = state.diagnostics.drift_deg.dtype
    diagnostics = keep_like(compute_diagnostics(m, coeffs), state.diagnostics, diag_dtype)
    new_state = AggregateState(jnp.asarray(optax.safe_increment(state.count)), weighting_state,
                               diagnostics)
    # Non-finite gradients propagate to the update (for optax.apply_if_finite
    # downstream to reject), but never into the state. A Gram matrix that lost
    # information to float32's range on finite gradients makes the update NaN:
    # skipped, not wrong (see checked_gram).
    ok = jnp.all(jnp.isfinite(m)) & in_range
    out = jax.tree.map(lambda x: jnp.where(ok, x, jnp.nan).astype(x.dtype), out)
    # Float leaves keep their dtype (a float64 solve, precise_gram, on a float32 state).
    new_state = jax.tree.map(
        lambda new, old: (jnp.where(ok, new, old).astype(jnp.result_type(old))
                          if jnp.issubdtype(jnp.result_type(old), jnp.floating)
                          else jnp.where(ok, new, old)), new_state, state)
    return out, new_state

  return optax.GradientTransformation(init_fn, update_fn)


def aggregate(
    weighting: AnyWeighting,
    task_weights: jax.typing.ArrayLike | None = None,
    *,
    num_tasks: int | None = None,
    precise_gram: bool = False,
) -> optax.GradientTransformation:
  """Combine stacked task gradients with any weighting.

  ``update = sum_k c_k w_k g_k`` with ``c = weighting(M)``,
  ``M_ij = w_i w_j <g_i, g_j>``.

  Args:
    weighting: ``gram -> coefficients`` or a :class:`StatefulWeighting`.
    task_weights: ``w`` (K,), finite and >= 0; None means all ones.
    num_tasks: K, optional: K is read from the updates' leading axis. When K
      is known at construction (``num_tasks`` or ``task_weights``) the state
      also keeps the K-shaped diagnostics (cosines, task norms, coefficients);
      otherwise those fields are None and only the scalar ones are kept.
    precise_gram: accumulate ``M`` in float64 and solve the weighting in
      float64 (needs ``jax_enable_x64``; the update keeps the gradients'
      dtype). For float32 runs with more tasks than the gradients' rank, where
      a float32 Gram matrix loses about half the digits (``docs/design.md``,
      "Precision"); it costs a float64 pass over the gradients.

  Returns:
    An ``optax.GradientTransformation`` whose ``update`` takes stacked task
    gradients (leading axis K on every leaf) and returns a params-shaped update.

  Example:
    >>> from came_grad_jax import weightings
    >>> tx = optax.chain(aggregate(weightings.cagrad(0.4), num_tasks=2), optax.sgd(0.1))
  """
  stateful = as_stateful(weighting)
  if not isinstance(precise_gram, bool):
    raise TypeError(f"precise_gram must be a bool, got {precise_gram!r}")
  return _weighted_aggregate(lambda count: stateful, task_weights, num_tasks, "aggregate",
                             precise_gram)


def came_grad(
    rho: hyperparams.ScalarOrSchedule = 0.5,
    kappa: hyperparams.ScalarOrSchedule = 1.5,
    nu: hyperparams.ScalarOrSchedule = 0.2,
    task_weights: jax.typing.ArrayLike | None = None,
    *,
    num_tasks: int | None = None,
) -> optax.GradientTransformation:
  """CAME-Grad: conflict-averse, magnitude-enhanced multi-task gradient descent.

  ``g_final = (1 - nu) u_en + nu g_joint`` where ``u_en = kappa ||g_joint||
  u_rect / ||u_rect||`` and ``u_rect = argmax_{||u - mu|| <= rho ||mu||} min_k
  <h_k, u>``; ``h_k = w_k g_k``, ``g_joint = sum_k h_k``, ``mu = g_joint / K``.
  See :func:`came_grad_jax.weightings.came` and its stages for the equations.

  Args:
    rho: conflict radius (>= 0), a float, array or schedule of the step count.
    kappa: magnitude gain (> 0), float, array or schedule.
    nu: fusion coefficient in [0, 1], float, array or schedule.
    task_weights: ``w`` (K,), finite and >= 0; None means all ones.
    num_tasks: K, optional (K is read from the updates); given, the state keeps
      the K-shaped diagnostics too (see :func:`aggregate`).

  Returns:
    An ``optax.GradientTransformation`` reducing stacked task gradients to one
    update; chain it before a base optimizer.

  References:
    The Double Dilemma in Multi-Task Radiology Report Generation: A Gradient
    Dynamics Analysis and Solution, ICML 2026 (arXiv:2605.22635); this is the
    library's reconstruction of its optimizer.

  Example:
    >>> tx = optax.chain(came_grad(0.5, 1.5, 0.2, task_weights=[1.0, 4.0]),
    ...                  optax.adamw(1e-4))
  """
  for name, value, lower, upper, lower_open in (
      ("rho", rho, 0.0, float("inf"), False), ("kappa", kappa, 0.0, float("inf"), True),
      ("nu", nu, 0.0, 1.0, False)):
    hyperparams.check_scalar(name, value, lower=lower, upper=upper, lower_open=lower_open)

  def weighting_at(count):
    return as_stateful(came(hyperparams.resolve(rho, count),
                            hyperparams.resolve(kappa, count),
                            hyperparams.resolve(nu, count)))

  return _weighted_aggregate(weighting_at, task_weights, num_tasks, "came_grad")
