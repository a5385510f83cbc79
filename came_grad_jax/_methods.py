"""One ``optax.GradientTransformation`` per multi-task gradient method.

Each factory wraps the weighting of the same name in
:mod:`came_grad_jax.weightings` with :func:`came_grad_jax.aggregate`: stacked
task gradients (leading axis K on every leaf) in, ``sum_k c_k w_k g_k`` out,
``c`` the method's coefficients for the Gram matrix of ``h_k = w_k g_k``. The
state is an :class:`~came_grad_jax.AggregateState` (the weighting's own state,
e.g. PCGrad's PRNG key, and the step's diagnostics). Chain a base optimizer
after it, e.g. ``optax.chain(mgda(num_tasks=3), optax.adam(1e-3))``.
CAME-Grad itself is :func:`came_grad_jax.came_grad`.
"""

from __future__ import annotations

import jax
import optax

from came_grad_jax import weightings
from came_grad_jax._transform import aggregate
from came_grad_jax.weightings._aligned_mtl import Scale

TaskWeights = jax.typing.ArrayLike | None


def linear_scalarization(task_weights: TaskWeights = None, *,
                         num_tasks: int | None = None) -> optax.GradientTransformation:
  """Linear scalarization: ``d = sum_k w_k g_k``, the gradient of ``sum_k w_k L_k``.

  Example:
    >>> tx = optax.chain(linear_scalarization(num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.linear_scalarization(), task_weights, num_tasks=num_tasks)


def mgda(task_weights: TaskWeights = None, *,
         num_tasks: int | None = None) -> optax.GradientTransformation:
  """MGDA (Sener & Koltun 2018): the min-norm point of the hull of the ``h_k``.

  ``d = sum_k alpha*_k h_k``, ``alpha* = argmin_{alpha in simplex} ||sum_k alpha_k h_k||``.

  Example:
    >>> tx = optax.chain(mgda(num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.mgda(), task_weights, num_tasks=num_tasks)


def pcgrad(key: jax.Array | int = 0, task_weights: TaskWeights = None, *,
           num_tasks: int | None = None) -> optax.GradientTransformation:
  """PCGrad (Yu et al. 2020): conflicting components projected out, in random task orders.

  ``g_i <- g_i - min(<g_i, h_j>, 0) h_j / ||h_j||^2`` for the other tasks j in a
  random order, ``d = sum_i g_i``; the orders' PRNG key lives in the state.

  Example:
    >>> tx = optax.chain(pcgrad(key=0), optax.sgd(0.1))
  """
  return aggregate(weightings.pcgrad(key), task_weights, num_tasks=num_tasks)


def upgrad(task_weights: TaskWeights = None, *,
           num_tasks: int | None = None) -> optax.GradientTransformation:
  """UPGrad (Quinton & Rey 2024): ``d = (1/K) sum_i pi_C(h_i)``, C the dual cone of the ``h_k``.

  Example:
    >>> tx = optax.chain(upgrad(num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.upgrad(), task_weights, num_tasks=num_tasks)


def dualproj(task_weights: TaskWeights = None, *,
             num_tasks: int | None = None) -> optax.GradientTransformation:
  """DualProj: ``d = pi_C(mu)``, the mean gradient projected onto the dual cone of the ``h_k``.

  Example:
    >>> tx = optax.chain(dualproj(num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.dualproj(), task_weights, num_tasks=num_tasks)


def imtl_g(task_weights: TaskWeights = None, *,
           num_tasks: int | None = None) -> optax.GradientTransformation:
  """IMTL-G (Liu et al. 2021): equal projections ``<d, h_k / ||h_k||>``, ``sum_k alpha_k = 1``.

  Example:
    >>> tx = optax.chain(imtl_g(num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.imtl_g(), task_weights, num_tasks=num_tasks)


def aligned_mtl(scale: Scale = "min", task_weights: TaskWeights = None, *,
                num_tasks: int | None = None) -> optax.GradientTransformation:
  """Aligned-MTL (Senushkin et al. 2023): the sum of the gradients aligned to an orthogonal set.

  ``d = 1^T B H``, ``B = sigma V_r Lambda_r^{-1/2} V_r^T`` from ``M = V Lambda V^T``.

  Example:
    >>> tx = optax.chain(aligned_mtl("min", num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.aligned_mtl(scale), task_weights, num_tasks=num_tasks)


def nash_mtl(task_weights: TaskWeights = None, *,
             num_tasks: int | None = None) -> optax.GradientTransformation:
  """Nash-MTL (Navon et al. 2022): ``d = sum_k alpha_k h_k`` with ``M alpha = 1 / alpha``.

  Example:
    >>> tx = optax.chain(nash_mtl(num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.nash_mtl(), task_weights, num_tasks=num_tasks)


def gradvac(beta: float = 0.01, key: jax.Array | int = 0, task_weights: TaskWeights = None, *,
            num_tasks: int | None = None) -> optax.GradientTransformation:
  """GradVac (Wang et al. 2021): cosines lifted to EMA targets kept in the state.

  Example:
    >>> tx = optax.chain(gradvac(beta=0.01, num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.gradvac(beta, key), task_weights, num_tasks=num_tasks)


def cagrad(c: float = 0.4, task_weights: TaskWeights = None, *, num_tasks: int | None = None,
           rescale: bool = True) -> optax.GradientTransformation:
  """CAGrad (Liu et al. 2021): ``d = mu + c ||mu|| h_alpha* / ||h_alpha*||`` (over ``1 + c^2``).

  Example:
    >>> tx = optax.chain(cagrad(0.4, num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.cagrad(c, rescale=rescale), task_weights, num_tasks=num_tasks)


def came_s1(rho: float = 0.5, task_weights: TaskWeights = None, *,
            num_tasks: int | None = None) -> optax.GradientTransformation:
  """CAME-Grad ablation, S1 only: ``d = u_rect``.

  Example:
    >>> tx = optax.chain(came_s1(0.5, num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.came_s1(rho), task_weights, num_tasks=num_tasks)


def came_s1_s2(rho: float = 0.5, kappa: float = 1.5, task_weights: TaskWeights = None, *,
               num_tasks: int | None = None) -> optax.GradientTransformation:
  """CAME-Grad ablation, S1 + S2: ``d = u_en = kappa ||g_joint|| u_rect / ||u_rect||``.

  Example:
    >>> tx = optax.chain(came_s1_s2(0.5, 1.5, num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.came_s1_s2(rho, kappa), task_weights, num_tasks=num_tasks)


def came_s1_s3(rho: float = 0.5, nu: float = 0.2, task_weights: TaskWeights = None, *,
               num_tasks: int | None = None) -> optax.GradientTransformation:
  """CAME-Grad ablation, S1 + S3: ``d = (1 - nu) u_rect + nu g_joint``.

  Example:
    >>> tx = optax.chain(came_s1_s3(0.5, 0.2, num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.came_s1_s3(rho, nu), task_weights, num_tasks=num_tasks)
