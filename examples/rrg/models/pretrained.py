"""Parameters of a module from a local checkpoint file the user supplies (nothing downloads).

Two formats, both keyed by the module's parameter paths joined with ``/`` (``trunk/convs/0/
kernel``, ``proj/bias``, ...):

* ``.npz`` -- ``numpy.savez(path, **{"trunk/convs/0/kernel": array, ...})``;
* an Orbax directory -- a ``StandardCheckpointer`` save of the nested dict of arrays.

The file may hold more than the module: if its keys are the module's paths under a common
prefix (a whole-model save, where the encoder sits under ``encoder/``), the prefix is found and
the rest ignored. :func:`save_params` writes either format, e.g. to move an encoder trained
here to another run::

  pretrained.save_params(model.encoder, "encoder.npz")
  cfg = dataclasses.replace(cfg, encoder_checkpoint="encoder.npz")
  model = build_model(cfg, "r2gen", rngs=nnx.Rngs(0))  # encoder loaded, the rest fresh
"""

from __future__ import annotations

import os

import numpy as np
from flax import nnx


def _flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
  if isinstance(tree, dict):
    flat = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}/"))
    return flat
  return {prefix[:-1]: tree}


def _pure_params(module: nnx.Module) -> dict:
  return nnx.to_pure_dict(nnx.state(module, nnx.Param))


def _read(path: str) -> dict[str, np.ndarray]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"encoder checkpoint {path!r} does not exist")
  if os.path.isdir(path):
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    with ocp.StandardCheckpointer() as ckptr:
      tree = ckptr.restore(os.path.abspath(path))
    return {k: np.asarray(v) for k, v in _flatten(tree).items()}
  if path.endswith(".npz"):
    with np.load(path) as data:
      return {k: data[k] for k in data.files}
  raise ValueError(f"encoder checkpoint {path!r}: expected a .npz file or an Orbax directory")


def _prefix_of(expected: list[str], found: dict[str, np.ndarray], path: str) -> str:
  """The prefix under which ``found`` holds the most of the ``expected`` paths."""
  candidates = {""}
  for key in found:
    for name in expected:
      if key.endswith("/" + name):
        candidates.add(key[:-len(name)])
  best = max(sorted(candidates), key=lambda p: sum(p + k in found for k in expected))
  if not any(best + k in found for k in expected):
    sample = ", ".join(sorted(found)[:3])
    raise ValueError(f"encoder checkpoint {path!r} holds none of the module's parameters "
                     f"(expected e.g. {expected[0]!r}; the file has {sample})")
  return best


def load_params(module: nnx.Module, path: str) -> None:
  """Overwrites the ``nnx.Param`` variables of ``module`` with those stored at ``path``.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: naming ``path`` and the parameter path, when a parameter is missing, has
      another shape, or the file holds parameters the module does not have (under the prefix
      it matched: e.g. a checkpoint of a deeper encoder).
  """
  path = os.fspath(path)
  pure = _pure_params(module)
  expected = _flatten(pure)
  found = _read(path)
  prefix = _prefix_of(list(expected), found, path)
  missing = [k for k in expected if prefix + k not in found]
  if missing:
    raise ValueError(f"encoder checkpoint {path!r} lacks {len(missing)} parameter(s): "
                     f"{', '.join(prefix + k for k in missing[:5])}")
  extra = sorted(k for k in found if k.startswith(prefix) and k[len(prefix):] not in expected)
  if extra:
    raise ValueError(f"encoder checkpoint {path!r} has {len(extra)} parameter(s) the encoder "
                     f"does not: {', '.join(extra[:5])} (another encoder configuration?)")
  wrong = [f"{prefix + key!r} has shape {found[prefix + key].shape}, the model expects "
           f"{want.shape}" for key, want in expected.items()
           if found[prefix + key].shape != want.shape]
  if wrong:
    raise ValueError(f"encoder checkpoint {path!r}: parameter {'; '.join(wrong)}")

  def fill(tree, at=""):
    if isinstance(tree, dict):
      return {k: fill(v, f"{at}{k}/") for k, v in tree.items()}
    return np.asarray(found[prefix + at[:-1]], dtype=tree.dtype)

  state = nnx.state(module, nnx.Param)
  nnx.replace_by_pure_dict(state, fill(pure))
  nnx.update(module, state)


def save_params(module: nnx.Module, path: str) -> None:
  """Writes the ``nnx.Param`` variables of ``module`` to ``path`` (``.npz``, else Orbax)."""
  path = os.fspath(path)
  flat = {k: np.asarray(v) for k, v in _flatten(_pure_params(module)).items()}
  if path.endswith(".npz"):
    np.savez(path, **flat)
    return
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  nested: dict = {}
  for key, value in flat.items():
    *parents, leaf = key.split("/")
    node = nested
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.abspath(path), nested)
