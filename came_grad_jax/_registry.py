"""The one registry of methods: every method the library ships, by name.

The RRG example, the toy, the benchmarks, the tests and the methods table of the
docs all read this registry, so adding a method means one weighting module, one
entry here and one test file (``docs/design.md``, "How to add a method").
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import optax

from came_grad_jax import _transform
from came_grad_jax import loss_weighting as _lw
from came_grad_jax import weightings as _w
from came_grad_jax.transforms import _excess_mtl, _graddrop, _gradnorm, _methods, _trimmed_mean

Kind = Literal["gradient", "loss"]


@dataclasses.dataclass(frozen=True)
class Method:
  """One multi-task method: how to build it and what it promises.

  Attributes:
    name: the registry key (``"came"``, ``"mgda"``, ...).
    title: the name papers use ("CAME-Grad", "MGDA").
    kind: ``"gradient"``: an ``optax.GradientTransformation`` over stacked task
      gradients (leading axis K); ``"loss"``: a
      :class:`~came_grad_jax.loss_weighting.LossWeighting` (weights from the
      loss values; one backward pass of the weighted loss).
    factory: the public factory that builds it.
    hyperparameters: the factory's hyperparameters and their defaults (the papers').
    reference: authors, venue and year.
    url: a link to the paper.
    non_conflicting: "yes" when ``<g_k, d> >= 0`` for every task whatever the
      gradients; "no", or "no (yes for K = 2)"; "n/a" for loss weightings.
    scale_invariant: "yes" when the direction of ``d`` does not change when a
      task loss is multiplied by a positive constant; "no", "no (up to sign)", "n/a".
    randomized: the update depends on a PRNG key carried in the state.
    needs_num_tasks: K must be given at construction (the state is K-shaped).
    cost: the work beyond the K task gradients and their Gram matrix.
    weighting: for Gram-based methods, the factory of the bare weighting
      (Gram matrix in, coefficients out) in :mod:`came_grad_jax.weightings`.
  """

  name: str
  title: str
  kind: Kind
  factory: Callable[..., Any]
  hyperparameters: Mapping[str, Any]
  reference: str
  url: str
  non_conflicting: str = "no"
  scale_invariant: str = "no"
  randomized: bool = False
  needs_num_tasks: bool = False
  cost: str = ""
  weighting: Callable[..., Any] | None = None


def _defaults(factory: Callable[..., Any]) -> dict[str, Any]:
  """The factory's keyword hyperparameters with their defaults (not K, weights or the key)."""
  skip = {"task_weights", "num_tasks", "key"}
  return {name: p.default for name, p in inspect.signature(factory).parameters.items()
          if name not in skip and p.default is not inspect.Parameter.empty}


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
  """Add a method to the registry (its ``name`` must be new).

  Raises:
    ValueError: if a method of that name is already registered.
  """
  if method.name in _REGISTRY:
    raise ValueError(f"a method named {method.name!r} is already registered")
  _REGISTRY[method.name] = method
  return method


def _add(name: str, title: str, kind: Kind, factory: Callable[..., Any], reference: str,
         url: str, **properties: Any) -> None:
  register(Method(name, title, kind, factory, _defaults(factory), reference, url, **properties))


def method_names(kind: Kind | None = None) -> tuple[str, ...]:
  """The registered method names, in registration order, optionally of one ``kind``.

  Example:
    >>> "came" in method_names("gradient")
    True
  """
  if kind not in (None, "gradient", "loss"):
    raise ValueError(f"kind must be None, 'gradient' or 'loss', got {kind!r}")
  return tuple(n for n, m in _REGISTRY.items() if kind is None or m.kind == kind)


def get_method(name: str) -> Method:
  """The registry entry of ``name``.

  Raises:
    ValueError: naming the unknown method and listing the known ones.

  Example:
    >>> get_method("came").title
    'CAME-Grad'
  """
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(f"unknown method {name!r}; known: {', '.join(_REGISTRY)}") from None


def make_method(name: str, *, task_weights: jax.typing.ArrayLike | None = None,
                num_tasks: int | None = None, key: jax.Array | int = 0,
                **hyperparameters: Any) -> optax.GradientTransformation | _lw.LossWeighting:
  """Build the method ``name`` with its defaults, overridden by ``hyperparameters``.

  Gradient methods receive ``task_weights``, ``num_tasks`` and (when randomized)
  ``key``; loss weightings return weights to multiply with the user's task weights
  and take only their own hyperparameters.

  Raises:
    ValueError: for an unknown method or a hyperparameter it does not take.

  Example:
    >>> tx = make_method("came", task_weights=[1.0, 4.0], rho=0.5)
    >>> lw = make_method("famo")
  """
  method = get_method(name)
  unknown = set(hyperparameters) - set(method.hyperparameters)
  if unknown:
    raise ValueError(
        f"method {name!r} takes no hyperparameter {sorted(unknown)}; it takes "
        f"{sorted(method.hyperparameters) or 'none'}")
  if method.kind == "loss":
    return method.factory(**hyperparameters, **({"key": key} if method.randomized else {}))
  kwargs: dict[str, Any] = dict(hyperparameters, task_weights=task_weights, num_tasks=num_tasks)
  if method.randomized:
    kwargs["key"] = key
  return method.factory(**kwargs)


_ENUM = ("K = 2 closed form; 3 <= K <= 8 the closed-form candidates of all 2^K - 1 faces of the "
         "simplex (one batch, no loop); K >= 9 accelerated projected gradient (<= 200 "
         "iterations), then the exact polish of the face found")
_LOSS = "O(K); one backward pass of a weighted loss"

_add("ls", "Linear scalarization", "gradient", _methods.linear_scalarization,
     "the gradient of sum_k w_k L_k (Caruana, Machine Learning 1997)",
     "https://doi.org/10.1023/A:1007379606734",
     cost="none (c = 1)",
     weighting=_w.linear_scalarization)
_add("came", "CAME-Grad", "gradient", _transform.came_grad,
     "ICML 2026, arXiv:2605.22635 (this library's reconstruction)",
     "https://arxiv.org/abs/2605.22635", cost="as CAGrad (S1), then O(K) (S2, S3)",
     weighting=_w.came)
_add("cagrad", "CAGrad", "gradient", _methods.cagrad, "Liu et al., NeurIPS 2021",
     "https://arxiv.org/abs/2110.14048", cost=_ENUM,
     weighting=_w.cagrad)
_add("mgda", "MGDA", "gradient", _methods.mgda, "Sener & Koltun, NeurIPS 2018",
     "https://arxiv.org/abs/1810.04650", non_conflicting="yes",
     cost="K = 2 closed form; else the least-distance dual by an exact active-set NNLS (at "
     "most 3K K x K solves), an iterative simplex solve at Pareto-stationary points",
     weighting=_w.mgda)
_add("pcgrad", "PCGrad", "gradient", _methods.pcgrad, "Yu et al., NeurIPS 2020",
     "https://arxiv.org/abs/2001.06782", non_conflicting="no (yes for K = 2)", randomized=True,
     cost="K(K-1) sequential projections (tasks vectorised)",
     weighting=_w.pcgrad)
_add("upgrad", "UPGrad", "gradient", _methods.upgrad,
     "Quinton & Rey, arXiv:2406.16232, 2024", "https://arxiv.org/abs/2406.16232",
     non_conflicting="yes", cost="K dual-cone projections, each an exact active-set NNLS (batched)",
     weighting=_w.upgrad)
_add("dualproj", "DualProj", "gradient", _methods.dualproj,
     "Quinton & Rey, 2024 (TorchJD)", "https://arxiv.org/abs/2406.16232", non_conflicting="yes",
     cost="one dual-cone projection (exact active-set NNLS)",
     weighting=_w.dualproj)
_add("imtl_g", "IMTL-G", "gradient", _methods.imtl_g, "Liu et al., ICLR 2021",
     "https://openreview.net/forum?id=IMPnRXEWpvr", scale_invariant="no (up to sign)",
     cost="one (K+1) x (K+1) pseudo-inverse",
     weighting=_w.imtl_g)
_add("aligned_mtl", "Aligned-MTL", "gradient", _methods.aligned_mtl,
     "Senushkin et al., CVPR 2023", "https://arxiv.org/abs/2305.19000",
     cost="one K x K eigendecomposition",
     weighting=_w.aligned_mtl)
_add("nash_mtl", "Nash-MTL", "gradient", _methods.nash_mtl, "Navon et al., ICML 2022",
     "https://arxiv.org/abs/2202.01017", non_conflicting="yes", scale_invariant="yes",
     cost="damped Newton on C beta = 1 / beta, typically < 20 K x K solves",
     weighting=_w.nash_mtl)
_add("gradvac", "GradVac", "gradient", _methods.gradvac, "Wang et al., ICLR 2021",
     "https://arxiv.org/abs/2010.05874", randomized=True, needs_num_tasks=True,
     cost="K(K-1) sequential adjustments; EMA cosine targets (K x K) in the state",
     weighting=_w.gradvac)
_add("graddrop", "GradDrop", "gradient", _graddrop.graddrop, "Chen et al., NeurIPS 2020",
     "https://arxiv.org/abs/2010.06808", randomized=True,
     cost="O(K P) elementwise, no Gram matrix; one uniform per coordinate")
_add("came_s1", "CAME-Grad S1", "gradient", _methods.came_s1,
     "ablation: rectification only", "https://arxiv.org/abs/2605.22635", cost="as CAGrad",
     weighting=_w.came_s1)
_add("came_s1_s2", "CAME-Grad S1+S2", "gradient", _methods.came_s1_s2,
     "ablation: no fusion", "https://arxiv.org/abs/2605.22635", cost="as CAGrad",
     weighting=_w.came_s1_s2)
_add("came_s1_s3", "CAME-Grad S1+S3", "gradient", _methods.came_s1_s3,
     "ablation: no energy injection", "https://arxiv.org/abs/2605.22635", cost="as CAGrad",
     weighting=_w.came_s1_s3)
_add("uncertainty", "Uncertainty weighting", "loss", _lw.uncertainty_weighting,
     "Kendall et al., CVPR 2018", "https://arxiv.org/abs/1705.07115",
     non_conflicting="n/a", scale_invariant="n/a", cost=_LOSS)
_add("dwa", "DWA", "loss", _lw.dwa, "Liu et al., CVPR 2019", "https://arxiv.org/abs/1803.10704",
     non_conflicting="n/a", scale_invariant="n/a", cost=_LOSS)
_add("famo", "FAMO", "loss", _lw.famo, "Liu et al., NeurIPS 2023",
     "https://arxiv.org/abs/2306.03792", non_conflicting="n/a", scale_invariant="n/a",
     cost=_LOSS)

# Issue 13: the breadth of LibMTL and TorchJD.
_TRACK = "; K params-shaped tracked gradients in the state"
_add("config", "ConFIG", "gradient", _methods.config, "Liu et al., ICLR 2025",
     "https://arxiv.org/abs/2408.11104",
     non_conflicting="no (yes for linearly independent gradients)", scale_invariant="yes",
     cost="one K x K pseudo-inverse", weighting=_w.config)
_add("fairgrad", "FairGrad", "gradient", _methods.fairgrad, "Ban & Ji, ICML 2024",
     "https://arxiv.org/abs/2402.15638", non_conflicting="yes",
     cost="Newton steps with a line search on a K-variable convex problem (K x K solves)",
     weighting=_w.fairgrad)
_add("sdmgrad", "SDMGrad", "gradient", _methods.sdmgrad, "Xiao et al., NeurIPS 2023",
     "https://arxiv.org/abs/2305.18409", cost="as MGDA (on shifted gradients)",
     weighting=_w.sdmgrad)
_add("modo", "MoDo", "gradient", _methods.modo, "Chen et al., JMLR 2024",
     "https://arxiv.org/abs/2305.20057", needs_num_tasks=True,
     cost="one projected gradient step on K weights (in the state)", weighting=_w.modo)
_add("moco", "MoCo", "gradient", _methods.moco, "Fernando et al., ICLR 2023",
     "https://openreview.net/forum?id=dLAYGdKTi2", needs_num_tasks=True,
     cost="as MoDo on tracked gradients" + _TRACK)
_add("cr_mogm", "CR-MOGM (EMA of MGDA)", "gradient", _methods.cr_mogm,
     "Zhou et al., NeurIPS 2022", "https://openreview.net/forum?id=ScwfQ7hdwyP",
     needs_num_tasks=True, cost="the wrapped weighting's, then O(K)",
     weighting=_w.ema_weighting)
_add("pcd", "PCD (priority-constrained descent)", "gradient", _methods.pcd,
     "Varam et al., TMLR 2026", "https://openreview.net/forum?id=HT01yGHLEt",
     non_conflicting="no (yes for the secondary tasks when feasible)",
     scale_invariant="no (yes when every step's gradients are scaled alike)",
     needs_num_tasks=True,
     cost="one non-negative QP in K - 1 variables (exact active-set); K EMAs in the state",
     weighting=_w.pcd)
_add("krum", "Krum", "gradient", _methods.krum, "Blanchard et al., NeurIPS 2017",
     "https://papers.nips.cc/paper/6617-machine-learning-with-adversaries-byzantine-tolerant-"
     "gradient-descent", cost="K x K distances, a sort per row", weighting=_w.krum)
_add("trimmed_mean", "TrimmedMean", "gradient", _trimmed_mean.trimmed_mean,
     "Yin et al., ICML 2018", "https://proceedings.mlr.press/v80/yin18a.html",
     cost="O(K log K P): a sort over K per coordinate, no Gram matrix")
_add("db_mtl", "DB-MTL", "gradient", _methods.db_mtl, "Lin et al., arXiv:2308.12029, 2023",
     "https://arxiv.org/abs/2308.12029", needs_num_tasks=True,
     cost="O(K) on tracked gradients of the log losses" + _TRACK)
_add("excess_mtl", "ExcessMTL", "gradient", _excess_mtl.excess_mtl, "He et al., ICML 2024",
     "https://arxiv.org/abs/2402.02009", needs_num_tasks=True,
     cost="O(K P) squares; K params-shaped AdaGrad accumulators in the state")
_add("gradnorm", "GradNorm", "gradient", _gradnorm.gradnorm, "Chen et al., ICML 2018",
     "https://arxiv.org/abs/1711.02257", needs_num_tasks=True,
     cost="K norms at the chosen layer; update(..., losses=) needs the task losses")
_add("rlw", "RLW (random weights)", "loss", _lw.rlw, "Lin et al., TMLR 2022",
     "https://arxiv.org/abs/2111.10603", non_conflicting="n/a", scale_invariant="n/a",
     randomized=True, cost=_LOSS)
_add("gls", "GLS (geometric mean)", "loss", _lw.gls, "Chennupati et al., CVPR-W 2019",
     "https://arxiv.org/abs/1904.08492", non_conflicting="n/a", scale_invariant="n/a",
     cost=_LOSS)
_add("stch", "STCH (smooth Tchebycheff)", "loss", _lw.stch, "Lin et al., ICML 2024",
     "https://arxiv.org/abs/2402.19078", non_conflicting="n/a", scale_invariant="n/a",
     cost=_LOSS)


def methods_table() -> str:
  """The methods table (Markdown) of the docs, generated from the registry.

  Example:
    >>> methods_table().splitlines()[0].startswith("| Method")
    True
  """
  rows = ["| Method | Name | Reference | Non-conflicting | Invariant to task-loss scaling "
          "| Randomness | Cost |", "| --- | --- | --- | --- | --- | --- | --- |"]
  for m in _REGISTRY.values():
    rows.append(f"| {m.title} | `{m.name}` | [{m.reference}]({m.url}) | {m.non_conflicting} | "
                f"{m.scale_invariant} | {'yes' if m.randomized else 'no'} | {m.cost} |")
  return "\n".join(rows)
