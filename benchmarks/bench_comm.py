"""Communication of one train step on an 8-device mesh, read from the compiled HLO.

For each model, number of tasks K, method and mesh, one whole train step (the K task
gradients, the method's Gram matrix, solve and combination, AdamW) is compiled for the mesh
with JAX's sharding annotations only, and the collectives XLA put in the program are summed by
kind. Nothing runs: the step is lowered from abstract inputs, so the sizes can be large.

What is counted, per device and per step, for each collective op in the optimised HLO (ops in
a loop body count once; the RRG and transformer steps have no collective inside a loop):

* ``all-reduce``, ``reduce-scatter``, ``all-to-all``, ``collective-permute``: the bytes of the
  operands (the buffer each device puts in);
* ``all-gather``: the bytes of the result (the gathered buffer each device gets).

A ring all-reduce of ``N`` bytes over ``n`` devices sends ``2 N (n - 1) / n`` bytes per device;
the table reports ``N``, the buffer, which is what scales with the method.

Methods: ``ls_1bwd`` is the plain data-parallel baseline (one backward pass of
``sum_k w_k L_k``, then AdamW); ``ls`` is the library's linear scalarization on the stacked
task gradients; ``came`` and ``mgda`` are Gram methods. Tasks: K = 2 is ``(nll, cls)``, K = 3
adds ``align``, K = 8 is ``(nll, align)`` and the classification loss of six groups of the 14
observations as six tasks.

  python -m benchmarks.bench_comm                  # both models, K = 2, 3, 8, both meshes
  python -m benchmarks.bench_comm --quick          # tiny models, seconds (the test)
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import came_grad_jax as cg
from benchmarks import common, report
from benchmarks import model as transformer
from examples.rrg import configs as rrg_configs
from examples.rrg import models as rrg_models
from examples.rrg.training import sharding
from examples.rrg.training import tasks as rrg_tasks

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
METHODS = ("ls_1bwd", "ls", "came", "mgda")
DEFAULT_METHODS = ("ls_1bwd", "came", "mgda")  # "ls" (stacked) moves what came does
MESHES = ("data=8", "data=2,fsdp=4")
WEIGHTS = (1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # w = [1, 4] as the paper's trainer, then 1s
NUM_OBSERVATIONS = 14
CLS_GROUPS = 6  # K = 8: nll, align and six observation groups

_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
                "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_SHAPE = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([0-9,]*)\]")
_COMMENT = re.compile(r"/\*.*?\*/")
_OP = re.compile(r"=\s*(?P<result>.*?)\s(?P<op>" + "|".join(KINDS) +
                 r")(?P<start>-start)?\((?P<operands>[^)]*)\)")


# ------------------------------------------------------------------------------------------------
# Reading the HLO
# ------------------------------------------------------------------------------------------------
def _bytes(types: str) -> int:
  total = 0
  for dtype, dims in _SHAPE.findall(types):
    total += _DTYPE_BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d]))
  return total


def collective_bytes(hlo: str) -> dict[str, dict[str, int]]:
  """``{kind: {"ops": count, "bytes": buffer bytes per device}}`` of an HLO module's text.

  All-reduce, all-to-all and collective-permute results have their operands' shapes and an
  all-gather's result is the gathered buffer, so those are read from the result type; a
  reduce-scatter's operands are read from the operand list, or from the instructions that
  produce them when the text prints operands by name (optimised HLO does). Async ``-start``
  ops are read from their operands (their results also hold the output), ``-done`` ops not
  at all.

  >>> text = '%x = f32[4,8]{1,0} parameter(0)\\n' \\
  ...        '%r = f32[4,8]{1,0} all-reduce(%x), to_apply=%add'
  >>> collective_bytes(text)["all-reduce"]
  {'ops': 1, 'bytes': 128}
  """
  result_types = {}
  for line in hlo.splitlines():
    name, eq, rest = line.strip().removeprefix("ROOT ").partition(" = ")
    if eq:
      result_types[name.strip()] = (rest[:rest.index(")") + 1] if rest.startswith("(")
                                    else rest.split(" ", 1)[0])
  out = {kind: {"ops": 0, "bytes": 0} for kind in KINDS}
  for line in hlo.splitlines():
    m = _OP.search(line)
    if m is None:
      continue
    if m["op"] == "reduce-scatter" or m["start"]:
      operands = _COMMENT.sub("", m["operands"])
      if not _SHAPE.search(operands):  # operands printed by name only
        operands = " ".join(result_types.get(o.strip(), "") for o in operands.split(","))
      size = _bytes(operands)
      if m["op"] == "all-gather":  # the start's result holds (operand, gathered output)
        size = _bytes(m["result"]) - size
    else:
      size = _bytes(m["result"])
    out[m["op"]]["ops"] += 1
    out[m["op"]]["bytes"] += size
  return out


# ------------------------------------------------------------------------------------------------
# The two models as (params, abstract batch, named loss terms)
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Problem:
  name: str
  params: nnx.State  # abstract (jax.ShapeDtypeStruct) parameters
  batch: dict  # abstract batch
  terms: Callable  # terms(params, batch, names) -> tuple of scalar losses
  init: Callable[[], nnx.State]  # concrete parameters
  int_bounds: dict  # integer batch entry -> exclusive upper bound of its values

  def random_batch(self, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of the abstract batch's shapes: floats in [0, 1), integers in range."""
    rng = np.random.default_rng(seed)
    return {k: (rng.integers(0, self.int_bounds[k], x.shape).astype(x.dtype) if k in
                self.int_bounds else rng.random(x.shape, dtype=np.float32))
            for k, x in self.batch.items()}


def task_names(k: int) -> tuple[str, ...]:
  """The K task names: see the module docstring."""
  if k == 2:
    return ("nll", "cls")
  if k == 3:
    return ("nll", "cls", "align")
  if k == 2 + CLS_GROUPS:
    return ("nll", "align") + tuple(f"cls{g}" for g in range(CLS_GROUPS))
  raise ValueError(f"K must be 2, 3 or {2 + CLS_GROUPS}, got {k}")


def _group_ce(logits: jax.Array, labels: jax.Array, name: str) -> jax.Array:
  """Cross-entropy of observation group ``name`` (``cls<g>``) of ``(B, 14, C)`` logits."""
  group = np.array_split(np.arange(NUM_OBSERVATIONS), CLS_GROUPS)[int(name[3:])]
  return rrg_tasks.classification_loss(logits[:, group], labels[:, group])


def rrg_problem(quick: bool) -> Problem:
  """The RRG example's encoder-decoder at the main job's sizes (or a tiny one)."""
  job = rrg_configs.default()
  cfg = (rrg_models.ModelConfig(vocab_size=32, max_len=8, image_size=16, channels=(4, 8),
                                d_model=16, num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)
         if quick else dataclasses.replace(job.model, image_size=job.image_size,
                                           max_len=job.max_len))
  batch_size = 8 if quick else job.batch_size
  build = lambda: rrg_models.ReportGenerator(cfg, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(nnx.eval_shape(build), nnx.Param)

  def terms(p, batch, names):
    model = nnx.merge(graphdef, p)
    base = [n for n in names if not n.startswith("cls") or n == "cls"]
    values = dict(zip(base, rrg_tasks.task_loss_terms(model, batch, tuple(base))))
    if any(n.startswith("cls") and n != "cls" for n in names):
      _, pooled = model.encode_images(batch["images"])
      logits = model.classify(pooled)
      for n in names:
        if n not in values:
          values[n] = _group_ce(logits, batch["labels"], n)
    return tuple(values[n] for n in names)

  batch = {"images": jax.ShapeDtypeStruct((batch_size, 1, cfg.image_size, cfg.image_size, 1),
                                          jnp.float32),
           "tokens": jax.ShapeDtypeStruct((batch_size, cfg.max_len), jnp.int32),
           "labels": jax.ShapeDtypeStruct((batch_size, NUM_OBSERVATIONS), jnp.int32)}
  return Problem("rrg", params, batch, terms, lambda: nnx.state(build(), nnx.Param),
                 {"tokens": cfg.vocab_size, "labels": 4})


def transformer_problem(quick: bool) -> Problem:
  """``benchmarks/model.py``'s multi-task transformer (3-4M parameters, or its TINY config)."""
  cfg = dataclasses.replace(transformer.TINY, batch_size=8) if quick else transformer.Config()
  build = lambda: transformer.MultiTaskModel(cfg, nnx.Rngs(0))
  graphdef, params = nnx.split(nnx.eval_shape(build), nnx.Param)

  def terms(p, batch, names):
    model = nnx.merge(graphdef, p)
    z = model.encode(batch["patches"])
    nll, cls, align = model.heads(z, batch["tokens"], batch["labels"])
    values = {"nll": nll, "cls": cls, "align": align}
    if any(n not in values for n in names):
      logits = model.cls_head(jnp.mean(z, axis=1)).reshape(
          -1, cfg.num_observations, cfg.num_classes)
      for n in names:
        if n not in values:
          values[n] = _group_ce(logits, batch["labels"], n)
    return tuple(values[n] for n in names)

  b = cfg.batch_size
  batch = {"patches": jax.ShapeDtypeStruct((b, cfg.num_patches, cfg.patch_dim), jnp.float32),
           "tokens": jax.ShapeDtypeStruct((b, cfg.text_len), jnp.int32),
           "labels": jax.ShapeDtypeStruct((b, cfg.num_observations), jnp.int32)}
  return Problem("transformer", params, batch, terms, lambda: nnx.state(build(), nnx.Param),
                 {"tokens": cfg.vocab_size, "labels": cfg.num_classes})


PROBLEMS = {"rrg": rrg_problem, "transformer": transformer_problem}


# ------------------------------------------------------------------------------------------------
# One compiled train step
# ------------------------------------------------------------------------------------------------
def method_transformation(name: str, k: int) -> optax.GradientTransformation:
  """The library's transformation of ``name`` for K tasks with :data:`WEIGHTS`."""
  w = WEIGHTS[:k]
  if hasattr(cg, "make_method"):
    return cg.make_method(name, task_weights=w)
  factories = {"ls": cg.linear_scalarization, "came": cg.came_grad, "mgda": cg.mgda}
  return factories[name](task_weights=w)


def train_step(problem: Problem, method: str, k: int) -> tuple[Callable, optax.GradientTransformation]:
  """``step(params, opt_state, batch) -> (params, opt_state, losses)`` and its optimizer."""
  names = task_names(k)
  w = jnp.asarray(WEIGHTS[:k], jnp.float32)
  adamw = optax.adamw(1e-3, weight_decay=1e-4)

  if method == "ls_1bwd":
    def step(params, opt_state, batch):
      def objective(p):
        losses = jnp.stack(problem.terms(p, batch, names))
        return jnp.sum(w * losses), losses
      (_, losses), grad = jax.value_and_grad(objective, has_aux=True)(params)
      updates, opt_state = adamw.update(grad, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, losses
    return step, adamw

  tx = optax.chain(method_transformation(method, k), adamw)

  def step(params, opt_state, batch):
    losses, task_grads = cg.value_and_task_grads(
        lambda p: problem.terms(p, batch, names), vectorize=False)(params)
    updates, opt_state = tx.update(task_grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, losses
  return step, tx


def sharded_step(problem: Problem, method: str, k: int, mesh, *,
                 min_size: int = sharding.MIN_SIZE) -> tuple[Callable, tuple, optax.OptState]:
  """The train step jit-compiled for ``mesh`` (params over fsdp, batch over data x fsdp, as
  ``examples/rrg/training/sharding.py`` lays them out).

  Returns ``(jitted step, (param, opt state, batch) shardings, abstract opt state)``.
  """
  step, tx = train_step(problem, method, k)
  fsdp = mesh.shape["fsdp"]
  is_spec = lambda x: isinstance(x, P)
  param_specs = jax.tree.map(
      lambda x: P(*sharding.param_spec(x.shape, fsdp, min_size=min_size)), problem.params)
  opt_state = jax.eval_shape(tx.init, problem.params)
  opt_specs = optax.tree_utils.tree_map_params(
      tx, lambda _, spec: spec, opt_state, param_specs, transform_non_params=lambda _: P(),
      is_leaf=is_spec)
  named = lambda specs: jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=is_spec)
  shardings = (named(param_specs), named(opt_specs),
               jax.tree.map(lambda _: sharding.batch_sharding(mesh), problem.batch))
  jitted = jax.jit(step, in_shardings=shardings,
                   out_shardings=(shardings[0], shardings[1], NamedSharding(mesh, P())))
  return jitted, shardings, opt_state


def compiled_hlo(problem: Problem, method: str, k: int, mesh_spec: str) -> str:
  """The optimised HLO text of the train step on an 8-device ``mesh_spec``."""
  mesh = sharding.make_mesh(mesh_spec, jax.devices()[:8])
  jitted, _, opt_state = sharded_step(problem, method, k, mesh)
  return jitted.lower(problem.params, opt_state, problem.batch).compile().as_text()


def num_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def measure(problem: Problem, methods: Sequence[str], ks: Sequence[int],
            meshes: Sequence[str]) -> list[dict]:
  """One row per (mesh, K, method). ``ls_1bwd`` communicates one gradient whatever K is, so it
  is compiled once per mesh (at the largest K <= 3 asked for) and its row is shown for that K."""
  rows = []
  for mesh_spec in meshes:
    for k in ks:
      for method in methods:
        if method == "ls_1bwd" and k != max(x for x in ks if x <= 3):
          continue
        t0 = time.perf_counter()
        counts = collective_bytes(compiled_hlo(problem, method, k, mesh_spec))
        rows.append({"model": problem.name, "num_params": num_params(problem.params),
                     "mesh": mesh_spec, "num_tasks": k, "method": method,
                     "collectives": counts, "compile_s": time.perf_counter() - t0})
        total = sum(c["bytes"] for c in counts.values())
        kinds = {kind: c for kind, c in counts.items() if c["ops"]}
        print(f"{problem.name} {mesh_spec} K={k} {method}: {total / 2**20:.3f} MiB {kinds} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
  return rows


def table(rows: Sequence[dict]) -> str:
  """Markdown: MiB per device per step by collective kind (``report.comm_table``)."""
  return report.comm_table(rows)


def main(argv: list[str] | None = None) -> list[dict]:
  p = common.parser(__doc__, tasks=(2, 3, 8))
  p.add_argument("--models", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
  p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS))
  p.add_argument("--meshes", nargs="+", default=list(MESHES))
  args = common.parse(p, argv)
  if jax.device_count() < 8:
    raise SystemExit("bench_comm needs 8 devices: run it with "
                     "XLA_FLAGS=--xla_force_host_platform_device_count=8")
  ks = [2] if args.quick else args.tasks
  rows = []
  for name in args.models:
    rows += measure(PROBLEMS[name](args.quick), args.methods, ks, args.meshes)
  print(table(rows))
  common.write_json("comm", {"rows": rows, "methods": args.methods, "meshes": args.meshes,
                             "quick": args.quick}, args.out)
  return rows


if __name__ == "__main__":
  main()
