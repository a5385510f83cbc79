"""One training run of the RRG example: ``train_and_evaluate(config, workdir)``.

The tasks and their losses (one scalar each; ``task_loss_terms`` returns them as a tuple of K,
``task_losses`` as a vector):

* ``nll``   -- report negative log-likelihood per non-pad target token (``L_nll``);
* ``cls``   -- cross-entropy of each of the 14 observations over {blank, positive, negative,
  uncertain}, averaged over observations and examples (``L_cls``);
* ``align`` -- symmetric InfoNCE between image and report embeddings (``L_align``); reports
  that are word-for-word identical within a batch count as positives of each other.

A method comes from the library's one registry (``came_grad_jax.make_method``) and is of one of
two kinds. A *gradient* method (LS, CAME-Grad, CAGrad, MGDA, ...) gets the K task gradients
(:func:`came_grad_jax.value_and_task_grads`: one forward pass, K backward passes) stacked, and
``optax.chain(<method>, adamw)`` turns them into one update. A *loss* method (uncertainty
weighting, DWA, FAMO) turns the K loss values into weights ``lambda_k`` and the model takes one
backward pass of ``sum_k w_k lambda_k L_k``; with ``lambda = 1`` that is the plain LS trainer,
the reference of the per-step time ratio.

During training the model is evaluated on the val split every ``config.eval_every`` steps
(CE-F1, the paper's ``monitor_metric``); the test metrics are those of the selected step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import came_grad_jax as cg
from examples.rrg import models
from examples.rrg.models.decode import generate
from examples.rrg.training.tasks import (  # noqa: F401  (moved to tasks.py; kept importable here)
  BOS_ID,
  EOS_ID,
  PAD_ID,
  TASKS,
  alignment_loss,
  classification_loss,
  nll_loss,
  task_loss_terms,
  task_losses,
)


# ------------------------------------------------------------------------------------------------
# Methods from the library's registry
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Method:
  """A method ready to train.

  Attributes:
    name: its registry name (``"ls_plain"`` for the plain LS trainer).
    kind: ``"gradient"`` -- ``tx`` takes the stacked task gradients; ``"loss"`` -- ``tx`` takes
      the gradient of the weighted loss, whose weights ``weighting`` computes (None: fixed).
    tx: the parameter update: ``chain(<method>, adamw)`` or ``adamw``.
    weighting: a ``came_grad_jax.loss_weighting.LossWeighting`` or None.
    transformation: a gradient method's own transformation (``tx`` without AdamW) or None.
  """

  name: str
  kind: str
  tx: optax.GradientTransformation
  weighting: Any = None
  transformation: optax.GradientTransformation | None = None


def learning_rate(config) -> optax.Schedule:
  """Linear warmup over ``config.warmup_steps`` (a fraction of the budget), cosine to 10%.

  The warmup starts at 0, or with ``config.recipe == "paper"`` at 1% of the peak: the paper's
  trainer warms up from 5e-7 to 5e-5 and decays to 5e-6, which are these ratios at its peak.
  """
  start = PAPER_WARMUP_START * config.learning_rate if config.recipe == "paper" else 0.0
  return optax.warmup_cosine_decay_schedule(
      init_value=start, peak_value=config.learning_rate, warmup_steps=config.warmup_steps,
      decay_steps=max(config.num_steps, config.warmup_steps + 1),
      end_value=0.1 * config.learning_rate)


# The paper's trainer (vpsg-research/CAME-Grad, modules/trainer.py), as ``config.recipe``
# "paper": AdamW betas (0.9, 0.999) with weight decay 0.05 on parameters of ndim >= 2 only,
# the warmup's start as a fraction of the peak, and the LS path's clip_grad_value_(0.1).
PAPER_WEIGHT_DECAY = 0.05
PAPER_WARMUP_START = 0.01
PAPER_CLIP_VALUE = 0.1
CLIPPED_IN_PAPER = ("ls", "ls_plain")
"""The methods whose update the paper's recipe clips by value (its LS step); CAME-Grad's
step is not clipped, and the paper says nothing of the others, which are left unclipped."""


def decay_mask(params):
  """True on the parameters weight decay applies to under the paper's recipe: ``ndim >= 2``
  (kernels, embeddings) and not a bias; biases (also the 2-D ones of attention), norm scales and
  other 1-D parameters get none, as in the paper's trainer (``ndim < 2`` or "bias" in the name).
  """
  def decayed(path, p):
    last = path[-1] if path else None
    name = str(getattr(last, "key", getattr(last, "name", last)))
    return bool(jnp.ndim(p) >= 2 and "bias" not in name)

  return jax.tree_util.tree_map_with_path(decayed, params)


def base_optimizer(config, name: str) -> optax.GradientTransformation:
  """The optimizer after the method's transformation: AdamW of ``config.recipe``.

  ``"default"``: AdamW (betas 0.9, 0.999) with ``config.weight_decay`` on every parameter.
  ``"paper"``: weight decay 0.05 on ``ndim >= 2`` parameters only (:func:`decay_mask`), and
  for LS (:data:`CLIPPED_IN_PAPER`) the gradient clipped to [-0.1, 0.1] before AdamW.
  """
  if config.recipe != "paper":
    return optax.adamw(learning_rate(config), b1=0.9, b2=0.999,
                       weight_decay=config.weight_decay)
  adamw = optax.adamw(learning_rate(config), b1=0.9, b2=0.999,
                      weight_decay=PAPER_WEIGHT_DECAY, mask=decay_mask)
  if name in CLIPPED_IN_PAPER:
    return optax.chain(optax.clip(PAPER_CLIP_VALUE), adamw)
  return adamw


# Method -> the config fields of its hyperparameters (the registry's defaults for the rest).
_HPARAMS = {"came": {"rho": "came_rho", "kappa": "came_kappa", "nu": "came_nu"},
            "came_s1": {"rho": "came_rho"},
            "came_s1_s2": {"rho": "came_rho", "kappa": "came_kappa"},
            "came_s1_s3": {"rho": "came_rho", "nu": "came_nu"},
            "cagrad": {"c": "cagrad_c"}}


def method_names() -> tuple[str, ...]:
  """Every method of the library's registry (``came_grad_jax.method_names()``), in its order."""
  return tuple(cg.method_names())


def make_method(config, name: str | None = None) -> Method:
  """The :class:`Method` called ``name`` (default ``config.method``) with the config's weights.

  Raises:
    ValueError: ``name`` is not in ``came_grad_jax.method_names()`` (nor ``"ls_plain"``).
  """
  name = config.method if name is None else name
  adamw = base_optimizer(config, name)
  if name == "ls_plain":
    return Method(name, "loss", adamw)
  if name not in cg.method_names():
    raise ValueError(f"unknown method {name!r}; expected one of {method_names()} "
                     "(or 'ls_plain', 'ls_tuned' in a sweep)")
  hparams = {k: getattr(config, field) for k, field in _HPARAMS.get(name, {}).items()}
  made = cg.make_method(name, task_weights=config.task_weights, num_tasks=len(config.tasks),
                        key=0, **hparams)
  if cg.get_method(name).kind == "gradient":
    return Method(name, "gradient", optax.chain(made, adamw), transformation=made)
  return Method(name, "loss", adamw, made)


def why_not(config, name: str) -> str | None:
  """Why the method ``name`` cannot run with the config's tasks, or None if it can.

  Builds the method and traces one update on a tiny K-task gradient (``jax.eval_shape``: no
  compilation), so that a method needing more tasks (Krum, trimmed mean) is caught before
  training rather than when its step compiles.
  """
  try:
    method = make_method(config, name)
    if method.kind == "gradient":
      k = len(config.tasks)
      params = {"w": jnp.zeros((3,), jnp.float32)}
      grads = {"w": jnp.ones((k, 3), jnp.float32)}
      jax.eval_shape(lambda g: method.tx.update(g, method.tx.init(params), params)[0], grads)
  except ValueError as e:
    return str(e)
  return None


# ------------------------------------------------------------------------------------------------
# Training steps
# ------------------------------------------------------------------------------------------------
def diagnostics_of(optimizer: nnx.Optimizer) -> dict:
  """The method's last-step diagnostics as a dict of arrays (empty if it keeps none)."""
  found = optax.tree_utils.tree_get(nnx.as_pure(optimizer.opt_state), "diagnostics")
  if found is None:
    return {}
  return {k: jnp.asarray(v) for k, v in found._asdict().items()}


@nnx.jit(static_argnames=("tasks", "temperature"))
def gradient_step(model: models.ReportGenerator, optimizer: nnx.Optimizer, batch: dict, *,
                  tasks: tuple[str, ...], temperature: float) -> dict:
  """One step of a gradient method; returns ``losses (K,)`` and the method's diagnostics.

  Separate backward passes (``vectorize=False``): the classification and alignment losses
  skip the decoder. ``nnx.jit`` compiles once per model shape and transformation object, so the
  seeds of a method share a compilation when they share the :class:`Method`.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def losses_of(params):
    return task_loss_terms(nnx.merge(graphdef, params, rest), batch, tasks,
                           temperature=temperature)

  losses, task_grads = cg.value_and_task_grads(losses_of, vectorize=False)(params)
  optimizer.update(model, task_grads)
  return {"losses": losses, "encoder_cosine": _cosine(cg.gram(task_grads["encoder"])),
          **diagnostics_of(optimizer)}


def _cosine(gram: jax.Array) -> jax.Array:
  """Cosines ``M_ij / sqrt(M_ii M_jj)`` of a Gram matrix (0 where a gradient is zero).

  ``encoder_cosine`` is that of the task gradients on the shared image encoder alone, the one
  part of the model every task's gradient reaches: the method's ``cosine`` diagnostic is over
  every parameter, where the task-specific ones (the decoder, the heads) pull it towards 0.
  """
  norms = jnp.sqrt(jnp.diag(gram))
  denominator = norms[:, None] * norms[None, :]
  return jnp.where(denominator > 0, gram / jnp.where(denominator > 0, denominator, 1.0), 0.0)


@nnx.jit(static_argnames=("tasks", "temperature", "task_weights", "weighting"))
def weighted_loss_step(model: models.ReportGenerator, optimizer: nnx.Optimizer,
                       weighting_state: Any, batch: dict, *, tasks: tuple[str, ...],
                       temperature: float, task_weights: tuple[float, ...],
                       weighting: Any = None) -> tuple[dict, Any]:
  """One backward pass of ``sum_k w_k lambda_k L_k``, ``lambda`` from ``weighting`` (or 1).

  Returns ``({"losses", "coefficients": lambda}, new weighting state)``.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  w = jnp.asarray(task_weights, jnp.float32)

  def objective(params):
    losses = jnp.stack(task_loss_terms(nnx.merge(graphdef, params, rest), batch, tasks,
                                       temperature=temperature))
    if weighting is None:
      lam, state = jnp.ones_like(losses), weighting_state
    else:
      lam, state = weighting.update(losses, weighting_state)
    lam = jax.lax.stop_gradient(lam)
    return jnp.sum(w * lam * losses), (losses, lam, state)

  (_, (losses, lam, state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
  optimizer.update(model, grads)
  return {"losses": losses, "coefficients": lam}, state


def step_function(config, method: Method) -> Callable:
  """``step(model, optimizer, weighting_state, batch) -> (metrics, weighting_state)``."""
  tasks = tuple(config.tasks)
  if method.kind == "gradient":
    def step(model, optimizer, weighting_state, batch):
      return gradient_step(model, optimizer, batch, tasks=tasks,
                           temperature=config.temperature), weighting_state
    return step
  return functools.partial(weighted_loss_step, tasks=tasks, temperature=config.temperature,
                           task_weights=tuple(float(w) for w in config.task_weights),
                           weighting=method.weighting)


# ------------------------------------------------------------------------------------------------
# Greedy decoding and evaluation
# ------------------------------------------------------------------------------------------------
def generate_reports(model: models.ReportGenerator, split, tokenizer, *, batch_size: int,
                     max_len: int, beam_size: int = 1, length_penalty: float = 0.0) -> list[str]:
  """Reports for every example of ``split``: greedy (``beam_size`` 1) or beam search.

  The last batch is padded to one compiled shape.
  """
  images = split.images
  n = images.shape[0]
  texts = []
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    short = batch_size - chunk.shape[0]
    if short:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
    ids = np.asarray(generate(model, jnp.asarray(chunk), max_len=max_len, beam_size=beam_size,
                              length_penalty=length_penalty))
    texts.extend(tokenizer.decode(row) for row in ids[:batch_size - short])
  return texts


@nnx.jit(static_argnames=("tasks", "temperature"))
def _eval_losses(model, batch, tasks, temperature):
  return task_losses(model, batch, tasks, temperature=temperature)


def validation_ce_f1(model: models.ReportGenerator, split, tokenizer, *,
                     batch_size: int) -> float:
  """Macro CE-F1 (the paper's ``ce_f1``) of greedy reports on ``split``: the selection metric."""
  from examples.rrg.evaluation import labeler, metrics  # pylint: disable=import-outside-toplevel

  hyps = generate_reports(model, split, tokenizer, batch_size=batch_size,
                          max_len=split.tokens.shape[1])
  return metrics.clinical_efficacy(np.asarray(split.reference_labels),
                                   labeler.label_reports(hyps), per_observation=False)["ce_f1"]


def evaluate(model: models.ReportGenerator, split, tokenizer, *, tasks: Sequence[str] = TASKS,
             batch_size: int = 64, temperature: float = 0.1, meteor: bool = False,
             beam_size: int = 1, length_penalty: float = 0.0) -> tuple[dict, list[str], Any]:
  """Report quality, clinical efficacy and task losses on ``split``.

  NLG metrics compare the generated reports with the tokenised-and-decoded references (what the
  model can produce at best, as R2Gen does); clinical efficacy (every convention of
  ``metrics.clinical_efficacy``, per observation with the number of positive references)
  compares the split's reference labels with the labels read off the generated text.

  Returns:
    ``(metrics, hypotheses, per_study.StudyOutputs)``.
  """
  from examples.rrg.evaluation import labeler, metrics, per_study  # pylint: disable=import-outside-toplevel

  hyps = generate_reports(model, split, tokenizer, batch_size=batch_size,
                          max_len=split.tokens.shape[1], beam_size=beam_size,
                          length_penalty=length_penalty)
  refs = [tokenizer.decode(row) for row in split.tokens]
  hyp_labels = labeler.label_reports(hyps)
  results = dict(metrics.nlg_metrics(refs, hyps, meteor=meteor))
  results.update(metrics.clinical_efficacy(np.asarray(split.reference_labels), hyp_labels))
  # Task losses on the split, averaged over full batches.
  n = (split.images.shape[0] // batch_size) * batch_size
  if n:
    per_batch = [
        np.asarray(_eval_losses(model, {
            "images": jnp.asarray(split.images[i:i + batch_size]),
            "tokens": jnp.asarray(split.tokens[i:i + batch_size]),
            "labels": jnp.asarray(split.labels[i:i + batch_size]),
        }, tuple(tasks), temperature)) for i in range(0, n, batch_size)
    ]
    for task, value in zip(tasks, np.mean(per_batch, axis=0)):
      results[f"loss_{task}"] = float(value)
  outputs = per_study.study_outputs(refs, hyps, np.asarray(split.reference_labels),
                                    hyp_labels)
  return results, hyps, outputs


# ------------------------------------------------------------------------------------------------
# One run: a method, a seed
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
  """What one run of :func:`train_and_evaluate` measured."""

  method: str
  seed: int
  task_weights: tuple[float, ...]
  metrics: dict
  """Test metrics at the selected step."""
  history: dict
  """Name -> array with a leading step axis: ``losses`` and the method's diagnostics."""
  val_curve: list
  """``[(step, val CE-F1), ...]`` at every evaluation."""
  selected_step: int
  train_time: float
  """Seconds of training steps, without compilation and evaluation."""
  compile_time: float
  """Seconds of the first step (compilation and one step), outside ``train_time``."""
  step_time: float
  """``train_time`` per step."""
  eval_time: float
  num_params: int
  hypotheses: list[str]
  outputs: Any
  """``per_study.StudyOutputs`` on the test split."""
  probes: list = dataclasses.field(default_factory=list)
  """``[(step, measurements), ...]`` of the run's probe (see :func:`train_and_evaluate`)."""
  resumed_from: int | None = None
  """The step of the checkpoint the run resumed from (None: trained from the start)."""


def load_data(config) -> tuple[dict, Any]:
  """``(splits, tokenizer)`` of the configured data."""
  from examples.rrg.data import input_pipeline  # pylint: disable=import-outside-toplevel

  if config.data == "synthetic":
    return input_pipeline.synthetic_dataset(
        config.num_train, config.num_val, config.num_test, image_size=config.image_size,
        max_len=config.max_len, seed=config.data_seed, disjoint=config.disjoint,
        independent_style=config.independent_style)
  return input_pipeline.load_r2gen(
      config.ann_path, config.image_dir, dataset=config.dataset, image_size=config.image_size,
      max_len=config.max_len, min_count=config.min_count, labels_path=config.labels_path)


def create_model(config, tokenizer, split, seed: int) -> models.ReportModel:
  """A fresh ``config.backbone`` model sized for ``tokenizer`` and the views/size of ``split``."""
  _, v, h, _, _ = split.images.shape
  cfg = dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size, num_views=v,
                            image_size=h, max_len=split.tokens.shape[1])
  return models.build_model(cfg, config.backbone, rngs=nnx.Rngs(seed))


def create_optimizer(config, model, method: Method | str | None = None) -> nnx.Optimizer:
  """An ``nnx.Optimizer`` of ``method`` (a :class:`Method`, a name, or ``config.method``)."""
  if not isinstance(method, Method):
    method = make_method(config, method)
  return nnx.Optimizer(model, method.tx, wrt=nnx.Param)


def _params(model) -> dict:
  """A host copy of the model's parameters."""
  return jax.device_get(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _load_params(model, params: dict) -> None:
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)


# Config fields that do not change a run's trajectory (a resumed run may differ in them).
_BOOKKEEPING = frozenset({"name", "timing_steps", "bootstrap_samples", "ls_tune_grid"})


def _evaluation_steps(config) -> set[int]:
  """Steps after which the val split is evaluated: every ``eval_every`` and the last."""
  return set(range(config.eval_every, config.num_steps + 1, config.eval_every)) | {
      config.num_steps}


@dataclasses.dataclass
class TrainState:
  """What a run trains and how: the model, its optimizer, the step and the batch stream."""

  model: Any
  optimizer: nnx.Optimizer
  step_fn: Callable
  weighting_state: Any
  stream: Any
  mesh: Any = None


@dataclasses.dataclass
class Progress:
  """Where a run is: what resuming restores and the loop advances."""

  start: int = 0
  """The first step still to take (0, or the step of the restored checkpoint)."""
  history: list = dataclasses.field(default_factory=list)
  train_time: float = 0.0
  compile_time: float = 0.0
  eval_time: float = 0.0
  val_curve: list = dataclasses.field(default_factory=list)
  best: tuple | None = None
  """``(val CE-F1, step, host parameters)`` of the best evaluation so far."""
  probes: list = dataclasses.field(default_factory=list)
  """``[(step, probe(step, model)), ...]`` (see :func:`train_and_evaluate`)."""


@dataclasses.dataclass
class _Checkpoints:
  latest: Any
  best: Any


def create_train_state(config, method: Method, data: tuple[dict, Any]) -> TrainState:
  """A fresh model of ``config.seed``, its optimizer, the step and the training batch stream.

  With ``config.mesh`` the parameters, optimizer state and batches are split over the device
  mesh (``sharding.py``).
  """
  from examples.rrg.data import input_pipeline  # pylint: disable=import-outside-toplevel

  splits, tokenizer = data
  train_split = splits["train"]
  model = create_model(config, tokenizer, train_split, config.seed)
  weighting_state = (None if method.weighting is None
                     else method.weighting.init(len(config.tasks)))
  step_fn = step_function(config, method)
  if not config.mesh:
    stream = input_pipeline.train_iterator(train_split, config.batch_size, config.seed,
                                           workers=config.workers)
    return TrainState(model, create_optimizer(config, model, method), step_fn,
                      weighting_state, stream)
  from examples.rrg.training import sharding  # pylint: disable=import-outside-toplevel
  if config.checkpoint_every:
    raise ValueError("checkpoints are not supported with a mesh (config.mesh)")
  mesh = sharding.make_mesh(config.mesh)
  optimizer, step_fn = sharding.distribute(
      mesh, model, lambda: create_optimizer(config, model, method), step_fn)
  stream = sharding.local_batches(train_split, config.batch_size, config.seed, mesh)
  return TrainState(model, optimizer, step_fn, weighting_state, stream, mesh)


def restore_or_start(config, state: TrainState, method: Method, data: tuple[dict, Any],
                     run_dir: str) -> tuple[Progress, _Checkpoints | None]:
  """The run's :class:`Progress`: fresh, or restored from ``run_dir/checkpoints``.

  Without ``config.checkpoint_every`` nothing is saved (the checkpoints are None). A restored
  run continues exactly where it stopped: model, optimizer, data position, history, val curve
  and the parameters of the best evaluation so far.
  """
  if not config.checkpoint_every:
    return Progress(), None
  from examples.rrg.training import checkpoint  # pylint: disable=import-outside-toplevel

  ckpt = _Checkpoints(
      checkpoint.manager(os.path.join(run_dir, "checkpoints")),
      checkpoint.manager(os.path.join(run_dir, "checkpoints_best"), max_to_keep=1))
  ignore = checkpoint.BOOKKEEPING_FIELDS | _BOOKKEEPING
  restored = checkpoint.restore(ckpt.latest, state.model, state.optimizer, config=config,
                                data_iterator=state.stream, ignore=ignore)
  if restored is None:
    return Progress(), ckpt
  progress = Progress(
      start=restored["step"], train_time=restored["train_time"],
      history=[{k: np.asarray(v) for k, v in h.items()} for h in restored["history"]],
      val_curve=[tuple(p) for p in restored["val_curve"]])
  if restored["best_step"] is not None:
    splits, tokenizer = data
    holder = create_model(config, tokenizer, splits["train"], config.seed)
    checkpoint.restore(ckpt.best, holder, create_optimizer(config, holder, method),
                       step=restored["best_step"], config=config, ignore=ignore)
    progress.best = (restored["best_val"], restored["best_step"], _params(holder))
  return progress, ckpt


def _local_model(state: TrainState):
  """The model as one process's full copy (itself without a mesh)."""
  if state.mesh is None:
    return state.model
  from examples.rrg.training import sharding  # pylint: disable=import-outside-toplevel
  return sharding.local_copy(state.model)


def evaluate_and_select(config, state: TrainState, progress: Progress, step: int, val,
                        tokenizer, ckpt: _Checkpoints | None) -> float:
  """Val CE-F1 after ``step``; keeps the parameters (and a checkpoint) if it is the best."""
  local = _local_model(state)
  score = validation_ce_f1(local, val, tokenizer,
                           batch_size=min(config.eval_batch_size, len(val)))
  progress.val_curve.append((step, score))
  if progress.best is None or score >= progress.best[0]:  # ties: the later, more trained step
    progress.best = (score, step, _params(local))
    if ckpt is not None:
      from examples.rrg.training import checkpoint  # pylint: disable=import-outside-toplevel
      checkpoint.save(ckpt.best, step, state.model, state.optimizer, data_seed=config.seed,
                      config=config)
  return score


def save_checkpoint(config, state: TrainState, progress: Progress, step: int,
                    ckpt: _Checkpoints) -> None:
  """Saves the model, optimizer, data position and the bookkeeping of ``progress``."""
  from examples.rrg.training import checkpoint  # pylint: disable=import-outside-toplevel

  progress.history = jax.device_get(progress.history)
  best = progress.best
  checkpoint.save(ckpt.latest, step, state.model, state.optimizer, data_seed=config.seed,
                  config=config, data_iterator=state.stream, extra={
      "train_time": progress.train_time, "val_curve": progress.val_curve,
      "best_step": None if best is None else best[1],
      "best_val": None if best is None else best[0],
      "history": [{k: np.asarray(v).tolist() for k, v in h.items()}
                  for h in progress.history]})


def train_loop(config, state: TrainState, progress: Progress, data: tuple[dict, Any],
               ckpt: _Checkpoints | None, *, show_progress: bool = True,
               probe: Callable | None = None, probe_steps: Collection[int] = ()) -> None:
  """Steps ``progress.start`` to ``config.num_steps``: train, evaluate on val, checkpoint.

  The first step (compilation) is timed apart, evaluation and probes too: ``train_time`` is
  the training steps alone.
  """
  from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel

  splits, tokenizer = data
  eval_steps = _evaluation_steps(config)
  bar = tqdm(range(progress.start, config.num_steps), desc=config.run_name(),
             disable=not show_progress, leave=True, dynamic_ncols=True)
  if probe is not None and progress.start == 0 and 0 in probe_steps:
    progress.probes.append((0, probe(0, _local_model(state))))
  t0 = time.perf_counter()
  for step in bar:
    metrics, state.weighting_state = state.step_fn(state.model, state.optimizer,
                                                   state.weighting_state, next(state.stream))
    progress.history.append(metrics)
    if step == progress.start:  # the first step compiles: kept out of train_time
      jax.block_until_ready(metrics)
      progress.compile_time = time.perf_counter() - t0
      t0 = time.perf_counter()
    if show_progress and (step + 1) % config.log_every == 0:
      bar.set_postfix({t: f"{l:.3f}" for t, l in zip(config.tasks,
                                                      np.asarray(metrics["losses"]))})
    done = step + 1
    if done in eval_steps or (probe is not None and done in probe_steps):
      jax.block_until_ready(metrics)
      progress.train_time += time.perf_counter() - t0
      t_eval = time.perf_counter()
      if done in eval_steps:
        evaluate_and_select(config, state, progress, done, splits["val"], tokenizer, ckpt)
      if probe is not None and done in probe_steps:
        progress.probes.append((done, probe(done, _local_model(state))))
      progress.eval_time += time.perf_counter() - t_eval
      t0 = time.perf_counter()
    if ckpt is not None and (done % config.checkpoint_every == 0 or done == config.num_steps):
      save_checkpoint(config, state, progress, done, ckpt)
  bar.close()
  if hasattr(state.stream, "close"):  # stops Grain's reader threads and worker processes
    state.stream.close()
  progress.history = jax.device_get(progress.history)
  if state.mesh is not None:
    from examples.rrg.training import sharding  # pylint: disable=import-outside-toplevel
    sharding.gather_model(state.model)  # test on each process's own full copy
  if ckpt is not None:
    ckpt.latest.wait_until_finished()
    ckpt.best.wait_until_finished()


def evaluate_selected(config, state: TrainState, progress: Progress,
                  data: tuple[dict, Any]) -> tuple[dict, list[str], Any]:
  """Loads the parameters of the best val step and evaluates them on the test split."""
  splits, tokenizer = data
  t_eval = time.perf_counter()
  best = progress.best
  if best is not None and best[1] != config.num_steps:
    _load_params(state.model, best[2])
  test = splits["test"]
  out = evaluate(state.model, test, tokenizer, tasks=config.tasks,
                 batch_size=min(config.eval_batch_size, len(test)),
                 temperature=config.temperature, meteor=config.meteor,
                 beam_size=config.beam_size, length_penalty=config.length_penalty)
  progress.eval_time += time.perf_counter() - t_eval
  return out


def write_run_files(result: RunResult, config, test, tokenizer, run_dir: str) -> None:
  """``curves.*``, TensorBoard events, ``reports.json`` and ``metrics.json`` of a run."""
  from examples.rrg.training import curves  # pylint: disable=import-outside-toplevel

  if result.history:
    curves.write(result.history, config.tasks, run_dir)
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, "reports.json"), "w", encoding="utf-8") as f:
    json.dump([{"id": test.ids[i], "reference": tokenizer.decode(test.tokens[i]),
                "generated": result.hypotheses[i]} for i in range(len(test))], f, indent=1)
  with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as f:
    json.dump({"method": result.method, "seed": result.seed,
               "task_weights": list(result.task_weights), "test": result.metrics,
               "val_curve": result.val_curve, "selected_step": result.selected_step,
               "train_time": result.train_time, "compile_time": result.compile_time,
               "step_time": result.step_time, "eval_time": result.eval_time,
               "resumed_from": result.resumed_from,
               **({"probes": result.probes} if result.probes else {})}, f, indent=1)


def train_and_evaluate(config, workdir: str, *, data: tuple[dict, Any] | None = None,
                       method: Method | None = None, progress: bool = True,
                       probe: Callable | None = None,
                       probe_steps: Collection[int] = ()) -> RunResult:
  """Trains ``config.method`` with ``config.seed`` for ``config.num_steps``, then tests it.

  The val split is evaluated (CE-F1) every ``config.eval_every`` steps and at the end; the
  parameters of the best evaluation (the latest among ties: a small val split often scores
  several steps alike) are tested. Writes
  ``curves.csv``, ``curves.json``, TensorBoard event files, ``reports.json`` (every test report
  next to its reference) and ``metrics.json`` under ``workdir/<method>_seed<seed>/``.
  With ``config.mesh`` (``"data=D,fsdp=F"``) training runs on that device mesh, over every
  process of ``jax.distributed`` (``sharding.py``, ``launch.py``); evaluation runs on each
  process's full copy of the parameters.

  The steps, as in Flax's examples: :func:`create_train_state`, :func:`restore_or_start`,
  :func:`train_loop` (with :func:`evaluate_and_select` and :func:`save_checkpoint`),
  :func:`evaluate_selected`, :func:`write_run_files`.

  Args:
    config: a ``configs.Config``.
    workdir: the output folder.
    data: ``(splits, tokenizer)``; loaded from the config when None.
    method: the :class:`Method` of ``config.method``, to share one compiled train step between
      the seeds of a method (``make_method(config)`` when None).
    progress: show a progress bar.
    probe: ``probe(step, model) -> dict`` of JSON-able measurements, called after each step of
      ``probe_steps`` (0: before the first step), outside the timed training; its results are
      ``RunResult.probes``. Not restored on resume: a resumed run probes from where it resumes.
    probe_steps: the steps to probe after.

  Returns:
    The :class:`RunResult`.
  """
  data = load_data(config) if data is None else data
  method = make_method(config) if method is None else method
  if method.name not in (config.method, "ls_plain"):
    raise ValueError(f"method {method.name!r} is not config.method={config.method!r}")
  run_dir = os.path.join(workdir, config.run_name())
  state = create_train_state(config, method, data)
  done, ckpt = restore_or_start(config, state, method, data, run_dir)
  start = done.start
  if start:
    print(f"{config.run_name()}: resumed from its checkpoint at step {start} "
          f"({os.path.join(run_dir, 'checkpoints')})", flush=True)
  train_loop(config, state, done, data, ckpt, show_progress=progress, probe=probe,
             probe_steps=set(probe_steps))
  results, hyps, outputs = evaluate_selected(config, state, done, data)
  history = done.history
  stacked = {k: np.stack([np.asarray(h[k]) for h in history]) for k in (history[0] if history
                                                                          else {})}
  trained = max(config.num_steps - start - 1, 1)  # steps inside train_time
  result = RunResult(
      method=config.method, seed=config.seed, task_weights=tuple(config.task_weights),
      metrics=results, history=stacked, val_curve=done.val_curve,
      selected_step=config.num_steps if done.best is None else done.best[1],
      train_time=done.train_time, compile_time=done.compile_time,
      step_time=done.train_time / trained, eval_time=done.eval_time,
      num_params=models.count_params(state.model), hypotheses=hyps, outputs=outputs,
      probes=done.probes, resumed_from=start or None)
  splits, tokenizer = data
  write_run_files(result, config, splits["test"], tokenizer, run_dir)
  return result


def time_per_step(config, method: Method, data: tuple[dict, Any], num_steps: int) -> float:
  """Seconds per train step of ``method`` over ``num_steps`` steps after a compiling one."""
  splits, tokenizer = data
  model = create_model(config, tokenizer, splits["train"], config.seed)
  optimizer = create_optimizer(config, model, method)
  state = None if method.weighting is None else method.weighting.init(len(config.tasks))
  step_fn = step_function(config, method)
  from examples.rrg.data import input_pipeline  # pylint: disable=import-outside-toplevel

  stream = input_pipeline.train_iterator(splits["train"], config.batch_size, config.seed)
  metrics, state = step_fn(model, optimizer, state, next(stream))
  jax.block_until_ready(metrics)
  batches = [next(stream) for _ in range(num_steps)]
  t0 = time.perf_counter()
  for batch in batches:
    metrics, state = step_fn(model, optimizer, state, batch)
  jax.block_until_ready(metrics)
  return (time.perf_counter() - t0) / num_steps
