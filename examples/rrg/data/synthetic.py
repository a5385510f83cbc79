"""Deterministic synthetic chest radiographs with templated, label-consistent reports.

Each study is a grayscale frontal radiograph drawn procedurally (body, lungs with vessel markings
and ribs, spine and mediastinum, heart, and findings), a report written from templates, and the
14 CheXpert labels that the report states. Images and reports agree: a finding is drawn iff the
report mentions it as positive (full strength) or uncertain (drawn fainter), at the side and lung
zone that the report names; findings that are absent are sometimes mentioned as negative, as real
reports do. Finding rates are long-tailed (`PREVALENCE`): rare but critical findings, such as a
small nodule or a pneumothorax, occur in a few percent of studies.

Everything is vectorised NumPy driven by one seed, so the same seed gives the same studies.

Example:
  >>> studies = generate(4, image_size=32, seed=0)
  >>> studies.images.shape, len(studies.reports), studies.labels.shape
  ((4, 32, 32), 4, (4, 14))
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from examples.rrg.evaluation.labeler import BLANK, NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN

# Probability that a study shows each drawn finding (Pneumonia is reported from consolidation
# and No Finding follows from the rest). Edema is more frequent with cardiomegaly.
PREVALENCE: dict[str, float] = {
    "Cardiomegaly": 0.28,
    "Support Devices": 0.22,
    "Pleural Effusion": 0.20,
    "Lung Opacity": 0.15,
    "Atelectasis": 0.14,
    "Edema": 0.10,
    "Consolidation": 0.08,
    "Enlarged Cardiomediastinum": 0.07,
    "Lung Lesion": 0.05,
    "Pneumothorax": 0.04,
    "Pleural Other": 0.025,
    "Fracture": 0.02,
}
# Probability that a drawn finding is reported (and drawn) as uncertain rather than positive.
UNCERTAIN_RATE = 0.15
# Probability that an absent finding is mentioned as negative.
NEGATION_RATE: dict[str, float] = {
    "Cardiomegaly": 0.5, "Enlarged Cardiomediastinum": 0.3, "Pleural Effusion": 0.5,
    "Pneumothorax": 0.5, "Consolidation": 0.35, "Edema": 0.2, "Pneumonia": 0.15,
    "Lung Lesion": 0.1, "Lung Opacity": 0.1, "Atelectasis": 0.1, "Fracture": 0.1,
    "Pleural Other": 0.02, "Support Devices": 0.03,
}
_EDEMA_GIVEN_CARDIOMEGALY = 0.22

_IDX = {name: i for i, name in enumerate(OBSERVATIONS)}
_UNCERTAIN_STRENGTH = 0.55  # uncertain findings are drawn fainter

SIDES = ("right", "left", "bilateral")  # the patient's side: "right" is on the image's left
ZONES = ("upper", "mid", "lower")
SIZES = ("small", "moderate", "large")
DEVICES = ("endotracheal tube", "central line", "pacemaker")


INDEPENDENT_STYLES = ("opposite", "flipped")
"""How ``generate(..., independent=True)`` draws the second set of findings into the images:

* ``"opposite"`` -- in the same places as the first set's, with opposite brightness (a finding
  that brightens the lung darkens it): a local feature sees roughly the difference of the two
  sets, so both sets are read off the same local contrast;
* ``"flipped"`` -- with the same brightness, upside down (the change the set makes to the image
  is mirrored top to bottom: a second-set enlarged heart brightens the upper mediastinum, a
  lower-zone opacity lands in the upper zone): the two sets are told apart by where they are,
  so a representation that encodes one has less room left for the other.
"""


class Studies(NamedTuple):
  """Synthetic studies."""

  images: np.ndarray
  """float32 (N, H, W) in [0, 1]: frontal radiographs, bright = dense."""
  reports: list[str]
  """Cleaned reports: lower case, sentences joined by " . ", ending with " .". """
  labels: np.ndarray
  """int32 (N, 14): BLANK/POSITIVE/NEGATIVE/UNCERTAIN per observation, as the report states."""
  independent_labels: np.ndarray | None = None
  """int32 (N, 14) or None: the labels of the independent second set of findings
  (``generate(..., independent=True)``), drawn into the images, never in the report."""


@dataclasses.dataclass
class _Findings:
  """What each study shows; arrays over studies (N,) or (N, 14)."""

  labels: np.ndarray  # (N, 14) report labels
  side: np.ndarray  # (N, 14) index into SIDES (bilateral only for effusion and edema)
  zone: np.ndarray  # (N, 14) index into ZONES
  size: np.ndarray  # (N, 14) index into SIZES
  device: np.ndarray  # (N,) index into DEVICES

  def drawn(self, name: str) -> np.ndarray:
    """Indices of the studies that show `name` (positive or uncertain)."""
    return np.flatnonzero(np.isin(self.labels[:, _IDX[name]], (POSITIVE, UNCERTAIN)))

  def strength(self, name: str, idx: np.ndarray) -> np.ndarray:
    """(n, 1, 1) drawing strength of `name` in studies `idx`: 1 positive, less uncertain."""
    status = self.labels[idx, _IDX[name]]
    return np.where(status == POSITIVE, 1.0, _UNCERTAIN_STRENGTH)[:, None, None]

  def size_of(self, name: str, idx: np.ndarray) -> np.ndarray:
    """(n, 1, 1) size index (0 small, 1 moderate, 2 large) of `name` in studies `idx`."""
    return self.size[idx, _IDX[name]][:, None, None].astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Sampling what each study shows.


def _sample_findings(rng: np.random.Generator, n: int) -> _Findings:
  """Samples findings, their report status, side, zone and size for n studies."""
  labels = np.full((n, len(OBSERVATIONS)), BLANK, np.int32)
  u_present, u_uncertain, u_negated = rng.random((3, n, len(OBSERVATIONS)))
  for name, rate in PREVALENCE.items():
    j = _IDX[name]
    if name == "Edema":
      cardiomegaly = labels[:, _IDX["Cardiomegaly"]] != BLANK
      rate = np.where(cardiomegaly, _EDEMA_GIVEN_CARDIOMEGALY, rate)
    present = u_present[:, j] < rate
    uncertain = u_uncertain[:, j] < UNCERTAIN_RATE
    if name == "Support Devices":
      uncertain[:] = False
    labels[:, j] = np.where(present, np.where(uncertain, UNCERTAIN, POSITIVE), BLANK)
  _sample_pneumonia(labels, u_present[:, _IDX["Pneumonia"]])
  consolidation = np.isin(labels[:, _IDX["Consolidation"]], (POSITIVE, UNCERTAIN))
  for name, rate in NEGATION_RATE.items():
    j = _IDX[name]
    negated = (labels[:, j] == BLANK) & (u_negated[:, j] < rate)
    if name == "Pneumonia":  # never "no pneumonia" about a consolidation
      negated &= ~consolidation
    labels[:, j] = np.where(negated, NEGATIVE, labels[:, j])
  labels[:, _IDX["No Finding"]] = _no_finding(labels)

  side = rng.integers(0, 2, size=labels.shape)
  bilateral = rng.random(n) < 0.3
  side[:, _IDX["Pleural Effusion"]] = np.where(bilateral, 2, side[:, _IDX["Pleural Effusion"]])
  side[:, _IDX["Edema"]] = 2
  zone = rng.integers(0, len(ZONES), size=labels.shape)
  zone[:, _IDX["Atelectasis"]] = rng.integers(1, 3, size=n)  # mid or lower
  size = rng.integers(0, len(SIZES), size=labels.shape)
  uncertain = labels == UNCERTAIN
  size[uncertain] = 0  # uncertain findings are small
  device = rng.integers(0, len(DEVICES), size=n)
  return _Findings(labels, side, zone, size, device)


def _sample_pneumonia(labels: np.ndarray, u: np.ndarray) -> None:
  """Pneumonia is stated only about a consolidation: positive, uncertain or not at all."""
  consolidation = labels[:, _IDX["Consolidation"]]
  positive = (consolidation == POSITIVE) & (u < 0.3)
  uncertain = (consolidation != BLANK) & ~positive & (u < 0.75)
  labels[:, _IDX["Pneumonia"]] = np.where(positive, POSITIVE,
                                          np.where(uncertain, UNCERTAIN, BLANK))


def _no_finding(labels: np.ndarray) -> np.ndarray:
  """CheXpert's rule: positive iff nothing but support devices is positive or uncertain."""
  others = [j for j, name in enumerate(OBSERVATIONS)
            if name not in ("Support Devices", "No Finding")]
  finding = np.isin(labels[:, others], (POSITIVE, UNCERTAIN)).any(axis=1)
  return np.where(finding, BLANK, POSITIVE).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Drawing. Coordinates: x to the image's right (the patient's left), y down, both in [-1, 1].

_LUNG_CX = np.array([-0.38, 0.38], np.float32)  # patient's right lung, left lung
_LUNG_CY, _LUNG_RX, _LUNG_RY = -0.08, 0.29, 0.62
_ZONE_Y = np.array([-0.4, -0.05, 0.28], np.float32)
_AIR, _TISSUE, _FLUID, _BONE, _METAL = 0.1, 0.42, 0.58, 0.68, 0.95


def _sigmoid(z: np.ndarray) -> np.ndarray:
  return 0.5 + 0.5 * np.tanh(0.5 * z)


def _ellipse(x, y, cx, cy, rx, ry, edge=0.03):
  """Soft mask of an ellipse: 1 inside, 0 outside, `edge` wide transition."""
  r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
  return _sigmoid((1.0 - r) / edge)


def _segment(x, y, x0, y0, x1, y1, width):
  """Soft mask of a line segment of the given half-width."""
  dx, dy = x1 - x0, y1 - y0
  t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
  distance = np.hypot(x - x0 - t * dx, y - y0 - t * dy)
  return _sigmoid((width - distance) / (0.3 * width))


def _smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
  """(n, size, size) bilinearly interpolated Gaussian noise on a cells x cells grid."""
  grid = rng.standard_normal((n, cells + 1, cells + 1), dtype=np.float32)
  t = np.linspace(0.0, cells, size, dtype=np.float32)
  i = np.minimum(t.astype(np.int64), cells - 1)
  f = t - i
  rows = grid[:, i, :] * (1 - f)[None, :, None] + grid[:, i + 1, :] * f[None, :, None]
  return rows[:, :, i] * (1 - f) + rows[:, :, i + 1] * f


@dataclasses.dataclass
class _Canvas:
  """Images being drawn, with per-study coordinates and noise textures."""

  images: np.ndarray  # (N, H, W)
  x: np.ndarray  # (N, H, W) body coordinates (per-study shift and scale applied)
  y: np.ndarray
  fine: np.ndarray  # (N, H, W) fine noise: vessel markings
  coarse: np.ndarray  # (N, H, W) coarse noise: patchy opacities
  sign: float = 1.0  # -1: paint with opposite brightness (the independent set)

  def paint(self, idx: np.ndarray, mask: np.ndarray, value, alpha=1.0) -> None:
    """Blends `value` into studies `idx` where `mask` (n, H, W) is set.

    With ``sign = -1`` the pixels move away from `value` by the same amount instead: the same
    change of brightness, opposite in sign (how the independent set is drawn).
    """
    sub = self.images[idx]
    self.images[idx] = sub + self.sign * alpha * mask * (value - sub)

  def lung(self, idx: np.ndarray, side: np.ndarray, shrink=0.0) -> np.ndarray:
    """Mask of the lung on `side` (0 right, 1 left, 2 both) in studies `idx`."""
    x, y = self.x[idx], self.y[idx]
    scale = 1.0 - shrink
    masks = [_ellipse(x, y, _LUNG_CX[s], _LUNG_CY, _LUNG_RX * scale, _LUNG_RY * scale)
             for s in (0, 1)]
    side = np.asarray(side)[:, None, None]
    return masks[0] * (side != 1) + masks[1] * (side != 0)

  def spot(self, idx: np.ndarray, side: np.ndarray, zone: np.ndarray,
           rng: np.random.Generator, spread=0.08):
    """(cx, cy) of (n, 1, 1) near a lung zone, jittered."""
    cx = _LUNG_CX[side] + rng.uniform(-spread, spread, len(idx)).astype(np.float32)
    cy = _ZONE_Y[zone] + rng.uniform(-spread, spread, len(idx)).astype(np.float32)
    return cx[:, None, None], cy[:, None, None]


def _new_canvas(rng: np.random.Generator, n: int, size: int) -> _Canvas:
  """Empty canvas with per-study position/scale jitter and noise textures."""
  grid = np.linspace(-1.0, 1.0, size, dtype=np.float32)
  shift = rng.uniform(-0.04, 0.04, (2, n, 1, 1)).astype(np.float32)
  scale = rng.uniform(0.94, 1.06, (n, 1, 1)).astype(np.float32)
  x = (grid[None, None, :] - shift[0]) / scale
  y = (grid[None, :, None] - shift[1]) / scale
  x, y = np.broadcast_arrays(x, y)
  images = np.full((n, size, size), 0.04, np.float32)
  fine = _smooth_noise(rng, n, size, max(4, size // 4))
  coarse = _smooth_noise(rng, n, size, 4)
  return _Canvas(images, np.array(x), np.array(y), fine, coarse)


def _draw_anatomy(canvas: _Canvas, rng: np.random.Generator) -> None:
  """Body, lungs (vessel markings, ribs), mediastinum and spine, trachea."""
  everyone = np.arange(len(canvas.images))
  x, y = canvas.x, canvas.y
  canvas.paint(everyone, _ellipse(x, y, 0.0, 0.05, 0.92, 1.15, edge=0.05), _TISSUE)
  lungs = canvas.lung(everyone, np.full(len(everyone), 2))
  hilum_distance = np.minimum(np.hypot(x + 0.2, y), np.hypot(x - 0.2, y))
  markings = 0.07 * np.clip(canvas.fine, -1, 2) * np.exp(-hilum_distance)
  ribs = _sigmoid((np.sin(2 * np.pi * (4.5 * y + 1.6 * x * x)) - 0.55) / 0.08)
  canvas.paint(everyone, lungs, _AIR + markings + 0.07 * ribs)
  width = rng.uniform(0.11, 0.14, (len(everyone), 1, 1)).astype(np.float32)
  mediastinum = _sigmoid((width - np.abs(x)) / 0.02) * _sigmoid((0.95 - y) / 0.03)
  canvas.paint(everyone, mediastinum, _BONE - 0.05)
  trachea = _sigmoid((0.035 - np.abs(x)) / 0.01) * _sigmoid((-0.35 - y) / 0.03)
  canvas.paint(everyone, trachea, 0.3)


def _draw_pneumothorax(canvas: _Canvas, f: _Findings, rng: np.random.Generator) -> None:
  """Apical/lateral air without lung markings, bounded by a thin pleural line."""
  idx = f.drawn("Pneumothorax")
  side = f.side[idx, _IDX["Pneumothorax"]]
  gap = (0.18 + 0.08 * f.size_of("Pneumothorax", idx)) * f.strength("Pneumothorax", idx)
  gap = gap * rng.uniform(0.9, 1.1, (len(idx), 1, 1))
  x, y = canvas.x[idx], canvas.y[idx]
  cx = _LUNG_CX[side][:, None, None] * (1 - gap)  # the lung collapses medially ...
  cy = _LUNG_CY + gap * _LUNG_RY  # ... and downwards
  rx, ry = _LUNG_RX * (1 - gap), _LUNG_RY * (1 - gap)
  collapsed = _ellipse(x, y, cx, cy, rx, ry)
  canvas.paint(idx, canvas.lung(idx, side) * (1 - collapsed), 0.03)
  radius = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
  line = np.exp(-(((radius - 1.0) / 0.05) ** 2)) * canvas.lung(idx, side)
  canvas.paint(idx, line, 0.45)


def _draw_edema(canvas: _Canvas, f: _Findings) -> None:
  """Bilateral perihilar haze with thickened markings."""
  idx = f.drawn("Edema")
  x, y = canvas.x[idx], canvas.y[idx]
  haze = np.exp(-((np.abs(x) - 0.25) ** 2 + y ** 2) / 0.12)
  grade = 0.35 + 0.15 * f.size_of("Edema", idx)
  mask = haze * canvas.lung(idx, np.full(len(idx), 2)) * (0.8 + 0.2 * canvas.fine[idx])
  canvas.paint(idx, np.clip(mask, 0, 1), _FLUID, grade * f.strength("Edema", idx))


def _draw_patch(canvas: _Canvas, f: _Findings, rng: np.random.Generator, name: str,
                radius: tuple[float, float], value: float, patchiness: float) -> None:
  """A rounded opacity in a lung zone; patchiness mixes in coarse noise."""
  idx = f.drawn(name)
  side, zone = f.side[idx, _IDX[name]], f.zone[idx, _IDX[name]]
  cx, cy = canvas.spot(idx, side, zone, rng)
  r = rng.uniform(*radius, (len(idx), 1, 1)).astype(np.float32)
  x, y = canvas.x[idx], canvas.y[idx]
  blob = _ellipse(x, y, cx, cy, r, r * 1.2, edge=0.25)
  texture = 1 - patchiness + patchiness * _sigmoid(2 * canvas.coarse[idx])
  mask = blob * texture * canvas.lung(idx, side)
  canvas.paint(idx, mask, value, f.strength(name, idx))


def _draw_atelectasis(canvas: _Canvas, f: _Findings, rng: np.random.Generator) -> None:
  """Plate-like (linear) opacity, slightly oblique, in a mid or lower zone."""
  idx = f.drawn("Atelectasis")
  side, zone = f.side[idx, _IDX["Atelectasis"]], f.zone[idx, _IDX["Atelectasis"]]
  cx, cy = canvas.spot(idx, side, zone, rng, spread=0.04)
  tilt = rng.uniform(-0.12, 0.12, (len(idx), 1, 1)).astype(np.float32)
  plate = _segment(canvas.x[idx], canvas.y[idx], cx - 0.2, cy - tilt, cx + 0.2, cy + tilt,
                   0.035)
  canvas.paint(idx, plate * canvas.lung(idx, side), _FLUID + 0.05,
               f.strength("Atelectasis", idx))


def _draw_nodule(canvas: _Canvas, f: _Findings, rng: np.random.Generator) -> None:
  """A small, well-defined round density."""
  idx = f.drawn("Lung Lesion")
  side, zone = f.side[idx, _IDX["Lung Lesion"]], f.zone[idx, _IDX["Lung Lesion"]]
  cx, cy = canvas.spot(idx, side, zone, rng)
  r = rng.uniform(0.05, 0.07, (len(idx), 1, 1)).astype(np.float32)
  disc = _ellipse(canvas.x[idx], canvas.y[idx], cx, cy, r, r, edge=0.15)
  canvas.paint(idx, disc, _BONE + 0.1, f.strength("Lung Lesion", idx))


def _draw_effusion(canvas: _Canvas, f: _Findings, rng: np.random.Generator) -> None:
  """Basal fluid with a meniscus rising laterally, blunting the costophrenic angle."""
  idx = f.drawn("Pleural Effusion")
  side = f.side[idx, _IDX["Pleural Effusion"]]
  depth = (0.14 + 0.1 * f.size_of("Pleural Effusion", idx)) * f.strength(
      "Pleural Effusion", idx)
  depth = depth * rng.uniform(0.9, 1.1, (len(idx), 1, 1))
  x, y = canvas.x[idx], canvas.y[idx]
  lateral = np.clip((np.abs(x) - np.abs(_LUNG_CX[0])) / _LUNG_RX, 0.0, 1.0)
  level = _LUNG_CY + _LUNG_RY - depth * (1.0 + 0.8 * lateral)
  fluid = _sigmoid((y - level) / 0.025) * canvas.lung(idx, side)
  canvas.paint(idx, fluid, _FLUID)


def _draw_heart(canvas: _Canvas, f: _Findings, rng: np.random.Generator, *,
                anatomy: bool = True) -> None:
  """Heart silhouette (larger with cardiomegaly); wide upper mediastinum if enlarged.

  ``anatomy=False`` (the independent set) paints only what cardiomegaly adds to a normal heart.
  """
  n = len(canvas.images)
  everyone = np.arange(n)
  enlarged = np.zeros((n, 1, 1), np.float32)
  idx = f.drawn("Cardiomegaly")
  enlarged[idx] = f.strength("Cardiomegaly", idx) * (0.8 + 0.2 * f.size_of("Cardiomegaly", idx))
  normal = rng.uniform(0.93, 1.05, (n, 1, 1)).astype(np.float32)
  rx, ry = 0.26 * normal + 0.13 * enlarged, 0.22 * normal + 0.05 * enlarged
  heart = _ellipse(canvas.x, canvas.y, 0.1 + 0.05 * enlarged, 0.3, rx, ry, edge=0.04)
  if anatomy:
    canvas.paint(everyone, heart, _BONE - 0.08)
  else:
    base = _ellipse(canvas.x[idx], canvas.y[idx], 0.1, 0.3, 0.26 * normal[idx],
                    0.22 * normal[idx], edge=0.04)
    canvas.paint(idx, np.clip(heart[idx] - base, 0.0, 1.0), _BONE - 0.08)

  idx = f.drawn("Enlarged Cardiomediastinum")
  x, y = canvas.x[idx], canvas.y[idx]
  width = 0.13 + 0.1 * f.strength("Enlarged Cardiomediastinum", idx)
  upper = _sigmoid((width - np.abs(x)) / 0.02) * _sigmoid((0.05 - y) / 0.05)
  canvas.paint(idx, upper * _sigmoid((y + 0.75) / 0.05), _BONE - 0.05)


def _draw_pleural_thickening(canvas: _Canvas, f: _Findings) -> None:
  """A band along the lateral border of one lung."""
  idx = f.drawn("Pleural Other")
  side = f.side[idx, _IDX["Pleural Other"]]
  inner = canvas.lung(idx, side, shrink=0.12)
  lateral = _sigmoid((np.abs(canvas.x[idx]) - 0.45) / 0.03)
  band = canvas.lung(idx, side) * (1 - inner) * lateral
  canvas.paint(idx, band, _FLUID, f.strength("Pleural Other", idx))


def _draw_fracture(canvas: _Canvas, f: _Findings, rng: np.random.Generator) -> None:
  """A displaced rib fragment with callus at the lateral chest wall."""
  idx = f.drawn("Fracture")
  sign = np.where(f.side[idx, _IDX["Fracture"]] == 0, -1.0, 1.0)[:, None, None]
  y0 = rng.uniform(-0.45, 0.1, (len(idx), 1, 1)).astype(np.float32)
  x, y = canvas.x[idx], canvas.y[idx]
  fragment = np.maximum(
      _segment(x, y, sign * 0.72, y0, sign * 0.6, y0 + 0.03, 0.025),
      _segment(x, y, sign * 0.6, y0 + 0.07, sign * 0.48, y0 + 0.1, 0.025))
  canvas.paint(idx, fragment, _METAL - 0.1, f.strength("Fracture", idx))


def _draw_devices(canvas: _Canvas, f: _Findings) -> None:
  """Endotracheal tube, right jugular central line, or left chest pacemaker with its lead."""
  idx = f.drawn("Support Devices")
  kind = f.device[idx][:, None, None]
  x, y = canvas.x[idx], canvas.y[idx]
  tube = _segment(x, y, 0.0, -1.0, 0.0, -0.4, 0.018)
  line = np.maximum(_segment(x, y, -0.75, -0.8, -0.15, -0.45, 0.015),
                    _segment(x, y, -0.15, -0.45, -0.08, -0.1, 0.015))
  generator = _ellipse(x, y, 0.6, -0.72, 0.1, 0.06, edge=0.05)
  lead = np.maximum(_segment(x, y, 0.55, -0.7, 0.05, -0.2, 0.012),
                    _segment(x, y, 0.05, -0.2, 0.12, 0.35, 0.012))
  pacemaker = np.maximum(generator, lead)
  mask = np.where(kind == 0, tube, np.where(kind == 1, line, pacemaker))
  canvas.paint(idx, mask, _METAL)


def _expose(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
  """Per-study contrast, brightness and sensor noise; clipped to [0, 1]."""
  n = len(canvas.images)
  contrast = rng.uniform(0.9, 1.1, (n, 1, 1)).astype(np.float32)
  brightness = rng.uniform(-0.04, 0.04, (n, 1, 1)).astype(np.float32)
  sigma = rng.uniform(0.01, 0.025, (n, 1, 1)).astype(np.float32)
  noise = sigma * rng.standard_normal(canvas.images.shape, dtype=np.float32)
  images = contrast * (canvas.images - 0.5) + 0.5 + brightness + noise
  return np.clip(images, 0.0, 1.0).astype(np.float32)


def _render(f: _Findings, rng: np.random.Generator, size: int,
            independent: tuple[_Findings, np.random.Generator] | None = None,
            style: str = "opposite") -> np.ndarray:
  """Draws all studies: anatomy, then findings from back to front.

  ``independent``: a second set of findings and its generator, drawn by the same code after
  the first set and before the exposure, as ``style`` says (see :data:`INDEPENDENT_STYLES`).
  """
  canvas = _new_canvas(rng, len(f.labels), size)
  _draw_anatomy(canvas, rng)
  _draw_findings(canvas, f, rng)
  if independent is not None and style == "opposite":
    canvas.sign = -1.0
    _draw_findings(canvas, *independent, anatomy=False)
    canvas.sign = 1.0
  elif independent is not None:
    before = canvas.images.copy()
    _draw_findings(canvas, *independent, anatomy=False)
    change = canvas.images - before
    canvas.images = before + np.flip(change, axis=1)  # upside down: in other places
  return _expose(canvas, rng)


def _draw_findings(canvas: _Canvas, f: _Findings, rng: np.random.Generator, *,
                   anatomy: bool = True) -> None:
  """Every finding of `f`, from back to front (the heart: see `_draw_heart`)."""
  _draw_pneumothorax(canvas, f, rng)
  _draw_edema(canvas, f)
  _draw_patch(canvas, f, rng, "Lung Opacity", (0.18, 0.26), _TISSUE + 0.05, 0.6)
  _draw_patch(canvas, f, rng, "Consolidation", (0.12, 0.18), _FLUID + 0.04, 0.3)
  _draw_atelectasis(canvas, f, rng)
  _draw_nodule(canvas, f, rng)
  _draw_effusion(canvas, f, rng)
  _draw_heart(canvas, f, rng, anatomy=anatomy)
  _draw_pleural_thickening(canvas, f)
  _draw_fracture(canvas, f, rng)
  _draw_devices(canvas, f)


# ---------------------------------------------------------------------------------------------
# Writing the report. Templates are written in cleaned form (lower case, no punctuation).

_TEMPLATES: dict[str, dict[int, tuple[str, ...]]] = {
    "Enlarged Cardiomediastinum": {
        POSITIVE: ("the mediastinum is widened", "the cardiomediastinal silhouette is enlarged",
                   "there is widening of the mediastinum", "widened mediastinum"),
        UNCERTAIN: ("the mediastinum may be widened", "possible widening of the mediastinum",
                    "the mediastinal contour is borderline"),
        NEGATIVE: ("the mediastinal contours are normal",
                   "the cardiomediastinal silhouette is within normal limits",
                   "the mediastinum is not widened", "normal mediastinal contours"),
    },
    "Cardiomegaly": {
        POSITIVE: ("the heart is enlarged", "there is {grade} cardiomegaly",
                   "the cardiac silhouette is enlarged", "heart size is enlarged",
                   "{grade} cardiomegaly is present"),
        UNCERTAIN: ("borderline cardiomegaly", "the heart size is borderline",
                    "possible mild cardiomegaly", "the cardiac silhouette may be mildly enlarged"),
        NEGATIVE: ("the heart size is normal", "heart size is within normal limits",
                   "no cardiomegaly", "the cardiac silhouette is normal in size",
                   "normal heart size", "the heart is not enlarged"),
    },
    "Lung Opacity": {
        POSITIVE: ("there is a hazy opacity in {where}", "ill defined opacity in {where}",
                   "patchy airspace opacity is seen in {where}"),
        UNCERTAIN: ("possible faint opacity in {where}", "questionable opacity in {where}",
                    "a subtle opacity in {where} may be present"),
        NEGATIVE: ("no focal airspace opacity", "there is no focal opacity"),
    },
    "Lung Lesion": {
        POSITIVE: ("there is a {mm} mm nodule in {where}", "a small nodule is seen in {where}",
                   "a well circumscribed nodule projects over {where}"),
        UNCERTAIN: ("possible small nodule in {where}",
                    "a small nodule in {where} cannot be excluded",
                    "questionable nodular opacity in {where}"),
        NEGATIVE: ("no pulmonary nodules", "no focal mass or nodule",
                   "no suspicious pulmonary nodule"),
    },
    "Edema": {
        POSITIVE: ("there is {grade} pulmonary edema",
                   "findings are consistent with {grade} pulmonary edema",
                   "interstitial edema with vascular congestion",
                   "{grade} interstitial pulmonary edema is present"),
        UNCERTAIN: ("possible mild pulmonary edema", "mild vascular congestion may be present",
                    "questionable mild interstitial edema"),
        NEGATIVE: ("no pulmonary edema", "no evidence of pulmonary edema",
                   "there is no vascular congestion or edema"),
    },
    "Consolidation": {
        POSITIVE: ("there is consolidation in {where}", "focal consolidation in {where}",
                   "airspace consolidation is present in {where}"),
        UNCERTAIN: ("possible consolidation in {where}",
                    "consolidation in {where} cannot be excluded",
                    "questionable consolidation in {where}"),
        NEGATIVE: ("no focal consolidation", "there is no consolidation",
                   "no focal airspace consolidation"),
    },
    "Pneumonia": {
        POSITIVE: ("findings are consistent with pneumonia", "compatible with pneumonia"),
        UNCERTAIN: ("findings are concerning for pneumonia", "this may represent pneumonia",
                    "pneumonia is not excluded", "suspicious for pneumonia"),
        NEGATIVE: ("no evidence of pneumonia", "no radiographic evidence of pneumonia"),
    },
    "Atelectasis": {
        POSITIVE: ("there is atelectasis in {where}", "linear atelectasis in {where}",
                   "subsegmental atelectasis at {where}"),
        UNCERTAIN: ("possible atelectasis in {where}", "atelectasis in {where} is likely",
                    "minimal atelectasis in {where} is suspected"),
        NEGATIVE: ("no atelectasis", "no focal atelectasis"),
    },
    "Pneumothorax": {
        POSITIVE: ("there is a {size} {side} pneumothorax", "{size} {side} apical pneumothorax",
                   "a {size} {side} pneumothorax is present"),
        UNCERTAIN: ("possible small {side} apical pneumothorax",
                    "a tiny {side} pneumothorax cannot be excluded",
                    "questionable {side} apical pneumothorax"),
        NEGATIVE: ("no pneumothorax", "there is no pneumothorax", "no evidence of pneumothorax"),
    },
    "Pleural Effusion": {
        POSITIVE: ("there is a {size} {side} pleural effusion", "{size} {side} pleural effusion",
                   "a {size} {side} effusion blunts the costophrenic angle"),
        UNCERTAIN: ("possible small {side} pleural effusion",
                    "a trace {side} pleural effusion cannot be excluded",
                    "blunting of the {side} costophrenic angle may reflect a small effusion"),
        NEGATIVE: ("no pleural effusion", "there is no pleural effusion", "no effusion"),
    },
    "Pleural Other": {
        POSITIVE: ("there is {side} pleural thickening",
                   "pleural thickening along the {side} chest wall"),
        UNCERTAIN: ("possible {side} pleural thickening",),
        NEGATIVE: ("no pleural thickening",),
    },
    "Fracture": {
        POSITIVE: ("there is a fracture of a {side} rib", "{side} rib fracture",
                   "a displaced {side} rib fracture is seen"),
        UNCERTAIN: ("possible {side} rib fracture", "questionable fracture of a {side} rib"),
        NEGATIVE: ("no acute fracture", "no displaced rib fracture"),
    },
    "Support Devices": {
        NEGATIVE: ("no tubes or catheters",),
    },
}
_BILATERAL_EFFUSION = {
    POSITIVE: ("there are {size} bilateral pleural effusions", "{size} bilateral effusions"),
    UNCERTAIN: ("possible small bilateral pleural effusions",),
}
_DEVICE_SENTENCES = (
    ("an endotracheal tube is in place", "the endotracheal tube terminates above the carina"),
    ("a right internal jugular central line terminates in the svc",
     "a right jugular catheter tip projects over the svc"),
    ("a left chest wall pacemaker is present",
     "a left sided pacemaker is seen with its lead in the right ventricle"),
)
# Negations of two observations in one sentence.
_HEART_AND_MEDIASTINUM_NORMAL = (
    "the heart size and mediastinal contours are normal",
    "normal heart size and mediastinal contours",
)
_NO_EFFUSION_OR_PNEUMOTHORAX = (
    "no pleural effusion or pneumothorax", "there is no pneumothorax or pleural effusion",
)
# Sentences without any mention, for studies without the corresponding findings.
_LUNGS_CLEAR = ("the lungs are clear", "lungs are clear bilaterally",
                "the lungs are well expanded and clear")
_BONES_INTACT = ("the osseous structures are intact", "no acute bony abnormality",
                 "the visualized bony structures are unremarkable")
_IMPRESSION_NORMAL = ("no acute cardiopulmonary abnormality", "no acute cardiopulmonary process")

_GRADES = ("mild", "moderate", "marked")
_WHERE = {  # (zone) -> phrase with the side
    0: "the {side} upper lung zone", 1: "the {side} mid lung zone", 2: "the {side} lung base",
}
_LUNG_FINDINGS = ("Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Atelectasis")
# Report sections, in reading order.
_SECTIONS = (
    ("Cardiomegaly", "Enlarged Cardiomediastinum"),
    ("Consolidation", "Pneumonia", "Lung Opacity", "Edema", "Atelectasis", "Lung Lesion"),
    ("Pleural Effusion", "Pneumothorax", "Pleural Other"),
    ("Support Devices",),
    ("Fracture",),
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
  return options[int(rng.integers(len(options)))]


class _Sentence(NamedTuple):
  """A report sentence: its text, its kind and the observations that it negates."""

  text: str
  kind: str  # "finding" (positive or uncertain), "negation" or "filler" (no mention)
  negates: tuple[str, ...] = ()


def _sentence(f: _Findings, i: int, name: str, rng: np.random.Generator) -> _Sentence | None:
  """The sentence stating observation `name` of study i, or None if not mentioned."""
  j = _IDX[name]
  status = int(f.labels[i, j])
  if status == BLANK:
    return None
  if status == NEGATIVE:
    return _Sentence(_pick(rng, _TEMPLATES[name][NEGATIVE]), "negation", (name,))
  if name == "Support Devices":
    return _Sentence(_pick(rng, _DEVICE_SENTENCES[int(f.device[i])]), "finding")
  side = SIDES[int(f.side[i, j])]
  templates = _TEMPLATES[name][status]
  if side == "bilateral" and name == "Pleural Effusion":
    templates = _BILATERAL_EFFUSION[status]
  text = _pick(rng, templates).format(
      side=side,
      size=SIZES[int(f.size[i, j])],
      grade=_GRADES[int(f.size[i, j])],
      where=_WHERE[int(f.zone[i, j])].format(side=side),
      mm=4 + 2 * int(f.size[i, j]) + int(rng.integers(2)),
  )
  return _Sentence(text, "finding")


def _joint_negation(f: _Findings, i: int, names: tuple[str, str],
                    options: tuple[str, ...], rng: np.random.Generator) -> _Sentence | None:
  """One sentence negating both observations, half of the time when both are negative."""
  both_negative = all(f.labels[i, _IDX[name]] == NEGATIVE for name in names)
  if both_negative and rng.random() < 0.5:
    return _Sentence(_pick(rng, options), "negation", names)
  return None


def _section(f: _Findings, i: int, names: tuple[str, ...],
             rng: np.random.Generator) -> list[_Sentence]:
  """Sentences of one report section."""
  joint = None
  if names[0] == "Cardiomegaly":
    joint = _joint_negation(f, i, names, _HEART_AND_MEDIASTINUM_NORMAL, rng)
  elif names[0] == "Pleural Effusion":
    joint = _joint_negation(f, i, names[:2], _NO_EFFUSION_OR_PNEUMOTHORAX, rng)
  sentences = [joint] if joint else []
  for name in names[2 if joint else 0:]:
    sentence = _sentence(f, i, name, rng)
    if sentence:
      sentences.append(sentence)
  return sentences


def _draft_report(f: _Findings, i: int, rng: np.random.Generator) -> list[_Sentence]:
  """All sentences of study i's report, in reading order."""
  drawn = {name for name in OBSERVATIONS
           if f.labels[i, _IDX[name]] in (POSITIVE, UNCERTAIN)}
  sentences = []
  for names in _SECTIONS:
    sentences += _section(f, i, names, rng)
    if names[0] == "Consolidation" and not drawn & set(_LUNG_FINDINGS):
      sentences.append(_Sentence(_pick(rng, _LUNGS_CLEAR), "filler"))
    if names == ("Fracture",) and "Fracture" not in drawn and rng.random() < 0.3:
      sentences.append(_Sentence(_pick(rng, _BONES_INTACT), "filler"))
  if f.labels[i, _IDX["No Finding"]] == POSITIVE:
    sentences.append(_Sentence(_pick(rng, _IMPRESSION_NORMAL), "filler"))
  return sentences


def _n_words(sentences: list[_Sentence]) -> int:
  """Words of the joined report, " ." separators included."""
  return sum(len(s.text.split()) + 1 for s in sentences)


def _shorten(sentences: list[_Sentence], max_words: int) -> list[_Sentence]:
  """Drops fillers, then negations, last first, until the report has at most max_words."""
  sentences = list(sentences)
  for kind in ("filler", "negation"):
    for k in reversed(range(len(sentences))):
      if _n_words(sentences) <= max_words:
        return sentences
      if sentences[k].kind == kind:
        del sentences[k]
  return sentences


def _write_report(f: _Findings, i: int, rng: np.random.Generator,
                  max_words: int | None) -> str:
  """The cleaned report of study i; negations dropped to fit become BLANK in f.labels."""
  draft = _draft_report(f, i, rng)
  kept = draft if max_words is None else _shorten(draft, max_words)
  for sentence in draft:
    if sentence not in kept:
      f.labels[i, [_IDX[name] for name in sentence.negates]] = BLANK
  return " . ".join(s.text for s in kept) + " ."


def generate(num: int, *, image_size: int = 64, seed: int | np.random.Generator = 0,
             max_words: int | None = None, independent: bool = False,
             independent_style: str = "opposite") -> Studies:
  """Generates `num` synthetic studies.

  Args:
    num: number of studies.
    image_size: height and width of the images, in pixels.
    seed: an integer seed or a NumPy generator; the same seed gives the same studies.
    max_words: if given, sentences without a finding (normal-study sentences, then
      negations) are left out of reports longer than this many words (" ." included), and
      the observations they negated become BLANK. Findings are always reported.
    independent: also draw a second set of findings, sampled independently of the first (same
      prevalences, sides, zones and sizes, from a child generator of `seed`, so the first set,
      the reports and the labels are those of ``independent=False``), into the same images by
      the same drawing code as ``independent_style`` says; the report never mentions it. Its labels
      are `Studies.independent_labels` (negations sampled as for a report that is never
      written: they are not in the image, as the first set's are not).
    independent_style: how the second set is drawn, one of :data:`INDEPENDENT_STYLES`:
      ``"opposite"`` (same places, opposite brightness) or ``"flipped"`` (same brightness,
      upside down).

  Returns:
    `Studies` with images (num, image_size, image_size), reports and labels.
  """
  if num < 0:
    raise ValueError(f"num must be >= 0, got {num}")
  if image_size < 8:
    raise ValueError(f"image_size must be >= 8, got {image_size}")
  if independent_style not in INDEPENDENT_STYLES:
    raise ValueError(f"independent_style must be one of {INDEPENDENT_STYLES}, got "
                     f"{independent_style!r}")
  rng = np.random.default_rng(seed)
  second = None
  if independent:
    child = rng.spawn(1)[0]  # does not advance rng
    second = (_sample_findings(child, num), child)
  findings = _sample_findings(rng, num)
  images = _render(findings, rng, image_size, second, independent_style)
  reports = [_write_report(findings, i, rng, max_words) for i in range(num)]
  return Studies(images, reports, findings.labels.copy(),
                 None if second is None else second[0].labels.copy())
