"""Orbax checkpoints of a training run: model, optimizer state, step, data position and config.

A checkpoint holds

* ``state`` -- the pure arrays of ``nnx.state(model)`` and ``nnx.state(optimizer)`` (AdamW
  moments, the multi-task transformation's state with its last diagnostics, the step count);
* ``meta``  -- JSON: the training step, the data seed, the run's config (``dataclasses.asdict``)
  and its fingerprint, and any ``extra`` bookkeeping;
* ``data``  -- optional: the state of the Grain training iterator
  (``input_pipeline.train_iterator``), written by Grain's own Orbax handler, so that a resumed
  run sees the batch the uninterrupted run would have seen next.

Restoring into a freshly built model and optimizer of the same configuration and continuing
gives exactly the steps the uninterrupted run would have taken. Restoring with a config that
differs from the saved one (other than in `BOOKKEEPING_FIELDS`) is refused with an error that
names the checkpoint and the differing fields, rather than silently continuing another run.

Example::

  mgr = checkpoint.manager("/tmp/rrg_ckpt")
  stream = input_pipeline.train_iterator(split, batch_size, seed)
  meta = checkpoint.restore(mgr, model, optimizer, config=config, data_iterator=stream)
  ...                                   # meta is None when there is no checkpoint yet
  checkpoint.save(mgr, step, model, optimizer, data_seed=seed, config=config,
                  data_iterator=stream)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

# Config fields that do not change what a run computes; they may differ on resume.
BOOKKEEPING_FIELDS = frozenset(
    {"methods", "seeds", "log_every", "checkpoint_every", "meteor", "eval_batch_size"})


def manager(directory: str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A ``CheckpointManager`` over ``directory`` (created if missing), keeping the last few."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def _pure_state(model: nnx.Module, optimizer: nnx.Optimizer) -> dict:
  # String keys throughout: list indices of nnx.List and optax.chain become "0", "1", ...
  pure = {"model": nnx.to_pure_dict(nnx.state(model)),
          "optimizer": nnx.to_pure_dict(nnx.state(optimizer))}
  return _stringify_keys(pure)


def _stringify_keys(tree):
  if isinstance(tree, dict):
    return {str(k): _stringify_keys(v) for k, v in tree.items()}
  return tree


def _restore_keys(template, restored):
  """``restored`` with the (possibly integer) keys of ``template``."""
  if isinstance(template, dict):
    return {k: _restore_keys(v, restored[str(k)]) for k, v in template.items()}
  return restored


def config_record(config: Any) -> dict:
  """A frozen dataclass config as JSON-compatible data (tuples become lists)."""
  if not dataclasses.is_dataclass(config) or isinstance(config, type):
    raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
  return json.loads(json.dumps(dataclasses.asdict(config)))


def config_fingerprint(config: Any) -> str:
  """A short SHA-256 of `config_record(config)`: equal configs have equal fingerprints."""
  text = json.dumps(config_record(config), sort_keys=True)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _flatten(record: dict, prefix: str = "") -> dict:
  """Nested dicts to {"a.b": value}."""
  flat = {}
  for key, value in record.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def config_differences(saved: dict, config: Any,
                       ignore: Collection[str] = BOOKKEEPING_FIELDS) -> dict[str, tuple]:
  """``{field: (saved value, current value)}`` for the fields where `config` differs from the
  `saved` record (a missing field reads as "<absent>"); fields in `ignore` (top-level names)
  are skipped."""
  old, new = _flatten(saved), _flatten(config_record(config))
  absent = "<absent>"
  return {name: (old.get(name, absent), new.get(name, absent))
          for name in sorted(old.keys() | new.keys())
          if name.split(".")[0] not in ignore and old.get(name, absent) != new.get(name, absent)}


def _placed_like(template, restored):
  """``restored`` placed as ``template`` was: Orbax returns arrays committed to a device, and
  ``jit`` keys its cache on that, so an array that was uncommitted (default placement) is
  made uncommitted again -- a resumed run then reuses the compiled train step."""
  if isinstance(template, jax.Array) and not template.committed:
    return jnp.asarray(np.asarray(restored))
  return restored


def save(mgr: ocp.CheckpointManager, step: int, model: nnx.Module, optimizer: nnx.Optimizer,
         *, data_seed: int, config: Any = None, data_iterator: Any = None,
         extra: dict | None = None) -> None:
  """Saves the run at training step ``step`` (asynchronously; see ``wait_until_finished``).

  Args:
    mgr: from `manager`.
    step: the number of training steps taken.
    model, optimizer: what to save.
    data_seed: the seed of the training data order.
    config: the run's config (a dataclass); stored with its fingerprint so that `restore`
      can refuse a different one.
    data_iterator: a Grain iterator (``input_pipeline.train_iterator``); its position is
      captured now, before this call returns.
    extra: JSON-serialisable bookkeeping stored with the metadata (the training loop keeps its
      loss/diagnostics history and elapsed time there).
  """
  meta = {**(extra or {}), "step": int(step), "data_seed": int(data_seed)}
  if config is not None:
    meta["config"] = config_record(config)
    meta["config_fingerprint"] = config_fingerprint(config)
  items = {"state": ocp.args.StandardSave(_pure_state(model, optimizer)),
           "meta": ocp.args.JsonSave(meta)}
  if data_iterator is not None:
    import grain  # pylint: disable=import-outside-toplevel
    items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  mgr.save(step, args=ocp.args.Composite(**items))


def _restore_data_iterator(mgr: ocp.CheckpointManager, step: int, path: str,
                           data_iterator: Any) -> None:
  """Sets `data_iterator` to the position saved in checkpoint `step` (at `path`)."""
  import grain  # pylint: disable=import-outside-toplevel

  if not os.path.isdir(os.path.join(path, "data")):
    raise ValueError(f"checkpoint {path} holds no data-iterator state")
  try:
    mgr.restore(step, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(data_iterator)))
  except (KeyError, TypeError, ValueError) as e:  # Grain's own message is a bare KeyError
    raise ValueError(
        f"checkpoint {path}: its data-iterator state does not fit this iterator "
        f"({type(e).__name__}: {e}); was it saved with another number of workers or another "
        "pipeline?") from e


def restore(mgr: ocp.CheckpointManager, model: nnx.Module, optimizer: nnx.Optimizer,
            step: int | None = None, *, config: Any = None, data_iterator: Any = None,
            ignore: Collection[str] = BOOKKEEPING_FIELDS) -> dict | None:
  """Loads checkpoint ``step`` (default: the latest) into ``model`` and ``optimizer``.

  Args:
    mgr: from `manager`.
    model, optimizer: built with the configuration of the saved run; updated in place.
    step: the checkpoint to load; None: the latest.
    config: the current run's config; if given, it must equal the saved one except in the
      fields `ignore` names.
    data_iterator: a fresh Grain iterator of the same pipeline; its position is set to the
      saved one.
    ignore: top-level config fields allowed to differ.

  Returns:
    The metadata ``{"step": ..., "data_seed": ..., "config": ..., "config_fingerprint": ...,
    **extra}``, or None when the directory holds no checkpoint.

  Raises:
    ValueError: `config` differs from the saved config (the message names the checkpoint
      path and every differing field), the checkpoint records no config to compare with, or
      `data_iterator` is given and the checkpoint holds no iterator state or one of another
      pipeline (e.g. saved with another number of workers).
  """
  step = mgr.latest_step() if step is None else step
  if step is None:
    return None
  path = os.path.join(os.fspath(mgr.directory), str(step))
  meta = dict(mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
  if config is not None:
    if "config" not in meta:
      raise ValueError(f"checkpoint {path} records no config, so it cannot be checked against "
                       "this run's; use another output directory or delete it")
    differences = config_differences(meta["config"], config, ignore)
    if differences:
      listed = "; ".join(f"{name}: {old!r} in the checkpoint, {new!r} now"
                         for name, (old, new) in differences.items())
      raise ValueError(f"checkpoint {path} was written with a different config ({listed}); "
                       "use another output directory, or delete the checkpoint to start over")
  if data_iterator is not None:
    _restore_data_iterator(mgr, step, path, data_iterator)
  model_state, opt_state = nnx.state(model), nnx.state(optimizer)
  template = {"model": nnx.to_pure_dict(model_state),
              "optimizer": nnx.to_pure_dict(opt_state)}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _stringify_keys(template))
  loaded = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  pure = jax.tree.map(_placed_like, template, _restore_keys(template, loaded["state"]))
  nnx.replace_by_pure_dict(model_state, pure["model"])
  nnx.replace_by_pure_dict(opt_state, pure["optimizer"])
  nnx.update(model, model_state)
  nnx.update(optimizer, opt_state)
  return meta
