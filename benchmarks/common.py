"""Shared benchmark machinery: interleaved timing, machine description, JSON and plots.

Every timed function is jit-compiled and warmed up before timing (compilation
is never timed), returns after ``block_until_ready``, and is timed as the
median of ``repeats`` runs. The machines these run on are shared and noisy, so
the functions being compared are *interleaved*: each repeat times every
candidate once, in turn, and results are reported as ratios against a
baseline measured in the same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

#: JAX's CPU option for dispatching computations to a worker thread.
ASYNC_DISPATCH = "jax_cpu_enable_async_dispatch"


def set_dispatch(async_dispatch: bool) -> None:
  """Choose JAX's CPU dispatch before the first computation (it is fixed after).

  By default JAX runs a CPU computation it judges costly on a worker thread and
  returns at once; a timing loop that blocks on every call then pays a thread
  handoff per call (5-60 us, erratic on a loaded 2-core machine), which would
  swamp the ~10-40 us K x K solves. The benchmarks therefore run synchronously
  unless ``--async-dispatch`` is given; ``machine()`` records which.
  """
  from jax._src import xla_bridge
  if xla_bridge.backends_are_initialized():
    if jax.config.values[ASYNC_DISPATCH] != async_dispatch:
      print(f"warning: JAX is initialised with {ASYNC_DISPATCH}="
            f"{jax.config.values[ASYNC_DISPATCH]}; --async-dispatch={async_dispatch} ignored")
    return
  jax.config.update(ASYNC_DISPATCH, async_dispatch)


def block(x: Any) -> Any:
  """Wait for every array in ``x`` (JAX arrays, or anything else untouched)."""
  return jax.block_until_ready(x)


def interleaved(fns: dict[str, Callable[[], Any]], *, repeats: int = 7, warmup: int = 2,
                min_time: float = 0.0) -> dict[str, dict[str, float]]:
  """Time each ``fn()`` (which must block until its result is ready), interleaved.

  Args:
    fns: name -> zero-argument callable.
    repeats: timed rounds; each round calls every function once, in turn.
    warmup: untimed calls of each function first (compilation, caches).
    min_time: if > 0, a round's call of a fast function is repeated until at
      least this many seconds pass and the mean per call is recorded.

  Returns:
    name -> {"median_s", "min_s", "max_s", "repeats"}.
  """
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      calls, start = 0, time.perf_counter()
      while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
          break
      times[name].append(elapsed / calls)
  return {name: {"median_s": float(np.median(t)), "min_s": float(np.min(t)),
                 "max_s": float(np.max(t)), "repeats": len(t)}
          for name, t in times.items()}


#: The load average when the first benchmark parsed its arguments (the run's start).
_START_LOAD: list = []


def mark_start() -> None:
  """Record the load average now as the run's start (once per process; ``parse`` calls it)."""
  if not _START_LOAD:
    _START_LOAD.append(loadavg())


def loadavg() -> list[float] | None:
  """The 1, 5 and 15 minute load averages now (None where the OS has none)."""
  return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _git_commit() -> str | None:
  """The checkout's commit (``+dirty`` when tracked files differ from it), or None."""
  root = Path(__file__).resolve().parent.parent
  try:
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                         text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return rev + ("+dirty" if dirty else "")


def _lscpu_summary() -> dict[str, str]:
  keep = ("Architecture", "Model name", "CPU(s)", "Thread(s) per core", "L2 cache",
          "L3 cache", "Hypervisor vendor")
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return {}
  info = {}
  for line in out.splitlines():
    key, _, value = line.partition(":")
    if key.strip() in keep:
      info[key.strip()] = value.strip()
  return info


def _blas_info() -> list[dict[str, Any]]:
  try:
    from threadpoolctl import threadpool_info
  except ImportError:
    return []
  return [{k: v for k, v in lib.items() if k in ("internal_api", "version", "architecture",
                                                  "num_threads")}
          for lib in threadpool_info() if lib.get("user_api") == "blas"]


def machine() -> dict[str, Any]:
  """What the numbers came from: CPU, devices, library versions, BLAS kernel."""
  import jaxlib
  import optax
  info = {
      "lscpu": _lscpu_summary(),
      "platform": platform.platform(),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "optax": optax.__version__,
      "numpy": np.__version__,
      "numpy_blas": _blas_info(),
      "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
      "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                  "OPENBLAS_NUM_THREADS") if k in os.environ},
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "async_dispatch": jax.config.values[ASYNC_DISPATCH],
      "git": _git_commit(),
      "loadavg_at_start": _START_LOAD[0] if _START_LOAD else loadavg(),
      "loadavg_at_end": loadavg(),
  }
  return info


def write_json(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
  """Write ``payload`` (plus the machine description) to ``<out_dir>/<name>.json``."""
  out_dir = Path(out_dir or RESULTS)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f"{name}.json"
  payload = {"benchmark": name, "machine": machine(), **payload}
  path.write_text(json.dumps(payload, indent=1, default=_jsonable))
  return path


def _jsonable(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def pyplot():
  """matplotlib's pyplot with a non-interactive backend, or None if not installed."""
  try:
    import matplotlib
  except ImportError:
    return None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def fmt_ms(seconds: float) -> str:
  return f"{seconds * 1e3:.3g}"


def save_figure(fig, path: Path) -> None:
  """Lay out, write (110 dpi) and close a Matplotlib figure."""
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  pyplot().close(fig)


def parser(doc: str, *, tasks: tuple[int, ...] | None = None) -> argparse.ArgumentParser:
  """The options every benchmark script shares: --tasks (if given), --repeats, --quick, --out."""
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  if tasks is not None:
    p.add_argument("--tasks", type=int, nargs="+", default=list(tasks))
  p.add_argument("--repeats", type=int, default=7)
  p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (smoke test)")
  p.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
  add_dispatch_flag(p)
  return p


def add_dispatch_flag(p: argparse.ArgumentParser) -> None:
  p.add_argument("--async-dispatch", action="store_true",
                 help="keep JAX's default asynchronous CPU dispatch (see set_dispatch)")


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
  """Parse the arguments, then fix JAX's dispatch mode from them."""
  args = p.parse_args(argv)
  mark_start()
  set_dispatch(args.async_dispatch)
  return args
