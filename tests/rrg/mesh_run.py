"""A few RRG train steps on one device or on a mesh: shared by test_mesh and test_multiprocess.

Also the worker of the multi-process test:

  python -m examples.rrg.launch --coordinator ... --module tests.rrg.mesh_run -- \\
      --method came --mesh data=2,fsdp=4 --steps 5 --out result.npz
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from examples.rrg import configs
from examples.rrg.data import input_pipeline
from examples.rrg.training import sharding, train

# The paper's K = 2 setting ([nll, cls], weights [1, 4]) on the smallest model that still has
# every part (two CNN stages, one decoder block): compilation dominates these tests.
TINY = dataclasses.replace(
    configs.smoke(), name="tiny", tasks=("nll", "cls"), task_weights=(1.0, 4.0), num_train=32,
    num_val=8, num_test=8, image_size=16, max_len=12, batch_size=8, num_steps=20,
    model=dataclasses.replace(configs.smoke().model, channels=(4, 8), d_model=16, num_heads=2,
                              num_layers=1, mlp_dim=32, embed_dim=8))
MIN_SIZE = 64  # shard every parameter of 64 scalars or more, so that the tiny model is split


@functools.cache
def data():
  return train.load_data(TINY)


@functools.cache
def method(name: str) -> train.Method:
  return train.make_method(TINY, name)


def run(name: str, mesh=None, *, steps: int = TINY.num_steps, seed: int = 0):
  """``(losses (steps, K), model, optimizer)`` after ``steps`` steps, sharded over ``mesh``."""
  splits, tokenizer = data()
  split = splits["train"]
  config = dataclasses.replace(TINY, method=name, seed=seed)
  model = train.create_model(config, tokenizer, split, seed)
  step = train.step_function(config, method(name))
  make_optimizer = lambda: train.create_optimizer(config, model, method(name))
  if mesh is None:
    optimizer = make_optimizer()
    stream = input_pipeline.train_iterator(split, config.batch_size, seed)
  else:
    optimizer, step = sharding.distribute(mesh, model, make_optimizer, step, min_size=MIN_SIZE)
    stream = sharding.local_batches(split, config.batch_size, seed, mesh)
  losses = []
  for _ in range(steps):
    metrics, _ = step(model, optimizer, None, next(stream))
    losses.append(np.asarray(metrics["losses"]))
  return np.stack(losses), model, optimizer


@functools.cache
def reference(name: str, steps: int = TINY.num_steps) -> tuple[np.ndarray, dict]:
  """``(losses, parameters)`` of the one-device run, computed once per test session."""
  losses, model, _ = run(name, steps=steps)
  return losses, params_of(model)


def params_of(model) -> dict[str, np.ndarray]:
  """The model's parameters as host arrays (gathered from every process), by path."""
  state = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    state = multihost_utils.process_allgather(state, tiled=True)
  return {"/".join(str(k.key) for k in path): np.asarray(x)
          for path, x in jax.tree_util.tree_leaves_with_path(state)}


def is_key_bias(name: str) -> bool:
  """Attention key biases: their gradient is zero in exact arithmetic.

  A softmax does not change when every logit of a row moves by the same ``q . b_k``, so in
  float32 their gradient is rounding noise, which AdamW scales to full-size steps: they drift
  apart between any two reduction orders (one device or eight), and nothing else depends on
  them.
  """
  return name.endswith("key/bias")


def rel_err(got: dict, want: dict, *, skip_key_biases: bool = True) -> float:
  """``||got - want|| / ||want||`` over every parameter (float64 sums)."""
  if set(got) != set(want):
    raise ValueError(f"different parameters: {sorted(set(got) ^ set(want))}")
  names = [n for n in want if not (skip_key_biases and is_key_bias(n))]
  num = sum(np.sum((np.float64(got[n]) - np.float64(want[n])) ** 2) for n in names)
  den = sum(np.sum(np.float64(want[n]) ** 2) for n in names)
  return float(np.sqrt(num / den))


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--method", default="came")
  p.add_argument("--mesh", default="data=2,fsdp=4")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--out", required=True)
  args = p.parse_args(argv)
  mesh = sharding.make_mesh(args.mesh)
  rows = sharding.process_rows(mesh, TINY.batch_size)
  print(f"process {jax.process_index()} loads rows {rows.start}:{rows.stop} of each batch",
        flush=True)
  losses, model, _ = run(args.method, mesh, steps=args.steps)
  params = params_of(model)
  if jax.process_index() == 0:
    np.savez(args.out, losses=losses, **{f"param:{k}": v for k, v in params.items()})
