"""Orbax checkpoints of a training run: model, optimizer state, step and data position.

A checkpoint holds

* ``state`` -- the pure arrays of ``nnx.state(model)`` and ``nnx.state(optimizer)`` (AdamW
  moments, the multi-task transformation's state with its last diagnostics, the step count);
* ``meta``  -- JSON: the training step and the data seed. The training batches at step ``s``
  depend only on ``(data_seed, s)`` (see ``train.batch_stream``), so this *is* the data RNG.

Restoring into a freshly built model and optimizer of the same configuration and continuing
gives exactly the steps the uninterrupted run would have taken.

Example::

  mgr = checkpoint.manager("/tmp/rrg_ckpt")
  checkpoint.save(mgr, step, model, optimizer, data_seed=seed)
  ...
  meta = checkpoint.restore(mgr, model, optimizer)   # None when there is no checkpoint
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from flax import nnx


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


def save(mgr: ocp.CheckpointManager, step: int, model: nnx.Module, optimizer: nnx.Optimizer,
         *, data_seed: int, extra: dict | None = None) -> None:
  """Saves the run at training step ``step`` (asynchronously; see ``wait_until_finished``).

  ``extra`` is JSON-serialisable bookkeeping stored with the metadata (the training loop keeps
  its loss/diagnostics history and elapsed time there).
  """
  meta = {**(extra or {}), "step": int(step), "data_seed": int(data_seed)}
  mgr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_pure_state(model, optimizer)),
      meta=ocp.args.JsonSave(meta)))


def restore(mgr: ocp.CheckpointManager, model: nnx.Module, optimizer: nnx.Optimizer,
            step: int | None = None) -> dict | None:
  """Loads checkpoint ``step`` (default: the latest) into ``model`` and ``optimizer``.

  Returns its metadata ``{"step": ..., "data_seed": ..., **extra}``, or None when the
  directory holds no checkpoint. ``model`` and ``optimizer`` must have the configuration of
  the saved run.
  """
  step = mgr.latest_step() if step is None else step
  if step is None:
    return None
  model_state, opt_state = nnx.state(model), nnx.state(optimizer)
  template = {"model": nnx.to_pure_dict(model_state),
              "optimizer": nnx.to_pure_dict(opt_state)}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _stringify_keys(template))
  loaded = mgr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  pure = _restore_keys(template, loaded["state"])
  nnx.replace_by_pure_dict(model_state, pure["model"])
  nnx.replace_by_pure_dict(opt_state, pure["optimizer"])
  nnx.update(model, model_state)
  nnx.update(optimizer, opt_state)
  return dict(loaded["meta"])
