"""Per-step training curves of a run: CSV, JSON and TensorBoard event files.

A run's history maps names to arrays with a leading step axis: ``losses (S, K)`` and the
method's diagnostics (``drift_deg (S,)``, ``diffusion_decay``, ``energy_gain``, ``min_inner``,
``coefficients (S, K)``, ``task_norms (S, K)``, ``cosine (S, K, K)``). :func:`columns` flattens it
into named scalar series (``loss/nll``, ``cosine/nll-cls``, ``coefficient/cls``, ...), which
:func:`write` saves as ``curves.csv`` and ``curves.json`` and, with ``tensorboardX``, as event
files under ``tensorboard/`` of the run folder (``tensorboard --logdir runs/rrg``).

Example:
  >>> import numpy as np
  >>> history = {"losses": np.array([[2.0, 1.0], [1.5, 0.9]]),
  ...            "cosine": np.array([[[1, -0.1], [-0.1, 1]], [[1, 0.2], [0.2, 1]]])}
  >>> list(columns(history, ("nll", "cls")))
  ['loss/nll', 'loss/cls', 'cosine/nll-cls']
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

# history key -> column prefix for per-task series
_PER_TASK = {"losses": "loss", "coefficients": "coefficient", "task_norms": "task_norm"}


def columns(history: Mapping[str, np.ndarray], tasks: Sequence[str]) -> dict[str, np.ndarray]:
  """Named scalar series ``(S,)``: per-task series, pairwise cosines and scalar diagnostics."""
  k = len(tasks)
  out: dict[str, np.ndarray] = {}
  for key in sorted(history, key=lambda name: name != "losses"):  # the losses first
    values = np.asarray(history[key], np.float64)
    if key in _PER_TASK and values.ndim == 2 and values.shape[1] == k:
      for t, task in enumerate(tasks):
        out[f"{_PER_TASK[key]}/{task}"] = values[:, t]
    elif key in ("cosine", "encoder_cosine") and values.shape[1:] == (k, k):
      for i, j in itertools.combinations(range(k), 2):
        out[f"{key}/{tasks[i]}-{tasks[j]}"] = values[:, i, j]
    elif values.ndim == 1:
      out[key] = values
    else:
      raise ValueError(f"history[{key!r}] has shape {values.shape}: expected (S,), (S, {k}) or "
                       f"(S, {k}, {k}) for tasks {tuple(tasks)}")
  return out


def write(history: Mapping[str, np.ndarray], tasks: Sequence[str], run_dir: str, *,
          tensorboard: bool = True) -> list[str]:
  """Writes ``curves.csv``, ``curves.json`` (and TensorBoard events) under ``run_dir``.

  Steps are numbered from 1. Returns the paths written.
  """
  series = columns(history, tasks)
  os.makedirs(run_dir, exist_ok=True)
  steps = len(next(iter(series.values()))) if series else 0
  names = list(series)
  csv_path = os.path.join(run_dir, "curves.csv")
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["step", *names])
    for s in range(steps):
      writer.writerow([s + 1, *(f"{series[n][s]:.6g}" for n in names)])
  json_path = os.path.join(run_dir, "curves.json")
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump({"step": list(range(1, steps + 1)),
               **{n: [float(v) for v in series[n]] for n in names}}, f)
  paths = [csv_path, json_path]
  if tensorboard:
    paths.append(write_tensorboard(series, os.path.join(run_dir, "tensorboard")))
  return paths


def write_tensorboard(series: Mapping[str, np.ndarray], log_dir: str) -> str:
  """One scalar per series and step in a TensorBoard event file under ``log_dir``."""
  from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

  writer = SummaryWriter(logdir=log_dir)
  try:
    for name, values in series.items():
      for s, value in enumerate(values):
        writer.add_scalar(name, float(value), global_step=s + 1)
  finally:
    writer.close()
  return log_dir
