"""Accuracy of the float32 Gram + float32 solve vs ``precise_gram=True`` (float64), issue 20.

TorchJD's property checks on rank-deficient float32 inputs: UPGrad on strongly
stationary 20 x 100 matrices (``||H d||``, 0 exactly), ConFIG's permutation invariance
and linearity under row scaling on 20 x 10 matrices of rank 5 (max abs difference).
Writes ``benchmarks/results/precision.txt``. Run: ``python -m benchmarks.precision``.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import came_grad_jax as cg
from came_grad_jax import weightings

SEEDS = range(5)


def _update(weighting, h, precise):
  tx = cg.aggregate(weighting, num_tasks=h.shape[0], precise_gram=precise)
  params = jnp.zeros(h.shape[1], jnp.float32)
  out, _ = jax.jit(tx.update)(jnp.asarray(h, jnp.float32), tx.init(params), params)
  return np.asarray(out, np.float64)


def strongly_stationary(seed, m=20, n=100, rank=10):
  """``v^T H = 0`` for a positive ``v``: 0 is a positive combination of the rows (float32)."""
  rng = np.random.default_rng(seed)
  v = np.abs(rng.normal(size=m)) + 0.1
  u = rng.normal(size=(m, rank))
  u -= np.outer(v, v @ u) / (v @ v)
  return (u @ rng.normal(size=(rank, n))).astype(np.float32)


def _errors(precise: bool) -> dict[str, float]:
  upgrad, perm, linear = [], [], []
  for seed in SEEDS:
    h = strongly_stationary(seed)
    upgrad.append(np.linalg.norm(h.astype(np.float64) @ _update(weightings.upgrad(), h, precise)))
    rng = np.random.default_rng(100 + seed)
    a = rng.normal(size=(20, 5)) @ rng.normal(size=(5, 10))
    p = rng.permutation(20)
    d = _update(weightings.config(), a.astype(np.float32), precise)
    perm.append(np.abs(_update(weightings.config(), a[p].astype(np.float32), precise) - d).max())
    c1, c2 = rng.uniform(0.1, 1.0, 20), rng.uniform(0.1, 1.0, 20)
    x, y = rng.uniform(0.1, 1.0, 2)
    d1, d2, d12 = (_update(weightings.config(), (c[:, None] * a).astype(np.float32), precise)
                   for c in (c1, c2, x * c1 + y * c2))
    linear.append(np.abs(d12 - (x * d1 + y * d2)).max())
  return {"UPGrad ||H d||, strongly stationary 20x100": max(upgrad),
          "ConFIG permutation, 20x10 rank 5": max(perm),
          "ConFIG linearity under scaling, 20x10 rank 5": max(linear)}


def main() -> None:
  with jax.enable_x64(True):
    plain, precise = _errors(False), _errors(True)
  lines = [f"# float32 task gradients, worst of {len(SEEDS)} seeds (TorchJD's tolerance: 1e-4)",
           f"{'check':48s} {'float32 Gram':>14s} {'precise_gram':>14s}"]
  lines += [f"{name:48s} {plain[name]:14.2e} {precise[name]:14.2e}" for name in plain]
  text = "\n".join(lines) + "\n"
  print(text, end="")
  out = pathlib.Path(__file__).parent / "results" / "precision.txt"
  out.write_text(text)


if __name__ == "__main__":
  main()
