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

from came_grad_jax import _hyperparams as hyperparams
from came_grad_jax import weightings
from came_grad_jax._stacked import required_num_tasks
from came_grad_jax._transform import aggregate, resolve_num_tasks
from came_grad_jax.transforms._tracking import track_gradients
from came_grad_jax.weightings._aligned_mtl import Scale
from came_grad_jax.weightings._base import not_differentiable
from came_grad_jax.weightings._krum import check_num_tasks as check_krum_tasks

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


def config(preference: jax.typing.ArrayLike | None = None, task_weights: TaskWeights = None, *,
           num_tasks: int | None = None) -> optax.GradientTransformation:
  """ConFIG (Liu et al. 2025): equal cosines to every task, ``d = (sum_k <h_k, t>) t``.

  ``t`` the unit vector of ``U^+ p`` (``U`` the unit gradients); see
  :func:`came_grad_jax.weightings.config`.

  Example:
    >>> tx = optax.chain(config(num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.config(preference), task_weights, num_tasks=num_tasks)


def fairgrad(alpha: float = 2.0, task_weights: TaskWeights = None, *,
             num_tasks: int | None = None) -> optax.GradientTransformation:
  """FairGrad (Ban & Ji 2024): ``d = sum_k w_k h_k`` with ``(M w)_k = w_k^(-1/alpha)``.

  See :func:`came_grad_jax.weightings.fairgrad`.

  Example:
    >>> tx = optax.chain(fairgrad(2.0, num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.fairgrad(alpha), task_weights, num_tasks=num_tasks)


def sdmgrad(lam: float = 0.3, task_weights: TaskWeights = None, *,
            num_tasks: int | None = None) -> optax.GradientTransformation:
  """SDMGrad (Xiao et al. 2023), deterministic: MGDA pulled toward the mean gradient.

  ``w* = argmin_simplex ||sum_k w_k h_k + lam mu||``, ``d = (h_w* + lam mu) / (1 + lam)``;
  see :func:`came_grad_jax.weightings.sdmgrad`.

  Example:
    >>> tx = optax.chain(sdmgrad(0.3, num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.sdmgrad(lam), task_weights, num_tasks=num_tasks)


def modo(gamma: float = 1e-3, rho: float = 0.1, task_weights: TaskWeights = None, *,
         num_tasks: int | None = None) -> optax.GradientTransformation:
  """MoDo (Chen et al. 2024), single batch: ``lambda <- Pi(lambda - gamma (M + rho I) lambda)``.

  ``d = sum_k lambda_k h_k``, ``lambda`` in the state; see
  :func:`came_grad_jax.weightings.modo`. Needs K.

  Example:
    >>> tx = optax.chain(modo(num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.modo(gamma, rho), task_weights, num_tasks=num_tasks)


def cr_mogm(beta: float = 0.9, weighting: weightings.AnyWeighting | None = None,
            task_weights: TaskWeights = None, *,
            num_tasks: int | None = None) -> optax.GradientTransformation:
  """CR-MOGM (Zhou et al. 2022): a weighting's coefficients smoothed by an EMA (default MGDA's).

  ``c_t = beta c_{t-1} + (1 - beta) c_hat_t``; see
  :func:`came_grad_jax.weightings.ema_weighting`. Needs K.

  Example:
    >>> tx = optax.chain(cr_mogm(0.9, weightings.upgrad(), num_tasks=2), optax.sgd(0.1))
  """
  base = weightings.mgda() if weighting is None else weighting
  smoothed = weightings.ema_weighting(base, beta)
  if weighting is None:  # MGDA's solve is iterative for K >= 3: say so under jax.grad
    smoothed = smoothed._replace(apply=not_differentiable(
        smoothed.apply, "CR-MOGM (an EMA of MGDA's)", min_tasks=3))
  return aggregate(smoothed, task_weights, num_tasks=num_tasks)


def krum(n_byzantine: int = 0, n_selected: int = 1, task_weights: TaskWeights = None, *,
         num_tasks: int | None = None) -> optax.GradientTransformation:
  """Krum / Multi-Krum (Blanchard et al. 2017): the mean of the most central gradients.

  Needs ``K >= n_byzantine + 3``; see :func:`came_grad_jax.weightings.krum`.

  Raises:
    ValueError: for a bad hyperparameter, or a K (``num_tasks`` or ``task_weights``)
      below ``n_byzantine + 3`` or ``n_selected``.

  Example:
    >>> tx = optax.chain(krum(n_byzantine=0, num_tasks=3), optax.sgd(0.1))
  """
  weighting = weightings.krum(n_byzantine, n_selected)
  k = resolve_num_tasks(hyperparams.check_task_weights(task_weights), num_tasks)
  if k is not None:  # known at construction: refuse a K Krum cannot work with now
    check_krum_tasks(k, n_byzantine, n_selected)
  return aggregate(weighting, task_weights, num_tasks=num_tasks)


def pcd(tau: float = 0.02, beta: float = 0.999, eps: float = 1e-8,
        task_weights: TaskWeights = None, *,
        num_tasks: int | None = None) -> optax.GradientTransformation:
  """PCD (Varam et al. 2026): follow task 1, each other task keeps ``tau`` of its normalised progress.

  See :func:`came_grad_jax.weightings.pcd`. Needs K (moving averages in the state).

  Example:
    >>> tx = optax.chain(pcd(0.02, num_tasks=2), optax.sgd(0.1))
  """
  return aggregate(weightings.pcd(tau, beta, eps), task_weights, num_tasks=num_tasks)


def _tracked(beta: float, weighting: weightings.AnyWeighting, task_weights: TaskWeights,
             num_tasks: int | None, name: str, beta_sigma: float = 0.0
             ) -> optax.GradientTransformation:
  """``weighting`` applied to tracked task gradients (EMA in the state)."""
  k = required_num_tasks(task_weights, num_tasks, name, "K tracked gradients")
  return optax.chain(track_gradients(beta, k, beta_sigma=beta_sigma),
                     aggregate(weighting, task_weights, num_tasks=k))


def moco(beta: float = 0.5, gamma: float = 0.1, rho: float = 0.0,
         task_weights: TaskWeights = None, *,
         num_tasks: int | None = None) -> optax.GradientTransformation:
  """MoCo (Fernando et al., ICLR 2023): MoDo's weight step on tracked gradients.

  ``y_k <- beta y_k + (1 - beta) g_k``, ``lambda <- Pi(lambda - gamma (Y^T Y + rho I)
  lambda)``, ``d = sum_k lambda_k w_k y_k``. The state holds K params-shaped
  tracked gradients (``y_k = g_k`` at the first step). Needs K.

  Args:
    beta: tracking weight of the past in [0, 1) (LibMTL's 0.5).
    gamma: step size of ``lambda`` (LibMTL's 0.1).
    rho: regulariser of ``lambda`` (LibMTL's 0).
    task_weights: ``w`` (K,), finite and >= 0; None means all ones.
    num_tasks: K.

  Notes:
    LibMTL (after the authors) decays both step sizes as ``1 / t^0.5``, starts
    the tracked gradients at 0, normalises each task gradient to the task's loss
    before tracking and takes a softmax instead of the simplex projection; this
    follows the paper's Algorithm 1 with constant steps. TorchJD 0.18 has no MoCo.

  References:
    Heshan Fernando, Han Shen, Miao Liu, Subhajit Chaudhury, Keerthiram Murugesan,
    Tianyi Chen, "Mitigating Gradient Bias in Multi-objective Learning: A Provably
    Convergent Approach", ICLR 2023. https://openreview.net/forum?id=dLAYGdKTi2

  Example:
    >>> tx = optax.chain(moco(num_tasks=2), optax.sgd(0.1))
  """
  return _tracked(beta, weightings.modo(gamma, rho), task_weights, num_tasks, "moco")


def db_mtl(beta: float = 0.9, task_weights: TaskWeights = None, *,
           num_tasks: int | None = None, beta_sigma: float = 0.0) -> optax.GradientTransformation:
  """DB-MTL (Lin et al. 2023): tracked gradients of the log losses, rescaled to the largest norm.

  ``y_k <- beta_t y_k + (1 - beta_t) grad log L_k`` with ``beta_t = beta / t^beta_sigma`` at
  step t, ``d = max_j ||w_j y_j|| sum_k y_k / ||y_k||``. Pass the task gradients of the
  **log** losses (the paper's loss-scale balancing), e.g. ``cg.value_and_task_grads(lambda
  p: jnp.log(losses(p)))``; with plain gradients the direction is the same when ``beta = 0``
  (only the length changes). Needs K.

  Args:
    beta: tracking weight of the past in [0, 1) (the paper's and LibMTL's 0.9).
    task_weights: ``w`` (K,), finite and >= 0; None means all ones.
    num_tasks: K.
    beta_sigma: decay exponent of the tracking weight, >= 0 (LibMTL's ``DB_beta_sigma``,
      default 0: constant). Under a momentum optimizer such as Adam a constant 0.9 adds its
      own lag; a positive value lets the tracking fade (``benchmarks/README.md``, MultiDigits).

  Notes:
    LibMTL starts the tracked gradients at 0 (the first step's are ``(1 - beta) g``);
    here at the first gradients. The TorchJD sources checked have no DB-MTL.

  References:
    Baijiong Lin, Weisen Jiang, Feiyang Ye, Yu Zhang, Pengguang Chen, Ying-Cong Chen,
    Shu Liu, James T. Kwok, "Dual-Balancing for Multi-Task Learning", arXiv:2308.12029,
    2023. https://arxiv.org/abs/2308.12029

  Example:
    >>> tx = optax.chain(db_mtl(0.9, num_tasks=2), optax.sgd(0.1))
  """
  return _tracked(beta, weightings.max_norm_balancing(), task_weights, num_tasks, "db_mtl",
                  beta_sigma)
