r"""Writes synthetic studies to disk in the R2Gen layout of IU X-Ray or MIMIC-CXR.

For trying the real-data path (``--data r2gen``) end to end before you have the datasets, and
for checking that a pipeline reads a layout the way the datasets ship it:

* ``iu_xray``: ``images/CXR<n>_IM-<n>/0.png`` and ``1.png``, two views per study (view 0 as a
  16-bit greyscale PNG, view 1 as an 8-bit RGB PNG; both are the study's synthetic frontal
  image, the second mirrored, since the generator draws no lateral view);
* ``mimic_cxr``: nested ``images/p1x/p1xxxxxxx/s5xxxxxxx/<uuid>.jpg``, one greyscale JPEG per
  study;

and ``annotation.json`` with the reports as the generator wrote them (capitalised sentences,
which R2Gen's cleaning then lower-cases and splits).

  python -m examples.rrg.data.write_layout --dataset mimic_cxr --out /tmp/mimic
  python -m examples.rrg.main --config r2gen --data r2gen --dataset mimic_cxr \
      --ann /tmp/mimic/annotation.json --images /tmp/mimic/images --backbone promptmrg \
      --steps 30 --image-size 64 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Sequence

import numpy as np

from examples.rrg.data import r2gen, synthetic

SIZES = {"train": 64, "val": 16, "test": 16}


def _sentences(report: str) -> str:
  """The generator's cleaned text as a raw report: sentences capitalised, ". "-separated."""
  parts = [s.strip() for s in report.split(" . ") if s.strip(" .")]
  return " ".join(p.rstrip(" .").capitalize() + "." for p in parts)


def _paths(dataset: str, split: str, i: int, rng: np.random.Generator) -> tuple[str, list[str]]:
  if dataset == "iu_xray":
    study = f"CXR{split[:2]}{i}_IM-{i:04d}"
    return study, [f"{study}/0.png", f"{study}/1.png"]
  subject = int(rng.integers(10_000_000, 20_000_000))
  study = int(rng.integers(50_000_000, 60_000_000))
  image = uuid.UUID(bytes=rng.bytes(16))
  return f"s{study}", [f"p{subject // 1_000_000}/p{subject}/s{study}/{image}.jpg"]


def write(out: str | os.PathLike, dataset: str = "iu_xray", *,
          sizes: dict[str, int] | None = None, image_size: int = 128, seed: int = 0) -> str:
  """Writes ``out/annotation.json`` and ``out/images/...``; returns the annotation's path.

  Args:
    out: the folder to write to (created).
    dataset: ``"iu_xray"`` or ``"mimic_cxr"``.
    sizes: studies per split (default ``SIZES``).
    image_size: side of the square images, in pixels.
    seed: the synthetic studies' seed.
  """
  from PIL import Image  # pylint: disable=import-outside-toplevel

  if dataset not in r2gen.DATASET_DEFAULTS:
    raise ValueError(f"dataset must be one of {tuple(r2gen.DATASET_DEFAULTS)}, got {dataset!r}")
  sizes = dict(SIZES if sizes is None else sizes)
  rng = np.random.default_rng(seed)
  image_dir = os.path.join(os.fspath(out), "images")
  annotation = {}
  for split in r2gen.SPLITS:
    studies = synthetic.generate(sizes[split], image_size=image_size, seed=rng)
    entries = []
    for i, (image, report) in enumerate(zip(studies.images, studies.reports)):
      study, paths = _paths(dataset, split, i, rng)
      for path in paths:
        os.makedirs(os.path.dirname(os.path.join(image_dir, path)), exist_ok=True)
      pixels = np.clip(image, 0.0, 1.0)
      if dataset == "iu_xray":
        Image.fromarray(np.round(pixels * 65535).astype(np.uint16)).save(
            os.path.join(image_dir, paths[0]))
        grey = np.round(pixels[:, ::-1] * 255).astype(np.uint8)
        Image.fromarray(np.stack([grey] * 3, -1), mode="RGB").save(
            os.path.join(image_dir, paths[1]))
      else:
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(
            os.path.join(image_dir, paths[0]), quality=95)
      entries.append({"id": study, "report": _sentences(report), "image_path": paths,
                      "split": split})
    annotation[split] = entries
  path = os.path.join(os.fspath(out), "annotation.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(annotation, f, indent=1)
  return path


def main(argv: Sequence[str] | None = None) -> str:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.data.write_layout", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="iu_xray", choices=tuple(r2gen.DATASET_DEFAULTS))
  p.add_argument("--out", required=True)
  p.add_argument("--sizes", default="64,16,16", help="train,val,test studies")
  p.add_argument("--image-size", type=int, default=128)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  try:
    sizes = dict(zip(r2gen.SPLITS, (int(s) for s in args.sizes.split(",")), strict=True))
  except ValueError:
    raise SystemExit("--sizes must be three comma-separated integers") from None
  path = write(args.out, args.dataset, sizes=sizes, image_size=args.image_size, seed=args.seed)
  print(f"wrote {path} and {os.path.join(args.out, 'images')}")
  return path


if __name__ == "__main__":
  main()
