"""Print the Markdown tables of ``benchmarks/README.md`` from the JSON results.

Run: ``python -m benchmarks.report [--results benchmarks/results]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import RESULTS


def _load(folder: Path, name: str):
  path = folder / f"{name}.json"
  return json.loads(path.read_text()) if path.exists() else None


def _ms(case, name):
  return case["times"][name]["median_s"] * 1e3 if name in case["times"] else float("nan")


def transform_table(d) -> str:
  rows = ["| layout | K | P | came_grad ms | floor ms | NumPy ms | came_grad / NumPy | "
          "came_grad / floor | before (XLA dot) / NumPy | Gram / NumPy Gram | "
          "Gram before / NumPy Gram |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
  for c in d["cases"]:
    r = c["ratios"]
    rows.append(
        f"| {c['layout']} | {c['num_tasks']} | {c['num_params']:.1e} | {_ms(c, 'came_grad'):.3g} | "
        f"{_ms(c, 'floor'):.3g} | {_ms(c, 'numpy'):.3g} | **{r['came_grad/numpy']:.2f}** | "
        f"{r['came_grad/floor']:.2f} | {r['came_grad_xla_dot/numpy']:.2f} | "
        f"{r['gram/numpy_gram']:.2f} | {r['gram_xla_dot/numpy_gram']:.2f} |")
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
                + " | ".join(f"{s[k]:.0f}x" if k in s else "-" for k in (
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


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results", default=str(RESULTS))
  args = parser.parse_args(argv)
  folder = Path(args.results)
  for name, table in (("transform", transform_table), ("weighting", weighting_table),
                      ("peers", peers_table), ("train_step", train_table)):
    d = _load(folder, name)
    if d is None:
      continue
    print(f"### {name}\n")
    if name == "train_step":
      print(f"{d['num_params'] / 1e6:.2f}M parameters, K = {d['num_tasks']}, batch "
            f"{d['config']['batch_size']}, lean_exact num_chunks = {d['lean_exact_chunks']}\n")
    print(table(d) + "\n")
  d = _load(folder, "transform")
  if d:
    m = d["machine"]
    print(f"Machine: {m['lscpu'].get('Model name', '?')}, {m['lscpu'].get('CPU(s)', '?')} CPUs "
          f"({m['lscpu'].get('Hypervisor vendor', 'bare metal')}), jax {m['jax']}, numpy "
          f"{m['numpy']} ({', '.join(b['internal_api'] + ' ' + b['version'] + ' ' + str(b['architecture']) for b in m['numpy_blas'])}), "
          f"load average at start {m['loadavg_at_start']}, JAX CPU dispatch "
          f"{'asynchronous' if m.get('async_dispatch', True) else 'synchronous'}")


if __name__ == "__main__":
  main()
