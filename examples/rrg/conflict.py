r"""Controlled-conflict study: each method's difference to LS against measured task conflict.

The knobs change how much the ``nll`` and ``cls`` tasks compete for the shared image encoder
(the one part of the model both gradients reach):

* ``disjoint`` (the dial, default): every image also shows an independent second set of
  findings, drawn by the same code in the same places with opposite brightness and never
  reported (``synthetic.generate(..., independent=True)``); a share ``s`` of the 14
  classification targets is moved to that set (``input_pipeline.synthetic_dataset``). At 0
  the classifier wants what the report states, at 1 only what it never mentions.
* ``bottleneck``: every image token passes through a unit-norm representation of width ``b``
  that the decoder and the classifier share (``ModelConfig.bottleneck``; 0: none). With
  ``ModelConfig.bottleneck_kind = "global"`` (set in the config) the whole feature map is
  narrowed to ONE unit-RMS vector of width ``b`` instead, expanded to
  ``ModelConfig.bottleneck_tokens`` memory tokens: all the decoder and the classifier see of
  the image (the ``conflict_global`` config; ``conflict_large`` is the same on 8 times the
  training studies, for twice the updates).
* ``Config.independent_style`` (set in the config): how the dial draws its second set of
  findings, ``"opposite"`` (default: same places, opposite brightness) or ``"flipped"`` (same
  brightness, upside down, so the two sets are told apart by where they are; the
  ``conflict_global`` config).
* ``mismatch``: a share of the training studies get another study's cls targets (zero-mean
  label noise: the negative control, it lowers CE-F1 and moves no measured conflict).
* ``width``: the encoder's widths ``(w, 2w, 4w)``.
* ``lr``: the peak learning rate; ``cls_weight``: the cls task's weight in the LS sum (both
  change how far along its trade-off the LS run is when the probe measures it).

What a knob does is *measured* on the LS runs (their update is the joint gradient): at 6
checkpoints along training (:func:`probe_steps`) the full-batch gradients of the two tasks on
the first 512 training studies (the same batch every time) give the cosine on the encoder's
parameters, each weighted task gradient's norm over the joint one, and the classifier's test
AUROC (:func:`full_batch_probe`); the per-batch diagnostics of every step are kept beside them
(``ls_per_batch``). Near a stationary point of LS the two full-batch gradients cancel when the
tasks trade off (cosine towards -1, each norm large against the joint) and both vanish when they
are both fitted: read the cosine with the norms.

  python -m examples.rrg.conflict --knob disjoint --values 0,0.5,1 \
      --methods ls,ls_tuned,came,cagrad,mgda,pcgrad,nash_mtl,fairgrad --seeds 0,1,2,3,4 \
      --out runs/rrg_conflict_disjoint
  python -m examples.rrg.conflict --config conflict_global --knob disjoint --values 0,0.5,1 \
      --methods ls --seeds 0,1 --out DIR
  python -m examples.rrg.conflict --knob bottleneck --values 0,16,4 --disjoint 1 --out DIR
  python -m examples.rrg.conflict --knob mismatch --values 0,1 --methods came --out DIR
  python -m examples.rrg.conflict --merge A/conflict.json B/conflict.json --out DIR

(``--merge``: parts run side by side, over different values or, at the same values, different
methods besides LS, become one study.)

Writes under ``--out``: ``conflict.json`` (``rows``: per knob value and method the LS runs'
``full_batch_encoder_cosine``, CE-F1 macro and BLEU-4 with their differences to LS and paired
95% intervals and the per-seed values; ``settings``: everything measured per value; rewritten
after every value), ``conflict.md`` and ``conflict.png`` (difference to LS against the measured
cosine, one line per method).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import came_grad_jax as cg
from examples.rrg import configs
from examples.rrg.evaluation import stats
from examples.rrg.evaluation.labeler import OBSERVATIONS, POSITIVE, UNCERTAIN
from examples.rrg.training import sweep, train
from examples.rrg.training.tasks import task_loss_terms


def encoder_channels(width: int, stages: int = 4) -> tuple[int, ...]:
  """The CNN widths of knob value ``width``: ``(w, 2w, 4w)`` for three stages, then ``4w``."""
  if width < 1:
    raise ValueError(f"width must be >= 1, got {width}")
  return tuple(width * min(2 ** i, 4) for i in range(stages))


def mismatch_labels(splits: dict, fraction: float, seed: int = 0) -> dict:
  """``splits`` with a ``fraction`` of the training studies given another study's labels.

  The studies are drawn without replacement; each gets the labels of a training study drawn
  uniformly (possibly itself, so at ``fraction = 1`` about ``1 / N`` keep theirs). Val and
  test are returned unchanged.
  """
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"mismatch fraction must be in [0, 1], got {fraction}")
  train_split = splits["train"]
  n = len(train_split)
  rng = np.random.default_rng(seed)
  chosen = rng.choice(n, size=round(fraction * n), replace=False)
  labels = np.array(train_split.labels, copy=True)
  labels[chosen] = train_split.labels[rng.integers(0, n, size=len(chosen))]
  return {**splits, "train": dataclasses.replace(train_split, labels=labels)}


def measured_conflict(runs: Sequence, tasks: Sequence[str], warmup_steps: int) -> dict:
  """Diagnostics of the runs averaged over steps after warmup, then over runs.

  Returns ``{"cosine", "negative_fraction", "encoder_cosine", "encoder_negative_fraction",
  "diffusion_decay", "drift_deg"}`` (those the runs logged); cosines are means over task pairs.
  """
  k = len(tasks)
  pairs = np.triu_indices(k, 1)
  cos, neg, enc, enc_neg, decay, drift = [], [], [], [], [], []
  for r in runs:
    h = {key: np.asarray(v)[warmup_steps:] for key, v in r.history.items()}
    if "cosine" in h:
      c = h["cosine"][:, pairs[0], pairs[1]]  # (steps, pairs)
      cos.append(c.mean())
      neg.append((c < 0).mean())
    if "encoder_cosine" in h:
      c = h["encoder_cosine"][:, pairs[0], pairs[1]]
      enc.append(c.mean())
      enc_neg.append((c < 0).mean())
    if "diffusion_decay" in h:
      decay.append(h["diffusion_decay"].mean())
    if "drift_deg" in h:
      drift.append(h["drift_deg"].mean())
  out = {}
  for name, values in (("cosine", cos), ("negative_fraction", neg), ("encoder_cosine", enc),
                       ("encoder_negative_fraction", enc_neg), ("diffusion_decay", decay),
                       ("drift_deg", drift)):
    if values:
      out[name] = float(np.mean(values))
  return out


# ------------------------------------------------------------------------------------------------
# Full-batch measurements along training (a probe of ``train.train_and_evaluate``)
# ------------------------------------------------------------------------------------------------
FREQUENT = ("Cardiomegaly", "Support Devices", "Pleural Effusion", "Lung Opacity")
"""The observations of the classifier's AUROC: the four most frequent drawn findings."""


@nnx.jit(static_argnames=("tasks", "temperature"))
def _full_batch_grams(model, batch, tasks, temperature):
  """Task losses on ``batch`` and the Gram matrices of the task gradients (encoder, all)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def losses_of(params):
    return task_loss_terms(nnx.merge(graphdef, params, rest), batch, tasks,
                           temperature=temperature)

  losses, grads = cg.value_and_task_grads(losses_of, vectorize=False)(params)
  return jnp.stack(losses), cg.gram(grads["encoder"]), cg.gram(grads)


@nnx.jit
def _presence_scores(model, images):
  """P(positive or uncertain) of every observation, ``(B, 14)``, from the classifier."""
  _, pooled = model.encode_images(images)
  p = jax.nn.softmax(model.classify(pooled), axis=-1)
  return p[..., POSITIVE] + p[..., UNCERTAIN]


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
  """Area under the ROC curve (ties count one half); NaN without both classes."""
  scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
  n_pos, n_neg = int(positive.sum()), int((~positive).sum())
  if not n_pos or not n_neg:
    return float("nan")
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  ends = np.cumsum(counts)
  ranks = (ends - (counts - 1) / 2.0)[inverse]  # average rank of each tie group (1-based)
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def prior_loss(labels: np.ndarray, num_classes: int = 4) -> float:
  """The cls loss of predicting each observation's label frequencies in ``labels`` (N, 14)."""
  total = 0.0
  for j in range(labels.shape[1]):
    freq = np.bincount(labels[:, j], minlength=num_classes) / len(labels)
    total += -float(np.sum(freq[freq > 0] * np.log(freq[freq > 0])))
  return total / labels.shape[1]


def _gram_summary(gram: np.ndarray, weights: np.ndarray) -> dict:
  """Cosine of tasks 0 and 1, each weighted gradient's norm over the joint one, the decay."""
  weighted = gram * np.outer(weights, weights)
  norms = np.sqrt(np.maximum(np.diag(weighted), 0.0))
  joint = float(np.sqrt(max(weighted.sum(), 0.0)))
  denominator = np.sqrt(gram[0, 0] * gram[1, 1]) if len(gram) > 1 else 0.0
  return {"cosine": float(gram[0, 1] / denominator) if denominator > 0 else 0.0,
          "norm_over_joint": [float(n / joint) if joint > 0 else float("nan") for n in norms],
          "diffusion_decay": joint / float(norms.sum()) if norms.sum() > 0 else float("nan")}


def full_batch_probe(config, splits: dict, *, size: int = 512) -> Callable:
  """``probe(step, model) -> dict`` measuring, on the first ``size`` training studies (the
  same batch at every call):

  * ``losses``: each task's loss (``cls_prior``: the cls loss of the label frequencies);
  * ``encoder``: the cosine of the ``nll`` and ``cls`` gradients w.r.t. the shared image
    encoder, each weighted task gradient's norm over the joint (weighted-sum) one, and the
    diffusion decay ``||sum_k w_k g_k|| / sum_k ||w_k g_k||`` on the encoder; ``all``: the
    same over every parameter;
  * ``auroc``: the classifier's test AUROC (presence = positive or uncertain, of its own
    targets) on each of :data:`FREQUENT` and their mean.
  """
  train_split, test = splits["train"], splits["test"]
  n = min(size, len(train_split))
  batch = {"images": jnp.asarray(train_split.images[:n]),
           "tokens": jnp.asarray(train_split.tokens[:n]),
           "labels": jnp.asarray(train_split.labels[:n])}
  weights = np.asarray(config.task_weights, np.float64)
  tasks = tuple(config.tasks)
  prior = prior_loss(np.asarray(train_split.labels[:n]))
  test_images = jnp.asarray(test.images)
  present = np.isin(np.asarray(test.labels), (POSITIVE, UNCERTAIN))

  def probe(step: int, model) -> dict:
    del step
    losses, enc, full = jax.device_get(_full_batch_grams(model, batch, tasks,
                                                         config.temperature))
    scores = np.asarray(_presence_scores(model, test_images))
    aurocs = {name: auroc(scores[:, OBSERVATIONS.index(name)],
                          present[:, OBSERVATIONS.index(name)]) for name in FREQUENT}
    return {"num_studies": n,
            "losses": {**{t: float(v) for t, v in zip(tasks, losses)}, "cls_prior": prior},
            "encoder": _gram_summary(np.asarray(enc, np.float64), weights),
            "all": _gram_summary(np.asarray(full, np.float64), weights),
            "auroc": {**aurocs, "mean": float(np.nanmean(list(aurocs.values())))}}

  return probe


def probe_steps(config, count: int = 6) -> tuple[int, ...]:
  """``count`` evenly spaced steps ending at the last: where the probe measures."""
  return tuple(sorted({max(1, round(config.num_steps * (i + 1) / count))
                       for i in range(count)}))


def summarize_probes(runs: Sequence) -> dict:
  """Full-batch encoder cosine over the runs' probes: the mean over checkpoints and runs, the
  fraction negative, each task's norm over the joint, and the last checkpoint's losses and AUROC.
  """
  probes = [p for r in runs for _, p in r.probes]
  if not probes:
    return {}
  cos = np.array([p["encoder"]["cosine"] for p in probes])
  last = [r.probes[-1][1] for r in runs if r.probes]
  ratios = np.array([p["encoder"]["norm_over_joint"] for p in probes])
  return {
      "full_batch_encoder_cosine": float(cos.mean()),
      "full_batch_encoder_cosine_negative_fraction": float((cos < 0).mean()),
      "full_batch_encoder_cosine_per_run": [float(np.mean([p["encoder"]["cosine"]
                                                           for _, p in r.probes]))
                                            for r in runs],
      "full_batch_norm_over_joint": ratios.mean(0).tolist(),
      "full_batch_diffusion_decay": float(np.mean([p["encoder"]["diffusion_decay"]
                                                   for p in probes])),
      "final_losses": {k: float(np.mean([p["losses"][k] for p in last]))
                       for k in last[0]["losses"]},
      "final_auroc": {k: float(np.mean([p["auroc"][k] for p in last]))
                      for k in last[0]["auroc"]},
      "checkpoints": [s for s, _ in runs[0].probes],
  }


KNOBS = {"disjoint": (0.0, 0.5, 1.0), "bottleneck": (0, 16, 4), "mismatch": (0.0, 0.5, 1.0),
         "width": (1, 2, 4, 16), "lr": (3e-4, 7e-4, 2e-3), "cls_weight": (1.0, 4.0, 16.0)}
"""Knob name -> its default values."""

SET_BY_KNOB = ("bottleneck", "width", "lr", "cls_weight")
"""Knobs that replace a setting the footer names from the config (the rows give the value)."""

METHODS = ("ls", "ls_tuned", "came", "cagrad", "mgda", "pcgrad", "nash_mtl", "fairgrad")
"""The study's methods (``--methods`` default)."""


def setting(config, data: tuple[dict, Any] | None, knob: str, value: float) -> tuple[Any, tuple]:
  """``(config, data)`` of one knob value (``data``: the base config's, for the knobs that
  only change labels or the model; the dial regenerates the data)."""
  if knob == "disjoint":
    cfg = dataclasses.replace(config, name=f"{config.name}-disjoint{value:g}",
                              disjoint=float(value))
    return cfg, train.load_data(cfg)
  data = train.load_data(config) if data is None else data
  if knob == "bottleneck":
    return (dataclasses.replace(config, name=f"{config.name}-bottleneck{int(value)}",
                                model=dataclasses.replace(config.model,
                                                          bottleneck=int(value))), data)
  if knob == "width":
    channels = encoder_channels(int(value), len(config.model.channels))
    return (dataclasses.replace(config, name=f"{config.name}-width{int(value)}",
                                model=dataclasses.replace(config.model, channels=channels)),
            data)
  if knob == "lr":
    return dataclasses.replace(config, name=f"{config.name}-lr{value:g}",
                               learning_rate=float(value)), data
  if knob == "cls_weight":
    if "cls" not in config.tasks:
      raise ValueError(f"knob cls_weight needs the cls task, config has {config.tasks}")
    weights = tuple(float(value) if t == "cls" else w
                    for t, w in zip(config.tasks, config.task_weights))
    return dataclasses.replace(config, name=f"{config.name}-cls_weight{value:g}",
                               task_weights=weights), data
  if knob == "mismatch":
    splits, tokenizer = data
    return (dataclasses.replace(config, name=f"{config.name}-mismatch{value:g}"),
            (mismatch_labels(splits, float(value), seed=config.data_seed), tokenizer))
  raise ValueError(f"knob must be one of {tuple(KNOBS)}, got {knob!r}")


def _per_seed(runs: Sequence, method: str, key: str) -> dict[str, float]:
  return {str(r.seed): float(r.metrics[key]) for r in runs if r.method == method}


def run(config, workdir: str, knob: str, values: Sequence[float], *,
        methods: Sequence[str] = ("ls", "came"), progress: bool = True,
        on_value: Callable | None = None) -> tuple[list, list]:
  """Every method at every value of ``knob``, LS probed along training (full batch).

  Returns ``(rows, settings)``: a row per value and method (the LS runs' full-batch encoder
  cosine, the CE-F1 macro and BLEU-4 differences to LS with their 95% intervals, per-seed
  values) and per value what was measured on the LS runs (full batch and per batch).
  ``on_value(rows, settings)`` is called after each value (``main`` writes the partial
  ``conflict.json`` there).
  """
  methods = tuple(dict.fromkeys(("ls", *methods)))
  base = None if knob == "disjoint" else train.load_data(config)
  rows, settings = [], []
  for value in values:
    cfg, data = setting(dataclasses.replace(config, methods=methods), base, knob, value)
    t0 = time.perf_counter()
    result = sweep.run(cfg, os.path.join(workdir, f"{knob}_{value:g}"), data=data,
                       progress=progress, probe=full_batch_probe(cfg, data[0]),
                       probe_steps=probe_steps(cfg))
    ls = [r for r in result.runs if r.method == "ls"]
    measured = summarize_probes(ls)
    per_batch = measured_conflict(ls, cfg.tasks, cfg.warmup_steps)
    settings.append({"knob": knob, "value": value, "num_params": ls[0].num_params,
                     "ls_full_batch": measured, "ls_per_batch": per_batch,
                     "ls_tuned": result.tuning, "wall_time": time.perf_counter() - t0})
    for method in methods:
      of_method = [r for r in result.runs if r.method == method]
      row = {"knob": knob, "value": value, "method": method, "seeds": len(of_method),
             "full_batch_encoder_cosine": measured.get("full_batch_encoder_cosine"),
             "ce_f1": stats.mean_std([r.metrics["ce_f1"] for r in of_method])[0],
             "BLEU_4": stats.mean_std([r.metrics["BLEU_4"] for r in of_method])[0],
             "per_seed": {"ce_f1": _per_seed(result.runs, method, "ce_f1"),
                          "BLEU_4": _per_seed(result.runs, method, "BLEU_4")}}
      if method != "ls":
        ci = sweep.intervals(result.runs, method, num_samples=config.bootstrap_samples)
        for key in ("ce_f1", "BLEU_4"):
          row[f"{key}_diff"] = ci[key]["diff"]
          row[f"{key}_low"], row[f"{key}_high"] = ci[key]["low"], ci[key]["high"]
      rows.append(row)
    if on_value is not None:
      on_value(rows, settings)
  return rows, settings


def table(rows: Sequence[dict], settings: Sequence[dict]) -> str:
  """Markdown: per knob value the measured conflict, per method the differences to LS."""
  measured = {s["value"]: s for s in settings}
  rows = sorted(rows, key=lambda r: r["value"])  # stable: methods keep their order
  lines = ["| knob | full-batch encoder cosine (LS) | negative | ‖w·g_nll‖ / ‖joint‖ | "
           "‖w·g_cls‖ / ‖joint‖ | method | seeds | CE-F1 macro | CE-F1 − LS [95% CI] | "
           "BLEU-4 | BLEU-4 − LS [95% CI] |",
           "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
  for row in rows:
    m = measured[row["value"]]["ls_full_batch"]
    ratios = m.get("full_batch_norm_over_joint", [np.nan, np.nan])

    def diff(key, row=row):
      if f"{key}_diff" not in row:
        return "-"
      return (f"{row[f'{key}_diff']:+.3f} "
              f"{stats.format_interval(row[f'{key}_low'], row[f'{key}_high'])}")

    lines.append(
        f"| {row['knob']} {row['value']:g} | {m.get('full_batch_encoder_cosine', np.nan):+.3f} | "
        f"{100 * m.get('full_batch_encoder_cosine_negative_fraction', np.nan):.0f}% | "
        f"{ratios[0]:.2f} | {ratios[1]:.2f} | {row['method']} | {row['seeds']} | "
        f"{row['ce_f1']:.3f} | {diff('ce_f1')} | {row['BLEU_4']:.3f} | {diff('BLEU_4')} |")
  return "\n".join(lines)


def settings_table(settings: Sequence[dict]) -> str:
  """Markdown: per knob value what the LS runs measured (full batch at the last checkpoint,
  per seed, and per batch along training)."""
  lines = ["| knob | full-batch encoder cosine per seed (LS) | diffusion decay (full batch) | "
           "cls loss at the end | its prior | test AUROC, frequent observations | "
           "per-batch encoder cosine | steps with it < 0 |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  for s in sorted(settings, key=lambda s: s["value"]):
    m, b = s["ls_full_batch"], s["ls_per_batch"]
    seeds = ", ".join(f"{c:+.3f}" for c in m["full_batch_encoder_cosine_per_run"])
    lines.append(
        f"| {s['knob']} {s['value']:g} | {seeds} | {m['full_batch_diffusion_decay']:.3f} | "
        f"{m['final_losses']['cls']:.3f} | {m['final_losses']['cls_prior']:.3f} | "
        f"{m['final_auroc']['mean']:.3f} | {b.get('encoder_cosine', np.nan):+.3f} | "
        f"{100 * b.get('encoder_negative_fraction', np.nan):.0f}% |")
  return "\n".join(lines)


def plot(rows: Sequence[dict], path: str) -> None:
  """Each method's difference to LS (CE-F1, BLEU-4) against the measured full-batch encoder
  cosine of the LS runs, one line per method, with the 95% intervals."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "ls"]
  for ax, key, name in ((axes[0], "ce_f1", "CE-F1 macro"), (axes[1], "BLEU_4", "BLEU-4")):
    for i, method in enumerate(methods):
      of = sorted((r for r in rows if r["method"] == method),
                  key=lambda r: r["full_batch_encoder_cosine"])
      x = np.array([r["full_batch_encoder_cosine"] for r in of]) + 0.004 * (i - len(methods) / 2)
      d = np.array([r[f"{key}_diff"] for r in of])
      err = [d - np.array([r[f"{key}_low"] for r in of]),
             np.array([r[f"{key}_high"] for r in of]) - d]
      ax.errorbar(x, d, yerr=err, marker="o", capsize=2, label=method, lw=1)
    ax.axhline(0.0, color="gray", lw=0.6)
    ax.set_xlabel("full-batch cosine of nll and cls on the encoder (LS runs)")
    ax.set_ylabel(f"{name}: method − LS")
    ax.grid(alpha=0.3)
  if methods:  # an LS-only study has no difference to plot
    axes[0].legend(fontsize=7)
  fig.suptitle(f"Conflict dial ({rows[0]['knob']}): difference to LS, paired 95% intervals")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def footer(data: dict) -> str:
  """What a conflict.json's table was measured on."""
  config = data["config"]
  steps = probe_steps(dataclasses.replace(configs.default(), num_steps=config["num_steps"]))
  bottleneck = config["model"].get("bottleneck", 0)
  if bottleneck and config["model"].get("bottleneck_kind", "token") == "global":
    bottleneck = f"{bottleneck} (global)"
  return (f"Config `{config['name']}` (tasks {list(config['tasks'])}, weights "
          f"{list(config['task_weights'])}), {config['num_steps']} steps of batch "
          f"{config['batch_size']}" + (f", bottleneck {bottleneck}" if bottleneck else "")
          + (", the independent set flipped" if config.get("independent_style") == "flipped"
             else "")
          + (f", learning rate {config['learning_rate']:g}"
             if config.get("learning_rate", 2e-3) != 2e-3 else "")
          + (f", disjoint {config['disjoint']:g}" if config.get("disjoint") is not None
             and data["knob"] != "disjoint" else "")
          + (f" (each row's {data['knob']} as the row says)" if data["knob"] in SET_BY_KNOB
             else "")
          + ("" if data.get("complete", True) else
             f"; INCOMPLETE: the values {[s['value'] for s in data['settings']]} of "
             f"{data['values']} were run")
          + f"; seeds {data['seeds']}; full-batch encoder cosine: mean over the checkpoints "
          f"{list(steps)} of the LS runs (and over their seeds), on the first 512 training "
          f"studies (all of them if fewer), 'negative' the fraction of those checkpoints below 0, ‖w·g‖ / ‖joint‖ "
          f"each weighted task gradient's norm on the encoder over that of their sum; "
          f"differences to LS paired by seed, 95% intervals: {sweep.interval_note(data)}; wall "
          f"time {data['wall_time']:.0f} s on {data['machine']['cpus']} CPU cores (load average "
          f"{data['machine']['load_average']:.1f} at the end).")


def _method_order(methods) -> list[str]:
  """``methods`` without repeats, the study's methods in :data:`METHODS` order first."""
  methods = list(dict.fromkeys(methods))
  return ([m for m in METHODS if m in methods] + [m for m in methods if m not in METHODS])


def _check_agree(parts: Sequence[dict], keys: Sequence[str]) -> None:
  for i, part in enumerate(parts):
    for key in keys:
      if part.get(key) != parts[0].get(key):
        raise ValueError(f"part {i} differs from part 0 in {key!r}: {part.get(key)!r} vs "
                         f"{parts[0].get(key)!r}")


def _join_methods(parts: Sequence[dict]) -> dict:
  """One part from parts over the same knob values that split the methods between them.

  Each ran LS (the reference): its rows and full-batch measurements must be identical (the runs
  are deterministic), and no other method may be in two parts.
  """
  first = parts[0]
  for i, part in enumerate(parts[1:], 1):
    shared = (set(part["methods"]) & set(first["methods"])) - {"ls"}
    if shared:
      raise ValueError(f"the knob values {part['values']} are in more than one part with the "
                       f"same methods {sorted(shared)} (parts 0 and {i})")
    for a, b in zip(first["settings"], part["settings"]):
      if a["ls_full_batch"] != b["ls_full_batch"] or a["ls_per_batch"] != b["ls_per_batch"]:
        raise ValueError(f"parts 0 and {i} measured different LS runs at {a['knob']} "
                         f"{a['value']:g}: not the same study")
    ls = lambda p: [r for r in p["rows"] if r["method"] == "ls"]  # noqa: E731
    if ls(first) != ls(part):
      raise ValueError(f"parts 0 and {i} have different LS rows: not the same study")
  methods = _method_order(m for part in parts for m in part["methods"])
  rows = []
  for value in first["values"]:
    of_value = {r["method"]: r for part in parts for r in part["rows"] if r["value"] == value}
    rows += [of_value[m] for m in methods]
  settings = []
  for per_value in zip(*(part["settings"] for part in parts)):
    tuned = next((s["ls_tuned"] for s in per_value if s.get("ls_tuned")), {})
    settings.append({**per_value[0], "ls_tuned": tuned,
                     "wall_time": max(s["wall_time"] for s in per_value)})
  return {**first, "methods": methods, "rows": rows, "settings": settings,
          "wall_time": max(part["wall_time"] for part in parts),
          "machine": {"cpus": first["machine"]["cpus"],
                      "load_average": max(p["machine"]["load_average"] for p in parts)}}


def merge(parts: Sequence[dict]) -> dict:
  """One study from the ``conflict.json`` of several runs of the same study, each over some of
  its knob values, or over the same values with some of its methods (run side by side: one
  process per value or per group of methods, or one machine per part).

  Parts over the same values are joined first (their LS runs must be identical, no other
  method in two of them). Then the knob, methods, seeds, interval method and config must
  agree, every part must be complete and no value may repeat; rows and settings are ordered by
  knob value. The wall time is the longest part's (``part_wall_times``: each run's, a part
  that is itself a merge contributing its own list), the load average the highest.
  """
  if not parts:
    raise ValueError("merge needs at least one conflict.json")
  _check_agree(parts, ("knob", "seeds", "interval_method", "config"))
  for i, part in enumerate(parts):
    if not part.get("complete", True):
      raise ValueError(f"part {i} is incomplete (values {part['values']})")
  runs = [w for part in parts for w in part.get("part_wall_times", [part["wall_time"]])]
  groups: dict = {}
  for part in parts:
    groups.setdefault(tuple(part["values"]), []).append(part)
  parts = [group[0] if len(group) == 1 else _join_methods(group) for group in groups.values()]
  _check_agree(parts, ("methods",))
  first = parts[0]
  values = [v for part in parts for v in part["values"]]
  if len(set(values)) != len(values):
    raise ValueError(f"a knob value is in more than one part: {values}")
  order = sorted(values)
  return {**first, "values": order,
          "rows": sorted((r for part in parts for r in part["rows"]),
                         key=lambda r: order.index(r["value"])),
          "settings": sorted((s for part in parts for s in part["settings"]),
                             key=lambda s: order.index(s["value"])),
          "complete": True, "wall_time": max(part["wall_time"] for part in parts),
          "part_wall_times": runs,
          "machine": {"cpus": first["machine"]["cpus"],
                      "load_average": max(p["machine"]["load_average"] for p in parts)}}


def write_outputs(out: dict, directory: str) -> str:
  """``conflict.json``, ``conflict.md`` and ``conflict.png`` of a study under ``directory``;
  returns the markdown (table and footer)."""
  os.makedirs(directory, exist_ok=True)
  md = table(out["rows"], out["settings"]) + "\n\n" + footer(out)
  plot(out["rows"], os.path.join(directory, "conflict.png"))
  with open(os.path.join(directory, "conflict.md"), "w", encoding="utf-8") as f:
    f.write(f"{md}\n\n![conflict](conflict.png)\n")
  with open(os.path.join(directory, "conflict.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  return md


def main(argv: Sequence[str] | None = None) -> dict:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.conflict", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="default", choices=sorted(configs.CONFIGS))
  p.add_argument("--knob", default="disjoint", choices=tuple(KNOBS))
  p.add_argument("--values", help="comma-separated knob values (default: the knob's)")
  p.add_argument("--methods", default=",".join(METHODS),
                 help="comma-separated methods (LS is always run: the reference)")
  p.add_argument("--seeds", default="0,1,2,3,4")
  p.add_argument("--steps", type=int)
  p.add_argument("--disjoint", type=float,
                 help="with a knob other than disjoint: the dial's value")
  p.add_argument("--out", default="runs/rrg_conflict")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("--merge", nargs="+", metavar="CONFLICT_JSON",
                 help="write one study under --out from the conflict.json of runs over some of "
                      "its values or some of its methods each (no training)")
  args = p.parse_args(argv)
  if args.merge:
    parts = []
    for path in args.merge:
      try:
        with open(path, encoding="utf-8") as f:
          parts.append(json.load(f))
      except (OSError, ValueError) as e:
        raise SystemExit(f"--merge: cannot read {path}: {e}") from None
    try:
      out = merge(parts)
    except ValueError as e:
      raise SystemExit(f"--merge: {e}") from None
    print("\n" + write_outputs(out, args.out), flush=True)
    return out
  try:
    values = ([float(v) for v in args.values.split(",") if v.strip()] if args.values
              else list(KNOBS[args.knob]))
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
  except ValueError:
    raise SystemExit("--values and --seeds must be comma-separated numbers") from None
  changes = {"seeds": seeds}
  if args.steps:
    changes["num_steps"] = args.steps
  if args.disjoint is not None:
    changes["disjoint"] = args.disjoint
  try:
    config = dataclasses.replace(configs.get_config(args.config), **changes)
    methods = sweep.method_list([m.strip() for m in args.methods.split(",") if m.strip()],
                                config)
  except ValueError as e:
    raise SystemExit(str(e)) from None
  os.makedirs(args.out, exist_ok=True)
  t0 = time.perf_counter()

  def results(rows, settings, complete):
    return {"knob": args.knob, "values": values, "methods": list(methods),
            "seeds": list(seeds), "rows": rows, "settings": settings, "complete": complete, "interval_method": "crossed",
            "wall_time": time.perf_counter() - t0, "config": dataclasses.asdict(config),
            "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}}

  def write(out):
    with open(os.path.join(args.out, "conflict.json"), "w", encoding="utf-8") as f:
      json.dump(out, f, indent=1)

  try:
    rows, settings = run(config, args.out, args.knob, values, methods=methods,
                         progress=not args.no_progress,
                         on_value=lambda r, s: write(results(r, s, False)))
  except ValueError as e:
    raise SystemExit(str(e)) from None
  out = results(rows, settings, True)
  print("\n" + write_outputs(out, args.out), flush=True)
  return out


if __name__ == "__main__":
  main()
