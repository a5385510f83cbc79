"""Training the RRG model on a device mesh (one host or many), with JAX's sharding APIs only.

The mesh has two axes, given on the command line as ``--mesh data=D,fsdp=F``:

* ``fsdp`` -- parameters and optimizer state are split over it (ZeRO-3 / FSDP style): each
  parameter's largest dimension divisible by ``F`` is sharded, parameters below ``min_size``
  scalars are replicated. The split is written on the parameters as Flax NNX sharding metadata
  (``out_sharding``), so ``nnx.Optimizer`` gives AdamW's moments the same split.
* ``data``  -- pure data parallelism: parameters are replicated over it.

Every batch is split over *both* axes (``P(("data", "fsdp"))``), so each of the ``D * F``
devices computes on its own ``B / (D F)`` examples: with the batch over ``data`` alone the
``fsdp`` devices would repeat each other's work. The train step is the example's own
(``train.step_function``) under ``jit``: XLA inserts the collectives (the K task gradients are
reduced over the batch axes, the Gram matrix is a K x K all-reduce, parameters are gathered for
the forward pass) from the shardings alone; nothing here calls a collective by hand.

Multi-process (``jax.distributed``, see ``launch.py``): the batch's sharding says which rows
of each global batch live on this process's devices (:func:`process_rows`), the process reads
only those rows (:func:`local_batches`) and :func:`global_batch` assembles the global array.

Example (8 simulated CPU devices):

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m examples.rrg.main \\
      --config smoke --mesh data=2,fsdp=4
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp")
BATCH_SPEC = P(AXES)  # the leading (batch) dimension over data x fsdp
MIN_SIZE = 1024  # parameters with fewer scalars are replicated over fsdp


# ------------------------------------------------------------------------------------------------
# The mesh
# ------------------------------------------------------------------------------------------------
def parse_mesh(spec: str) -> dict[str, int]:
  """``"data=2,fsdp=4"`` -> ``{"data": 2, "fsdp": 4}``; an axis left out has size 1.

  >>> parse_mesh("data=2,fsdp=4")
  {'data': 2, 'fsdp': 4}
  >>> parse_mesh("fsdp=8")
  {'data': 1, 'fsdp': 8}
  """
  sizes = dict.fromkeys(AXES, 1)
  seen = set()
  for item in (s.strip() for s in spec.split(",")):
    name, eq, value = item.partition("=")
    name = name.strip()
    if not eq or name not in AXES or name in seen:
      raise ValueError(f"mesh {spec!r}: expected comma-separated axis=size with axes from "
                       f"{AXES}, each at most once, e.g. 'data=2,fsdp=4'")
    try:
      size = int(value)
    except ValueError:
      size = 0
    if size < 1:
      raise ValueError(f"mesh {spec!r}: the size of {name!r} must be a positive integer, "
                       f"got {value!r}")
    sizes[name] = size
    seen.add(name)
  return sizes


def make_mesh(spec: str | Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A ``(data, fsdp)`` mesh over ``devices`` (default: every device of every process).

  The product of the axis sizes must equal the number of devices. The axes are ``Auto``
  (the compiler propagates shardings from the annotated parameters and batch).
  """
  sizes = parse_mesh(spec) if isinstance(spec, str) else {**dict.fromkeys(AXES, 1), **spec}
  devices = list(jax.devices() if devices is None else devices)
  shape = tuple(sizes[a] for a in AXES)
  if math.prod(shape) != len(devices):
    raise ValueError(
        f"mesh {dict(sizes)} needs {math.prod(shape)} devices but {len(devices)} are available "
        "(on CPU, simulate more with XLA_FLAGS=--xla_force_host_platform_device_count=N set "
        "before JAX starts)")
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def use_mesh(mesh: Mesh | None):
  """``jax.set_mesh(mesh)``, or a context that does nothing when ``mesh`` is None."""
  return contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh)


# ------------------------------------------------------------------------------------------------
# Parameters and optimizer state
# ------------------------------------------------------------------------------------------------
def param_spec(shape: Sequence[int], fsdp: int, *, min_size: int = MIN_SIZE) -> tuple:
  """Axis names of one parameter: its largest dimension divisible by ``fsdp`` gets ``"fsdp"``.

  Parameters of fewer than ``min_size`` scalars, or with no such dimension, are replicated.

  >>> param_spec((3, 3, 16, 64), 4)
  (None, None, None, 'fsdp')
  >>> param_spec((64,), 4)
  (None,)
  """
  names = [None] * len(shape)
  if fsdp > 1 and math.prod(shape) >= min_size:
    candidates = [i for i, n in enumerate(shape) if n % fsdp == 0]
    if candidates:
      names[max(candidates, key=lambda i: (shape[i], -i))] = "fsdp"
  return tuple(names)


def shard_model(model: nnx.Module, mesh: Mesh, *, min_size: int = MIN_SIZE) -> None:
  """Annotates every ``nnx.Param`` of ``model`` with its split and moves it there, in place.

  Other variables are replicated. Create the optimizer afterwards under ``use_mesh(mesh)``:
  ``nnx.Optimizer`` copies each parameter's ``out_sharding`` to its moments.
  """
  fsdp = mesh.shape["fsdp"]
  with use_mesh(mesh):
    for _, var in nnx.iter_graph(model):
      if isinstance(var, nnx.Param):
        var.set_metadata(out_sharding=param_spec(var.get_value().shape, fsdp,
                                                 min_size=min_size))
  shard_state(model, mesh)


def shard_state(node: Any, mesh: Mesh) -> None:
  """Puts every variable of ``node`` (a model or an optimizer) on its annotated sharding."""
  state = nnx.state(node)
  nnx.update(node, jax.device_put(state, nnx.get_named_sharding(state, mesh)))


def state_shardings(node: Any, mesh: Mesh) -> Any:
  """The ``NamedSharding`` of every variable of ``node``, as an ``nnx.State`` of shardings."""
  return nnx.get_named_sharding(nnx.state(node), mesh)


def distribute(mesh: Mesh, model: nnx.Module, create_optimizer: Callable[[], nnx.Optimizer],
               step: Callable, *, min_size: int = MIN_SIZE) -> tuple[nnx.Optimizer, Callable]:
  """Shards ``model`` over ``mesh``, then creates its optimizer there; returns it and the step.

  Args:
    mesh: from :func:`make_mesh`.
    model: an NNX model, sharded in place by :func:`shard_model`.
    create_optimizer: makes the ``nnx.Optimizer`` of ``model``; called under the mesh, so the
      moments take their parameter's sharding.
    step: ``step(model, optimizer, *args) -> outputs``, e.g. ``train.step_function(config,
      method)``; wrapped by :func:`mesh_train_step`.
    min_size: parameters with fewer scalars stay replicated.

  Returns:
    ``(optimizer, sharded step)``; feed it the batches of :func:`local_batches`.
  """
  shard_model(model, mesh, min_size=min_size)
  with use_mesh(mesh):
    optimizer = create_optimizer()
  return optimizer, mesh_train_step(step, mesh)


@functools.cache
def mesh_train_step(step: Callable, mesh: Mesh) -> Callable:
  """``step(model, optimizer, *args) -> outputs`` with every result pinned to the mesh.

  The model and optimizer state leave the step with the shardings their metadata names (so
  step after step the layout stays the same and nothing is re-laid out between steps), and the
  outputs (metrics, a loss weighting's state) replicated, so that every process can read them.
  Cached: one function, hence one compilation per optimizer, for each ``(step, mesh)``.
  """
  replicated = NamedSharding(mesh, P())

  @nnx.jit
  def sharded_step(model, optimizer, *args):
    outputs = step(model, optimizer, *args)
    for node in (model, optimizer):
      state = nnx.state(node)
      nnx.update(node, jax.lax.with_sharding_constraint(
          state, nnx.get_named_sharding(state, mesh)))
    return jax.lax.with_sharding_constraint(outputs, replicated)

  return sharded_step


def _gathered(state: nnx.State) -> nnx.State:
  """``state`` with every array replaced by a full copy local to this process."""
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  if jax.process_count() > 1:
    full = multihost_utils.process_allgather(state, tiled=True)
  else:
    full = jax.device_get(state)
  return jax.tree.map(jax.numpy.asarray, full)


def gather_model(model: nnx.Module) -> None:
  """Replaces every variable of ``model`` by a full copy local to this process, in place.

  After mesh training, evaluation then runs unsharded on each process (arrays that span
  processes cannot meet the host-local arrays of an evaluation loop in one computation).
  """
  nnx.update(model, _gathered(nnx.state(model)))


def local_copy(model: nnx.Module) -> nnx.Module:
  """A copy of ``model`` whose variables are full arrays local to this process."""
  graphdef, state = nnx.split(model)
  return nnx.merge(graphdef, _gathered(state))


# ------------------------------------------------------------------------------------------------
# Batches: each process loads its rows, the global array is assembled from them
# ------------------------------------------------------------------------------------------------
def batch_sharding(mesh: Mesh) -> NamedSharding:
  """The sharding of every batch array: leading dimension over ``data`` x ``fsdp``."""
  return NamedSharding(mesh, BATCH_SPEC)


def process_rows(mesh: Mesh, batch_size: int) -> slice:
  """The rows of a global batch that live on this process's devices (a contiguous range)."""
  num = mesh.shape["data"] * mesh.shape["fsdp"]
  if batch_size % num:
    raise ValueError(f"batch_size={batch_size} must be divisible by data x fsdp = {num} "
                     f"(mesh {dict(mesh.shape)})")
  index_map = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
  starts = sorted({idx[0].start or 0 for idx in index_map.values()})
  stops = sorted({batch_size if idx[0].stop is None else idx[0].stop
                  for idx in index_map.values()})
  rows = slice(starts[0], stops[-1])
  if (rows.stop - rows.start) != len(starts) * (batch_size // num):
    raise ValueError(f"this process's devices hold non-contiguous rows of the batch in mesh "
                     f"{mesh}; order the devices so that each process's are adjacent on it")
  return rows


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh, batch_size: int) -> dict:
  """Global batch arrays from this process's rows (``local``, from :func:`process_rows`)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(
      sharding, np.asarray(v), (batch_size, *np.shape(v)[1:])) for k, v in local.items()}


def local_batches(split, batch_size: int, seed: int, mesh: Mesh,
                  start_step: int = 0) -> Iterator[dict]:
  """Endless global training batches, of which this process reads only its rows.

  Batch ``s`` holds the studies of batch ``s`` of ``input_pipeline.train_iterator(split,
  batch_size, seed)``, in the same order: both read the same shuffled stream of studies
  (``input_pipeline.train_dataset``), this one study by study, only at the rows
  :func:`process_rows` gives this process.
  """
  from examples.rrg.data import input_pipeline  # pylint: disable=import-outside-toplevel

  rows = process_rows(mesh, batch_size)
  studies = input_pipeline.train_dataset(split, 1, seed)  # element i: study i of the stream
  step = start_step
  while True:
    first = step * batch_size
    local = [studies[first + i] for i in range(rows.start, rows.stop)]
    yield global_batch({k: np.concatenate([s[k] for s in local]) for k in local[0]}, mesh,
                       batch_size)
    step += 1
