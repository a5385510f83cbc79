"""Multi-task training and evaluation of the RRG model.

The tasks and their losses (one scalar each; ``task_loss_terms`` returns them as a tuple of K,
``task_losses`` as a vector):

* ``nll``   -- report negative log-likelihood per non-pad target token (``L_nll``);
* ``cls``   -- cross-entropy of each of the 14 observations over {blank, positive, negative,
  uncertain}, averaged over observations and examples (``L_cls``);
* ``align`` -- symmetric InfoNCE between image and report embeddings (``L_align``); reports
  that are word-for-word identical within a batch count as positives of each other.

One training step computes the K per-task gradients with
:func:`came_grad_jax.value_and_task_grads` (one forward pass, K backward passes) and hands the
stacked gradients to an ``nnx.Optimizer`` whose transformation is
``optax.chain(<method>(task_weights=w), optax.adamw(...))``: the method (linear scalarization,
CAME-Grad, CAGrad, ...) turns K task gradients into one update and AdamW does the rest.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples.rrg import models
# Moved to tasks.py and decode.py; imported here for this module and its callers.
from examples.rrg.decode import greedy_decode
from examples.rrg.tasks import (BOS_ID, EOS_ID, PAD_ID, TASKS, alignment_loss,  # noqa: F401
                                classification_loss, nll_loss, task_loss_terms, task_losses)



# ------------------------------------------------------------------------------------------------
# Methods: name -> transformation that reduces stacked task gradients to one update
# ------------------------------------------------------------------------------------------------
_ALIASES = {"linear_scalarization": "ls", "came_grad": "came"}


def method_transformation(name: str, task_weights: Sequence[float], *,
                          hparams: dict | None = None) -> optax.GradientTransformation:
  """The library transformation called ``name``, with task weights ``w``.

  ``ls`` is ``aggregate(weightings.linear_scalarization(), w)``, ``came`` is
  ``came_grad(rho, kappa, nu, w)``, ``cagrad`` is ``aggregate(weightings.cagrad(c), w)``; any
  other name is looked up as a factory ``came_grad_jax.<name>(task_weights=w)`` or, failing
  that, as a weighting ``came_grad_jax.weightings.<name>()`` wrapped in ``aggregate``, so new
  methods of the library are usable here without touching this file. ``hparams`` may hold
  ``came_rho``, ``came_kappa``, ``came_nu`` and ``cagrad_c``.
  """
  import came_grad_jax as cg  # pylint: disable=import-outside-toplevel

  hp = {"came_rho": 0.5, "came_kappa": 1.5, "came_nu": 0.2, "cagrad_c": 0.4, **(hparams or {})}
  w = jnp.asarray(task_weights, jnp.float32)
  key = _ALIASES.get(name, name)
  if key == "ls":
    return cg.aggregate(cg.weightings.linear_scalarization(), task_weights=w)
  if key == "came":
    return cg.came_grad(rho=hp["came_rho"], kappa=hp["came_kappa"], nu=hp["came_nu"],
                        task_weights=w)
  if key == "cagrad":
    return cg.aggregate(cg.weightings.cagrad(hp["cagrad_c"]), task_weights=w)
  factory = getattr(cg, key, None)
  if callable(factory) and not isinstance(factory, type):
    try:
      return factory(task_weights=w)
    except TypeError:
      pass  # e.g. a helper that is not a transformation factory
  weighting = getattr(getattr(cg, "weightings", None), key, None)
  if callable(weighting):
    try:
      return cg.aggregate(weighting(), task_weights=w)
    except TypeError as e:
      raise ValueError(f"method {name!r}: weightings.{key}() needs arguments ({e}); "
                       "add it to method_transformation with its hyperparameters") from e
  raise ValueError(
      f"unknown method {name!r}: expected 'ls', 'came', 'cagrad', or the name of a "
      "transformation factory in came_grad_jax or a weighting in came_grad_jax.weightings")


def make_optimizer(method: str, task_weights: Sequence[float], *, learning_rate: float,
                   weight_decay: float, num_steps: int, warmup_steps: int,
                   hparams: dict | None = None) -> optax.GradientTransformation:
  """``optax.chain(<method>(task_weights), adamw(warmup-cosine schedule))``."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=learning_rate, warmup_steps=max(warmup_steps, 1),
      decay_steps=max(num_steps, warmup_steps + 1), end_value=0.1 * learning_rate)
  return optax.chain(
      method_transformation(method, task_weights, hparams=hparams),
      optax.adamw(schedule, weight_decay=weight_decay),
  )


# ------------------------------------------------------------------------------------------------
# Training step
# ------------------------------------------------------------------------------------------------
def diagnostics_of(optimizer: nnx.Optimizer) -> dict:
  """The method's last-step diagnostics as a dict of arrays (empty if it keeps none)."""
  found = optax.tree_utils.tree_get(nnx.as_pure(optimizer.opt_state), "diagnostics")
  if found is None:
    return {}
  return {k: jnp.asarray(v) for k, v in found._asdict().items()}


@functools.lru_cache(maxsize=None)
def make_train_step(tasks: Sequence[str] = TASKS, *, temperature: float = 0.1) -> Callable:
  """A jit-compiled ``train_step(model, optimizer, batch) -> metrics`` updating both in place.

  Cached: the same ``(tasks, temperature)`` gives the same function, hence one compilation per
  model shape and optimizer (``tasks`` must be a tuple).

  ``metrics`` has ``losses (K,)`` and the method's diagnostics (``cosine``, ``task_norms``,
  ``drift_deg``, ``diffusion_decay``, ``energy_gain``, ``coefficients``, ``min_inner``).
  """
  from came_grad_jax import value_and_task_grads  # pylint: disable=import-outside-toplevel

  tasks = tuple(tasks)

  @nnx.jit
  def train_step(model: models.ReportGenerator, optimizer: nnx.Optimizer, batch: dict) -> dict:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def losses_of(params):
      return task_loss_terms(nnx.merge(graphdef, params, rest), batch, tasks,
                             temperature=temperature)

    # L (K,) and g_k stacked on a leading axis K of every parameter leaf. Separate
    # backward passes: the classification and alignment losses skip the decoder.
    losses, task_grads = value_and_task_grads(losses_of, vectorize=False)(params)
    optimizer.update(model, task_grads)
    return {"losses": losses, **diagnostics_of(optimizer)}

  return train_step


# ------------------------------------------------------------------------------------------------
# Greedy decoding and evaluation
# ------------------------------------------------------------------------------------------------
def generate_reports(model: models.ReportGenerator, split, tokenizer, *, batch_size: int,
                     max_len: int) -> list[str]:
  """Greedy reports for every example of ``split`` (last batch padded to one compiled shape)."""
  images = split.images
  n = images.shape[0]
  texts = []
  for start in range(0, n, batch_size):
    chunk = images[start:start + batch_size]
    short = batch_size - chunk.shape[0]
    if short:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
    ids = np.asarray(greedy_decode(model, jnp.asarray(chunk), max_len=max_len))
    texts.extend(tokenizer.decode(row) for row in ids[:batch_size - short])
  return texts


@nnx.jit(static_argnames=("tasks", "temperature"))
def _eval_losses(model, batch, tasks, temperature):
  return task_losses(model, batch, tasks, temperature=temperature)


def evaluate(model: models.ReportGenerator, split, tokenizer, *, tasks: Sequence[str] = TASKS,
             batch_size: int = 64, max_len: int | None = None,
             temperature: float = 0.1, meteor: bool = False) -> tuple[dict, list[str]]:
  """Report quality, clinical efficacy and task losses on ``split``.

  NLG metrics compare the generated reports with the tokenised-and-decoded references (what the
  model can produce at best, as R2Gen does); clinical efficacy compares the split's reference
  labels with the labels that ``labeler.label_reports`` reads off the generated text.
  Returns ``(metrics, hypotheses)``.
  """
  from examples.rrg import labeler, metrics  # pylint: disable=import-outside-toplevel

  max_len = max_len or split.tokens.shape[1]
  hyps = generate_reports(model, split, tokenizer, batch_size=batch_size, max_len=max_len)
  refs = [tokenizer.decode(row) for row in split.tokens]
  results = dict(metrics.nlg_metrics(refs, hyps, meteor=meteor))
  results.update(metrics.clinical_efficacy(np.asarray(split.labels),
                                           labeler.label_reports(hyps)))
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
  return results, hyps


# ------------------------------------------------------------------------------------------------
# Data stream with a resumable position
# ------------------------------------------------------------------------------------------------
def batch_stream(split, batch_size: int, seed: int, start_step: int = 0) -> Iterator[dict]:
  """Endless training batches; epoch ``e`` is shuffled by ``default_rng([seed, e])``.

  The stream at step ``s`` depends only on ``(seed, s)``, so a run resumed from a checkpoint
  at step ``s`` sees exactly the batches the uninterrupted run would have seen.
  """
  from examples.rrg import input_pipeline  # pylint: disable=import-outside-toplevel

  steps_per_epoch = split.images.shape[0] // batch_size
  if steps_per_epoch == 0:
    raise ValueError(
        f"batch_size={batch_size} is larger than the split ({split.images.shape[0]} examples)")
  epoch, skip = divmod(start_step, steps_per_epoch)
  while True:
    it = input_pipeline.batches(split, batch_size, np.random.default_rng([seed, epoch]),
                                drop_last=True)
    for i, batch in enumerate(it):
      if i >= skip:
        yield batch
    skip = 0
    epoch += 1


# ------------------------------------------------------------------------------------------------
# One run: a method, a seed
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class RunResult:
  method: str
  seed: int
  metrics: dict
  history: dict  # name -> np.ndarray with a leading step axis
  train_time: float
  eval_time: float
  num_params: int
  hypotheses: list[str]


def create_model(config, tokenizer, split, seed: int) -> models.ReportGenerator:
  """A freshly initialised model sized for ``tokenizer`` and the views/size of ``split``."""
  _, v, h, _, _ = split.images.shape
  cfg = dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size, num_views=v,
                            image_size=h, max_len=split.tokens.shape[1])
  return models.ReportGenerator(cfg, rngs=nnx.Rngs(seed))


@functools.lru_cache(maxsize=None)
def config_optimizer(config, method: str) -> optax.GradientTransformation:
  """The transformation of ``method`` under ``config``, one object per (config, method).

  Reusing the object matters: ``nnx.jit`` keys its compilation cache on the optimizer's
  (static) transformation, so every seed of a method shares one compiled train step.
  """
  return make_optimizer(
      method, config.task_weights, learning_rate=config.learning_rate,
      weight_decay=config.weight_decay, num_steps=config.num_steps,
      warmup_steps=config.warmup_steps,
      hparams={"came_rho": config.came_rho, "came_kappa": config.came_kappa,
               "came_nu": config.came_nu, "cagrad_c": config.cagrad_c})


def create_optimizer(config, model, method: str) -> nnx.Optimizer:
  return nnx.Optimizer(model, config_optimizer(config, method), wrt=nnx.Param)


def train_and_evaluate(config, method: str, seed: int, data: dict, tokenizer, *,
                       train_step: Callable | None = None, checkpoint_dir: str | None = None,
                       progress: bool = True, position: int = 0) -> RunResult:
  """Trains one model with ``method`` and ``seed`` for ``config.num_steps``, then evaluates it.

  ``train_step`` may be shared between runs with the same tasks (one compilation per method).
  With ``checkpoint_dir``, the run saves every ``config.checkpoint_every`` steps (and at the
  end) and resumes from the latest checkpoint there, history and elapsed time included.
  """
  from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel

  train_split = data["train"]
  model = create_model(config, tokenizer, train_split, seed)
  optimizer = create_optimizer(config, model, method)
  train_step = train_step or make_train_step(config.tasks, temperature=config.temperature)

  start_step, history, previous_time = 0, [], 0.0
  manager = None
  if checkpoint_dir:
    from examples.rrg import checkpoint  # pylint: disable=import-outside-toplevel
    manager = checkpoint.manager(checkpoint_dir)
    restored = checkpoint.restore(manager, model, optimizer)
    if restored is not None:
      start_step = restored["step"]
      previous_time = restored.get("train_time", 0.0)
      history = [{k: np.asarray(v) for k, v in h.items()} for h in restored.get("history", [])]

  stream = batch_stream(train_split, config.batch_size, seed, start_step)
  bar = tqdm(range(start_step, config.num_steps), desc=f"{method} seed={seed}",
             disable=not progress, position=position, leave=True, dynamic_ncols=True)
  t0 = time.perf_counter()
  for step in bar:
    metrics = train_step(model, optimizer, next(stream))
    history.append(metrics)
    if progress and (step + 1) % config.log_every == 0:
      losses = np.asarray(metrics["losses"])
      bar.set_postfix({t: f"{l:.3f}" for t, l in zip(config.tasks, losses)})
    if manager is not None and config.checkpoint_every and (
        (step + 1) % config.checkpoint_every == 0 or step + 1 == config.num_steps):
      history = jax.device_get(history)
      checkpoint.save(manager, step + 1, model, optimizer, data_seed=seed, extra={
          "train_time": previous_time + time.perf_counter() - t0,
          "history": [{k: np.asarray(v).tolist() for k, v in h.items()} for h in history]})
  history = jax.device_get(history)
  train_time = previous_time + time.perf_counter() - t0
  bar.close()
  if manager is not None:
    manager.wait_until_finished()

  t0 = time.perf_counter()
  test = data["test"]
  results, hyps = evaluate(model, test, tokenizer, tasks=config.tasks,
                           batch_size=min(config.eval_batch_size, test.images.shape[0]),
                           temperature=config.temperature, meteor=config.meteor)
  eval_time = time.perf_counter() - t0
  stacked = {k: np.stack([h[k] for h in history]) for k in (history[0] if history else {})}
  return RunResult(method=method, seed=seed, metrics=results, history=stacked,
                   train_time=train_time, eval_time=eval_time,
                   num_params=models.count_params(model), hypotheses=hyps)


def run_all(config, data: dict, tokenizer, *, methods: Sequence[str], seeds: Sequence[int],
            progress: bool = True, checkpoint_root: str | None = None) -> list[RunResult]:
  """Every method for every seed; the train step is compiled once and shared by all runs."""
  train_step = make_train_step(config.tasks, temperature=config.temperature)
  results = []
  for method in methods:
    for seed in seeds:
      ckpt = None if checkpoint_root is None else f"{checkpoint_root}/{method}_seed{seed}"
      results.append(train_and_evaluate(config, method, seed, data, tokenizer,
                                        train_step=train_step, checkpoint_dir=ckpt,
                                        progress=progress))
  return results


def summarize(results: Sequence[RunResult], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
  """``{method: {key: (mean, std, n)}}`` over seeds; ``train_time`` is a valid key too."""
  table: dict[str, dict[str, Any]] = {}
  for method in dict.fromkeys(r.method for r in results):
    runs = [r for r in results if r.method == method]
    row = {}
    for key in keys:
      vals = np.array([r.train_time if key == "train_time" else r.metrics.get(key, np.nan)
                       for r in runs], dtype=np.float64)
      row[key] = (float(np.mean(vals)), float(np.std(vals)), len(vals))
    table[method] = row
  return table
