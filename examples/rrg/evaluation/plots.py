"""Training curves and the Double Dilemma diagnostics of every method, averaged over seeds.

Lines are means over seeds of a trailing moving average, bands +- one std over seeds (the
min-max range on log axes).

Top row: the K task losses (and the task gradient norms if a panel is spare). Bottom row: drift
deviation (angle between the update and the joint gradient ``g_joint``), diffusion decay
(``||g_joint|| / sum_k ||h_k||``, 1 = no cancellation), energy gain (``||g_final|| /
||g_joint||``) and the pairwise cosines of the task gradients.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def smooth(x: np.ndarray, window: int) -> np.ndarray:
  """Trailing moving average along axis 0 (the first values average what exists so far)."""
  x = np.asarray(x, np.float64)
  if window <= 1 or x.shape[0] == 0:
    return x
  c = np.cumsum(x, axis=0)
  out = c.copy()
  out[window:] = c[window:] - c[:-window]
  counts = np.minimum(np.arange(1, x.shape[0] + 1), window)
  return out / counts.reshape((-1,) + (1,) * (x.ndim - 1))


def plot_training_curves(results: Sequence, tasks: Sequence[str], path: str, *,
                         title: str = "") -> None:
  """Writes the figure to ``path`` (PNG); ``results`` are ``train.RunResult``s."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  k = len(tasks)
  diag_panels = [("drift_deg", "drift deviation (deg)"),
                 ("diffusion_decay", "diffusion decay ||g_joint|| / sum ||h_k||"),
                 ("energy_gain", "energy gain ||g_final|| / ||g_joint||"),
                 ("cosine", "pairwise cosine of task gradients")]
  cols = max(k, len(diag_panels))
  fig, axes = plt.subplots(2, cols, figsize=(4.2 * cols, 7.0), squeeze=False)
  methods = list(dict.fromkeys(r.method for r in results))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  pairs = list(itertools.combinations(range(k), 2))
  pair_styles = ["-", "--", ":", "-."]

  for m_idx, method in enumerate(methods):
    runs = [r for r in results if r.method == method and r.history]
    if not runs:
      continue
    color = colors[m_idx % len(colors)]
    steps = min(len(r.history["losses"]) for r in runs)
    window = max(1, steps // 25)
    x = np.arange(1, steps + 1)

    def band(ax, values, label, style="-"):
      values = np.stack([smooth(v[:steps], window) for v in values])  # (seeds, steps)
      mean = values.mean(0)
      ax.plot(x, mean, style, color=color, label=label, lw=1.4)
      if ax.get_yscale() == "log":  # the seeds' range: mean - std can be <= 0
        ax.fill_between(x, values.min(0), values.max(0), color=color, alpha=0.15, lw=0)
      else:
        std = values.std(0)
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, lw=0)

    for t, task in enumerate(tasks):
      band(axes[0, t], [r.history["losses"][:, t] for r in runs], method)
      axes[0, t].set_title(f"train loss: {task}")
    if k < cols and "task_norms" in runs[0].history:  # a spare panel: ||h_k|| per task
      ax = axes[0, k]
      ax.set_title("task gradient norms ||h_k|| = w_k ||g_k||")
      ax.set_yscale("log")
      for t, task in enumerate(tasks):
        band(ax, [r.history["task_norms"][:, t] for r in runs], f"{method}: {task}",
             pair_styles[t % len(pair_styles)])
    for col, (key, name) in enumerate(diag_panels):
      ax = axes[1, col]
      ax.set_title(name)
      if key not in runs[0].history:
        continue
      if key == "cosine":
        for p_idx, (i, j) in enumerate(pairs):
          band(ax, [r.history["cosine"][:, i, j] for r in runs],
               f"{method}: {tasks[i]}-{tasks[j]}", pair_styles[p_idx % len(pair_styles)])
        ax.axhline(0.0, color="gray", lw=0.6)
      else:
        band(ax, [r.history[key] for r in runs], method)

  for ax in axes.ravel():
    if ax.has_data():
      ax.set_xlabel("step")
      ax.legend(fontsize=7)
      ax.grid(alpha=0.3)
    else:
      ax.axis("off")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
