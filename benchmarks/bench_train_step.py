"""End to end: one training step of a 3.8M-parameter, 3-task transformer (K = 3).

Variants of the same step (forward, backward, AdamW, parameter update), each
jit-compiled, timed interleaved (median of repeats), with the compiled step's
memory (``jax.jit(...).lower(...).compile().memory_analysis()``):

* ``linear_scalarization``: ``grad`` of ``sum_k w_k L_k``, one backward pass;
* ``came_grad``: the full path, ``value_and_task_grads`` (K vectorised backward
  passes, K x P stacked gradients) + ``optax.chain(came_grad(...), adamw)``;
* ``came_grad_per_task_grads``: the same update, the K task gradients from
  ``value_and_task_grads(..., vectorize=False)``: K separate reverse passes of
  ``L_k`` in one jit (XLA merges the K identical forward passes; each backward
  pass runs only through what ``L_k`` depends on);
* ``lean_exact``: :func:`came_grad_jax.lean_value_and_grad` with the Gram
  computed in ``--chunks`` groups of leaves, then one backward of the weighted
  sum (exact, same update as ``came_grad``);
* ``lean_representation``: :func:`came_grad_jax.representation_value_and_grad`,
  the Gram of the gradients w.r.t. the shared image tokens (approximate), then
  one backward of the weighted sum.

Task weights ``[1, 4, 1]`` (the paper's cls_weight 4). The model is
:mod:`benchmarks.model` (report NLL, 14 x 4 classification, InfoNCE alignment).

Run: ``python -m benchmarks.bench_train_step`` (``--quick``: a tiny model).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import came_grad_jax
from benchmarks import common, model
from came_grad_jax import weightings

TASK_WEIGHTS = (1.0, 4.0, 1.0)


def make_steps(losses_fn, encode, heads, chunks: int, lr: float = 1e-4) -> dict[str, Any]:
  """name -> (init(params) -> opt_state, step(params, opt_state, batch))."""
  w = jnp.asarray(TASK_WEIGHTS)
  weighting = weightings.came(0.5, 1.5, 0.2)
  adamw = optax.adamw(lr)

  def ls_step(params, opt_state, batch):
    loss_fn = lambda p: jnp.dot(w, jnp.stack(losses_fn(p, batch)))
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = adamw.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  full_tx = optax.chain(came_grad_jax.came_grad(0.5, 1.5, 0.2, task_weights=TASK_WEIGHTS), adamw)

  def full_step(params, opt_state, batch):
    losses, stacked = came_grad_jax.value_and_task_grads(losses_fn)(params, batch)
    updates, opt_state = full_tx.update(stacked, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, jnp.dot(w, losses)

  def per_task_step(params, opt_state, batch):
    # K separate grads of L_k (one forward after XLA's CSE; each backward only
    # through what L_k depends on).
    losses, stacked = came_grad_jax.value_and_task_grads(losses_fn, vectorize=False)(params, batch)
    updates, opt_state = full_tx.update(stacked, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, jnp.dot(w, losses)

  def lean_step(grad_fn):
    def step(params, opt_state, batch):
      losses, grads, _ = grad_fn(params, batch)
      updates, opt_state = adamw.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, jnp.dot(w, losses)
    return step

  exact = came_grad_jax.lean_value_and_grad(losses_fn, weighting, task_weights=TASK_WEIGHTS,
                                            num_chunks=chunks)
  rep = came_grad_jax.representation_value_and_grad(encode, heads, weighting,
                                                     task_weights=TASK_WEIGHTS)
  return {
      "linear_scalarization": (adamw.init, ls_step),
      "came_grad": (full_tx.init, full_step),
      "came_grad_per_task_grads": (full_tx.init, per_task_step),
      "lean_exact": (adamw.init, lean_step(exact)),
      "lean_representation": (adamw.init, lean_step(rep)),
  }


def memory(compiled) -> dict[str, int] | None:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  fields = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes",
            "alias_size_in_bytes", "generated_code_size_in_bytes")
  out = {f: int(getattr(analysis, f, 0)) for f in fields}
  out["peak_estimate_bytes"] = (out["temp_size_in_bytes"] + out["argument_size_in_bytes"]
                                + out["output_size_in_bytes"] - out["alias_size_in_bytes"])
  return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = common.parser(__doc__)
  parser.add_argument("--chunks", type=int, default=4, help="lean_exact's num_chunks")
  parser.add_argument("--batch-size", type=int, default=None)
  args = common.parse(parser, argv)
  cfg = model.TINY if args.quick else model.Config()
  if args.batch_size:
    cfg = model.Config(**{**cfg.__dict__, "batch_size": args.batch_size})
  repeats = 1 if args.quick else args.repeats
  params, encode, heads, losses_fn = model.build(cfg)
  batch = model.make_batch(cfg)
  steps = make_steps(losses_fn, encode, heads, 2 if args.quick else args.chunks)
  if args.quick:  # compile time dominates a smoke run: skip the separate-passes variant
    steps.pop("came_grad_per_task_grads")

  fns, mem = {}, {}
  for name, (init, step) in steps.items():
    opt_state = init(params)
    compiled = jax.jit(step).lower(params, opt_state, batch).compile()
    mem[name] = memory(compiled)
    fns[name] = (lambda compiled=compiled, opt_state=opt_state:
                 common.block(compiled(params, opt_state, batch)))
  times = common.interleaved(fns, repeats=repeats, warmup=1 if args.quick else 2)
  base = times["linear_scalarization"]["median_s"]
  ratios = {f"{n}/linear_scalarization": v["median_s"] / base for n, v in times.items()}
  mem_ratios = {}
  if all(mem.values()):
    b = mem["linear_scalarization"]
    for n, m in mem.items():
      mem_ratios[f"{n}/linear_scalarization"] = {
          "temp": m["temp_size_in_bytes"] / max(b["temp_size_in_bytes"], 1),
          "peak": m["peak_estimate_bytes"] / max(b["peak_estimate_bytes"], 1)}
  for n, v in times.items():
    m = mem[n] or {}
    print(f"train step {n:22s}: {v['median_s'] * 1e3:8.1f} ms ({ratios[n + '/linear_scalarization']:.2f}x LS)"
          f", temp {m.get('temp_size_in_bytes', 0) / 2**20:7.1f} MiB"
          f", peak {m.get('peak_estimate_bytes', 0) / 2**20:7.1f} MiB", flush=True)
  payload = {"config": cfg.__dict__, "num_params": model.num_params(params), "num_tasks": 3,
             "task_weights": TASK_WEIGHTS, "lean_exact_chunks": args.chunks, "times": times,
             "time_ratios": ratios, "memory": mem, "memory_ratios": mem_ratios}
  path = common.write_json("train_step", payload, args.out)
  plot(payload, path.with_suffix(".png"))
  return payload


def plot(payload, path) -> None:
  plt = common.pyplot()
  if plt is None:
    return
  names = list(payload["times"])
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  axes[0].bar(range(len(names)), [payload["times"][n]["median_s"] * 1e3 for n in names],
              color=["grey", "C0", "C3", "C1", "C2"][:len(names)])
  axes[0].set_ylabel("median ms per step")
  if all(payload["memory"].values()):
    axes[1].bar(range(len(names)), [payload["memory"][n]["temp_size_in_bytes"] / 2**20
                                    for n in names], color=["grey", "C0", "C3", "C1", "C2"][:len(names)])
  axes[1].set_ylabel("compiled temp memory (MiB)")
  for ax in axes:
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
  fig.suptitle(f"One training step, K = 3, {payload['num_params'] / 1e6:.1f}M parameters")
  common.save_figure(fig, path)


if __name__ == "__main__":
  main()
