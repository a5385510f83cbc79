"""MoDo (Chen, Fernando, Ying & Chen, "Three-Way Trade-Off in Multi-Objective Learning:
Optimization, Generalization and Conflict-Avoidance", JMLR 2024).

The MGDA weights are not solved for but tracked: each step they take one
projected gradient step on ``1/2 ||sum_k lambda_k h_k||^2 + rho/2 ||lambda||^2``::

    lambda <- Pi_simplex(lambda - gamma (M + rho I) lambda),    d = sum_k lambda_k h_k,

``lambda`` kept in the state (it starts at ``1/K``). MoCo (Fernando et al. 2023)
takes the same step on the Gram matrix of tracked gradients.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax._simplex import project_simplex
from came_grad_jax.weightings._base import StatefulWeighting, check_gram

Array = jax.Array


class MoDoState(NamedTuple):
  """State of :func:`modo`."""

  weights: Array
  """``lambda`` (K,) on the simplex."""


def modo(gamma: float = 1e-3, rho: float = 0.1) -> StatefulWeighting:
  """MoDo (deterministic): one projected gradient step on ``lambda`` per update, ``c = lambda``.

  Args:
    gamma: step size of ``lambda``, > 0 (LibMTL's default 1e-3; the step is on
      the raw Gram matrix, so it must match the gradients' squared scale).
    rho: ``rho >= 0``, the regulariser pulling ``lambda`` toward ``1/K``
      (LibMTL's default 0.1).

  Returns:
    A :class:`StatefulWeighting` whose state is a :class:`MoDoState`.

  Raises:
    ValueError: if a hyperparameter is out of range, or (at ``init``) K is unknown.

  Notes:
    The paper's MoDo is stochastic: the step uses ``G(xi1)^T G(xi2)`` from two
    independent batches and the update ``G(xi3) lambda`` a third. This is the
    single-batch variant: one Gram matrix for all three (as LibMTL does).
    TorchJD 0.18's ``MoDoWeighting`` takes the same step with the Euclidean
    projection onto the simplex and ``rho = 0.1`` (this weighting matches it
    to 9e-16 on the same Gram matrix); it takes the cross matrix of two batches
    where this takes one.

  References:
    Lisha Chen, Heshan Fernando, Yiming Ying, Tianyi Chen, "Three-Way Trade-Off in
    Multi-Objective Learning: Optimization, Generalization and Conflict-Avoidance",
    JMLR 25 (2024). https://arxiv.org/abs/2305.20057

  Example:
    >>> w = modo(gamma=0.1, rho=0.0)
    >>> c, state = w.apply(jnp.array([[1.0, 0.0], [0.0, 4.0]]), w.init(2))
    >>> c  # (1/2, 1/2) - 0.1 (1/2, 2), projected
    Array([0.575, 0.425], dtype=float32)
  """
  hyperparams.check_scalar("gamma", gamma, lower=0.0, lower_open=True)
  hyperparams.check_scalar("rho", rho, lower=0.0)

  def init(num_tasks: int | None) -> MoDoState:
    if num_tasks is None:
      raise ValueError("modo needs the number of tasks at construction (its state holds the "
                       "K weights): pass task_weights (K weights) or num_tasks=K")
    return MoDoState(jnp.full((num_tasks,), 1.0 / num_tasks))

  def apply(gram: Array, state: MoDoState) -> tuple[Array, MoDoState]:
    gram = check_gram(gram)
    lam = state.weights.astype(gram.dtype)
    lam = project_simplex(lam - gamma * (gram @ lam + rho * lam))
    return lam, MoDoState(lam.astype(state.weights.dtype))

  return StatefulWeighting(init, apply)
