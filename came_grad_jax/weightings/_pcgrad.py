"""PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020).

Each task gradient visits the other tasks in its own random order and, when it
conflicts with one, drops its component along that task's gradient::

    g_i <- g_i - min(<g_i, h_j>, 0) / ||h_j||^2 h_j,     d = sum_i g_i.

In the Gram form each projected gradient is a combination ``g_i = sum_k
A_ik h_k`` (row i of ``A`` starts at ``e_i``), its inner products are
``(A M)_ij``, and the coefficients are the column sums ``c = A^T 1``. The random
orders come from a PRNG key carried in the weighting's state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from came_grad_jax import _numerics as numerics
from came_grad_jax._numerics import safe_divide
from came_grad_jax._random import as_key, fresh_key
from came_grad_jax.weightings._base import StatefulWeighting, check_gram, scale_covariant_stateful

Array = jax.Array


def random_orders(key: Array, num_tasks: int) -> Array:
  """(K, K) int32: row i is a random permutation of the tasks, the order task i visits them."""
  keys = jax.random.split(key, num_tasks)
  return jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(keys).astype(jnp.int32)


def visit_others(step: Callable[[Any, Array], Any], carry: Any, orders: Array) -> Any:
  """For every task i, fold ``carry_i = step(carry_i, j)`` over ``j`` in ``orders[i]``, j != i.

  The tasks are independent (``jax.vmap``); the visits of one task are
  sequential (``jax.lax.scan``). ``carry`` has a leading task axis on every leaf.
  """

  def one_task(i, carry_i, order):
    def visit(c, j):
      new = step(c, j)
      return jax.tree.map(lambda old, upd: jnp.where(j == i, old, upd), c, new), None

    return jax.lax.scan(visit, carry_i, order)[0]

  return jax.vmap(one_task)(jnp.arange(orders.shape[0]), carry, orders)


def project_conflicting(gram: Array, orders: Array) -> Array:
  """The projected gradients' coefficients: row i of the result is ``g_i`` in the basis ``h_k``.

  Args:
    gram: Gram matrix ``M`` (K, K), float32 or wider.
    orders: (K, T) task indices; task i visits ``orders[i]`` in turn (itself skipped).

  Returns:
    ``A`` (K, K) with ``g_i = sum_k A_ik h_k``.

  Example:
    >>> m = jnp.array([[1.0, -1.0], [-1.0, 2.0]])
    >>> project_conflicting(m, jnp.array([[0, 1], [1, 0]]))
    Array([[1. , 0.5],
           [1. , 1. ]], dtype=float32)
  """
  k = gram.shape[0]
  norms = jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))

  def step(a, j):
    inner = a @ gram[:, j]  # <g_i, h_j>
    noise = numerics.is_negligible(jnp.abs(inner),
                                  jnp.sqrt(numerics.term_scale_sq(gram, a)) * norms[j], k)
    conflict = (inner < 0) & ~noise
    shift = safe_divide(inner, gram[j, j], where=conflict)
    return a.at[j].add(-shift)

  return visit_others(step, jnp.eye(k, dtype=gram.dtype), orders)


class PCGradState(NamedTuple):
  """State of :func:`pcgrad`."""

  key: Array
  """Typed PRNG key (``jax.random.key``) of the next step's task orders."""


def pcgrad(key: jax.Array | int = 0) -> StatefulWeighting:
  """PCGrad: ``c = A^T 1`` with ``A`` from ``project_conflicting`` in random orders.

  After visiting task j, ``<g_i, h_j> >= 0``; without conflicts ``c = 1``
  (linear scalarization). Each step draws fresh orders from the key in the
  state, so runs are reproducible from ``key``.

  Args:
    key: the PRNG key of the initial state (``jax.random.key``) or an int seed.

  Returns:
    A :class:`StatefulWeighting` whose state is a :class:`PCGradState`.

  Example:
    >>> w = pcgrad(key=0)
    >>> c, state = w.apply(jnp.array([[1.0, -1.0], [-1.0, 2.0]]), w.init(2))
    >>> c
    Array([2. , 1.5], dtype=float32)
  """
  key = as_key(key)

  def init(num_tasks: int | None) -> PCGradState:
    del num_tasks
    return PCGradState(fresh_key(key))

  def apply(gram: Array, state: PCGradState) -> tuple[Array, PCGradState]:
    gram = check_gram(gram)
    key, sub = jax.random.split(state.key)
    a = project_conflicting(gram, random_orders(sub, gram.shape[0]))
    return jnp.sum(a, axis=0), PCGradState(key)

  return scale_covariant_stateful(StatefulWeighting(init, apply))
