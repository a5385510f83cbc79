"""Print every table and quoted figure of ``benchmarks/README.md`` from the JSON results.

Run: ``python -m benchmarks.report [--results benchmarks/results]``. Every table of the
README is one of the tables printed here, character for character
(``tests/test_benchmarks_report.py`` fails otherwise), and every number the README's prose
quotes is printed under "Figures".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import RESULTS

PARAMS = "num_params"
#: Collective kinds of ``bench_comm``, in table order.
KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def _load(folder: Path, name: str):
  path = folder / f"{name}.json"
  return json.loads(path.read_text()) if path.exists() else None


def _ms(case, name):
  return case["times"][name]["median_s"] * 1e3 if name in case["times"] else float("nan")


def _load_str(load) -> str:
  return "-" if load is None else f"{load[0]:.1f}"


def _min_ratio(case) -> float:
  """came_grad / floor from each one's fastest repeat (the floor: the lower of its layouts).

  On a loaded machine a call of tens of ms is more often time-sliced than one of 1 ms,
  which biases a ratio of medians upwards; the fastest repeats are the least disturbed.
  """
  t = case["times"]
  floors = [t[n]["min_s"] for n in ("floor_dot", "floor_fused", "floor") if n in t]
  return t["came_grad"]["min_s"] / min(floors)


def transform_table(d) -> str:
  rows = ["| layout | K | P | leaves | came_grad ms | floor ms | floor layout | came_grad / floor | "
          "same, fastest repeats | Gram / floor | came_grad / NumPy | before (XLA dot) / NumPy "
          "| load |",
          "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
  for c in d["cases"]:
    r = c["ratios"]
    kind = {"floor_dot": "per-leaf GEMV", "floor_fused": "fused adds"}.get(
        c.get("floor_kind"), "per-leaf GEMV")
    rows.append(
        f"| {c['layout']} | {c['num_tasks']} | {c['num_params']:.1e} | {c['num_leaves']} | "
        f"{_ms(c, 'came_grad'):.3g} | {_ms(c, 'floor'):.3g} | {kind} | "
        f"**{r['came_grad/floor']:.2f}** | {_min_ratio(c):.2f} | "
        f"{r.get('gram/floor', float('nan')):.2f} | "
        f"{r['came_grad/numpy']:.2f} | {r['came_grad_xla_dot/numpy']:.2f} | "
        f"{_load_str(c.get('loadavg_before'))} |")
  return "\n".join(rows)


def weighting_table(d) -> str:
  names = []
  for c in d["cases"]:
    names += [n for n in c["times"] if n not in names]
  rows = ["| K | " + " | ".join(f"{n} us" for n in names) + " | TorchJD CAGrad / our cagrad | "
          "TorchJD CAGrad / our came | SciPy CAGrad / our cagrad |",
          "|---" * (len(names) + 4) + "|"]
  for c in d["cases"]:
    s = c["speedup"]
    cells = [f"{c['times'][n]['median_s'] * 1e6:.0f}" if n in c["times"] else "-" for n in names]
    rows.append(f"| {c['num_tasks']} | " + " | ".join(cells) + " | "
                + " | ".join(f"{s[k]:.1f}x" if k in s else "-" for k in (
                    "torchjd_cagrad/cagrad", "torchjd_cagrad/came", "scipy_cagrad/cagrad")) + " |")
  return "\n".join(rows)


def peers_table(d) -> str:
  names = list(d["cases"][0]["times"])
  rows = ["| K | P | " + " | ".join(f"{n} ms" for n in names) + " | TorchJD CAGrad / our cagrad | "
          "TorchJD CAGrad / came_grad | NumPy+SciPy CAGrad / our cagrad |",
          "|---" * (len(names) + 5) + "|"]
  for c in d["cases"]:
    s = c["speedup"]
    rows.append(f"| {c['num_tasks']} | {c['num_params']:.0e} | "
                + " | ".join(f"{_ms(c, n):.3g}" for n in names) + " | "
                + " | ".join(f"{s[k]:.1f}x" if k in s else "-" for k in (
                    "torchjd_cagrad/cagrad", "torchjd_cagrad/came_grad",
                    "numpy_scipy_cagrad/cagrad")) + " |")
  return "\n".join(rows)


def train_table(d) -> str:
  rows = ["| step | ms | time / LS | compiled temp MiB | temp / LS | peak estimate MiB |",
          "|---|---|---|---|---|---|"]
  for n, t in d["times"].items():
    m = d["memory"].get(n) or {}
    mr = d.get("memory_ratios", {}).get(f"{n}/linear_scalarization", {})
    rows.append(f"| {n} | {t['median_s'] * 1e3:.0f} | **{d['time_ratios'][n + '/linear_scalarization']:.2f}** | "
                f"{m.get('temp_size_in_bytes', 0) / 2**20:.1f} | {mr.get('temp', float('nan')):.2f} | "
                f"{m.get('peak_estimate_bytes', 0) / 2**20:.1f} |")
  return "\n".join(rows)


def comm_table(rows) -> str:
  """MiB per device per step by collective kind (op count), total, total / ls_1bwd's (same
  model and mesh, whatever K), and the naive model ``K x P x 4`` bytes (``P x 4`` for ls_1bwd)."""
  head = ("| model (P) | mesh | K | method | " + " | ".join(KINDS) +
          " | total MiB | / ls_1bwd | P x 4 B x K, MiB |")
  out = [head, "|---|---|---|---|" + "---:|" * (len(KINDS) + 3)]
  base = {(r["model"], r["mesh"]): sum(c["bytes"] for c in r["collectives"].values())
          for r in rows if r["method"] == "ls_1bwd"}
  for r in rows:
    total = sum(c["bytes"] for c in r["collectives"].values())
    cells = []
    for kind in KINDS:
      c = r["collectives"][kind]
      cells.append(f"{c['bytes'] / 2**20:.2f} ({c['ops']})" if c["ops"] else "-")
    ref = base.get((r["model"], r["mesh"]))
    ratio = f"{total / ref:.2f}" if ref else "-"
    model_bytes = r["num_params"] * 4 * (1 if r["method"] == "ls_1bwd" else r["num_tasks"])
    out.append(f"| {r['model']} ({r['num_params'] / 1e6:.2f}M) | {r['mesh']} | "
               f"{r['num_tasks']} | {r['method']} | " + " | ".join(cells) +
               f" | {total / 2**20:.2f} | {ratio} | {model_bytes / 2**20:.2f} |")
  return "\n".join(out)


def scaling_table(d) -> str:
  """Step time on n devices over 1 device, per method; CAME-Grad / LS at each n (same loop)."""
  rows = d["rows"]
  counts = sorted({int(n) for r in rows for n in r["times"]})
  out = ["| model | K | method | " + " | ".join(f"{n} dev" for n in counts) +
         " | 1-device step ms | load before / after |",
         "|---|---|---|" + "---:|" * (len(counts) + 2)]
  for r in rows:
    base = r["times"][str(counts[0])]["median_s"]
    cells = [f"{r['times'][str(n)]['median_s'] / base:.2f}" if str(n) in r["times"] else "-"
             for n in counts]
    out.append(f"| {r['model']} ({r['num_params'] / 1e6:.2f}M) | {r['num_tasks']} | "
               f"{r['method']} | " + " | ".join(cells) + f" | {base * 1e3:.3g} | "
               f"{_load_str(r.get('loadavg_before'))} / {_load_str(r.get('loadavg_after'))} |")
  for ratio in d.get("ratios", []):
    cells = [f"{ratio['by_devices'][str(n)]:.2f}" if str(n) in ratio["by_devices"] else "-"
             for n in counts]
    out.append(f"| {ratio['model']} ({ratio['num_params'] / 1e6:.2f}M) | {ratio['num_tasks']} | "
               f"**{ratio['ratio']}** | " + " | ".join(cells) + " | - | same loop |")
  return "\n".join(out)


def multidigits_table(d) -> str:
  from benchmarks.multidigits import markdown_table
  return markdown_table(d["summary"])


TABLES = (("transform", transform_table),
          ("weighting", weighting_table),
          ("peers", peers_table), ("train_step", train_table),
          ("comm", lambda d: comm_table(d["rows"])), ("scaling", scaling_table),
          ("multidigits", multidigits_table))


def _file_load(m) -> str:
  """A results file's load averages (1 minute); files written before ``loadavg_at_end``
  existed read the load once, when the file was written, under the key ``loadavg_at_start``."""
  if "loadavg_at_end" not in m:
    return f"load average {_load_str(m.get('loadavg_at_start'))} when the file was written"
  return (f"load average {_load_str(m.get('loadavg_at_start'))} at start, "
          f"{_load_str(m.get('loadavg_at_end'))} at end")


def _span(values) -> str:
  values = sorted(values)
  return f"{values[0]:.2f}-{values[-1]:.2f}" if values else "-"


def _transform_figures(name: str, d) -> list[str]:
  out = []
  if not d:
    return out
  # P >= 1e6 as requested (the model-like tree of "1e6" has 8.7e5 numbers).
  big = [c for c in d["cases"] if c["num_tasks"] <= 8 and c["num_params"] >= 8e5]
  for layout in sorted({c["layout"] for c in big}):
    sel = [c for c in big if c["layout"] == layout]
    out.append(f"{name}.json, {layout}, K in {sorted({c['num_tasks'] for c in sel})}, "
               f"P >= 1e6: came_grad / floor "
               f"{_span(c['ratios']['came_grad/floor'] for c in sel)} (fastest repeats "
               f"{_span(_min_ratio(c) for c in sel)}), Gram / floor "
               f"{_span(c['ratios'].get('gram/floor', float('nan')) for c in sel)}, "
               f"came_grad / NumPy {_span(c['ratios']['came_grad/numpy'] for c in sel)}; "
               f"<= 3x floor in {sum(c['ratios']['came_grad/floor'] <= 3 for c in sel)} of "
               f"{len(sel)} (P in {sorted({float(f'{c[PARAMS]:.2g}') for c in sel})})")
  loads = [c["loadavg_before"][0] for c in d["cases"] if c.get("loadavg_before")]
  if loads:
    out.append(f"{name}.json: load average (1 min) {min(loads):.1f}-{max(loads):.1f} "
               f"before the cases; code at commit {d['machine'].get('git', '?')}")
  return out


def figures(folder: Path) -> list[str]:
  """The numbers the README's prose quotes, each with the file it comes from."""
  out = _transform_figures("transform", _load(folder, "transform"))
  d = _load(folder, "weighting")
  if d:
    small = [c for c in d["cases"] if c["num_tasks"] <= 8]
    for key in ("torchjd_cagrad/cagrad", "torchjd_cagrad/came"):
      worst = min(small, key=lambda c: c["speedup"].get(key, float("inf")))
      out.append(f"weighting.json: {key}, K <= 8: smallest {worst['speedup'][key]:.1f}x at "
                 f"K = {worst['num_tasks']} "
                 f"({worst['times'][key.split('/')[1]]['median_s'] * 1e6:.1f} us vs "
                 f"{worst['times']['torchjd_cagrad']['median_s'] * 1e3:.2f} ms)")
  d = _load(folder, "scaling")
  if d:
    for r in d.get("ratios", []):
      out.append(f"scaling.json: {r['model']} K = {r['num_tasks']} {r['ratio']} by devices "
                 + ", ".join(f"{n}: {v:.2f}" for n, v in r["by_devices"].items())
                 + " (one interleaved loop)")
  d = _load(folder, "multidigits")
  if d:
    rows = [r for r in d["summary"] if "within_one_std_of_ls" in r and r["method"] != "ls"]
    out.append(f"multidigits.json: {len(d['methods'])} trainers x {len(d['seeds'])} seeds, "
               f"{d['wall_s']:.0f} s wall ({d['compile_wall_s']:.0f} s compiling, "
               f"{d['train_wall_s']:.0f} s training and evaluating), load average "
               f"{_load_str(d.get('loadavg_at_start'))} at start, "
               f"{_load_str(d.get('loadavg_at_end'))} at end")
    if rows:
      within = [r["method"] for r in rows if r["within_one_std_of_ls"]]
      beyond = [f"{r['method']} ({r['minus_ls']:+.2f} ± {r['minus_ls_paired_std']:.2f})"
                for r in rows if r["within_one_std_of_ls"] is False]
      out.append("multidigits.json: Δm - LS's Δm within one paired std of 0: "
                 f"{', '.join(within) or 'none'}; beyond: {', '.join(beyond) or 'none'}")
  for name in ("transform", "weighting", "peers", "train_step", "comm", "scaling",
               "multidigits"):
    d = _load(folder, name)
    if d and "machine" in d:
      # multidigits.json also records both loads at its top level (read by its own main).
      m = {**d["machine"], **{k: d[k] for k in ("loadavg_at_start", "loadavg_at_end") if k in d}}
      cpu = m.get("lscpu", {})
      out.append(f"{name}.json: {cpu.get('Model name', '?')}, {cpu.get('CPU(s)', '?')} CPUs; "
                 f"{_file_load(m)}")
  return out


def tables(folder: Path) -> dict[str, str]:
  """Every table, by result file, for the files that exist."""
  out = {}
  for name, fn in TABLES:
    d = _load(folder, name)
    if d is not None:
      out[name] = fn(d)
  return out


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results", default=str(RESULTS))
  args = parser.parse_args(argv)
  folder = Path(args.results)
  for name, table in tables(folder).items():
    print(f"### {name}\n")
    d = _load(folder, name)
    if name == "train_step":
      print(f"{d['num_params'] / 1e6:.2f}M parameters, K = {d['num_tasks']}, batch "
            f"{d['config']['batch_size']}, lean_exact num_chunks = {d['lean_exact_chunks']}\n")
    print(table + "\n")
  print("### Figures\n")
  for line in figures(folder):
    print(f"* {line}")
  d = _load(folder, "transform")
  if d:
    m = d["machine"]
    print(f"\nMachine: {m['lscpu'].get('Model name', '?')}, {m['lscpu'].get('CPU(s)', '?')} CPUs "
          f"({m['lscpu'].get('Hypervisor vendor', 'bare metal')}), jax {m['jax']}, numpy "
          f"{m['numpy']} ({', '.join(b['internal_api'] + ' ' + b['version'] + ' ' + str(b['architecture']) for b in m['numpy_blas'])}), "
          f"JAX CPU dispatch "
          f"{'asynchronous' if m.get('async_dispatch', True) else 'synchronous'}")


if __name__ == "__main__":
  main()
