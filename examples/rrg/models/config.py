"""Sizes and choices of the RRG models: one frozen dataclass shared by every backbone."""

from __future__ import annotations

import dataclasses

BOTTLENECK_KINDS = ("token", "global")
"""Values of ``ModelConfig.bottleneck_kind``."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Sizes of the RRG models: about 0.61M parameters by default (``encoder_decoder``, ``cnn``,
  300 words), 0.70M with ``resnet``, 0.97M for ``r2gen``, 0.62M for ``promptmrg``.

  ``encoder`` names the image encoder (``"cnn"`` or ``"resnet"``, see
  :data:`examples.rrg.models.encoders.ENCODERS`); ``encoder_checkpoint`` is an optional local
  ``.npz`` file or Orbax directory holding the encoder's parameters, loaded by
  :func:`examples.rrg.models.build_model` (nothing is downloaded). The ``rm_*`` fields size the
  relational memory of the ``r2gen`` backbone, ``visual_layers`` its transformer encoder over
  the image tokens.
  """

  vocab_size: int = 256
  max_len: int = 48  # longest token sequence, BOS and EOS included
  image_size: int = 64
  num_views: int = 1
  channels: tuple[int, ...] = (16, 32, 64, 64)  # encoder widths, each stage halves H and W
  d_model: int = 128
  num_heads: int = 4
  num_layers: int = 2
  mlp_dim: int = 256
  embed_dim: int = 64  # joint image-text space of the alignment task
  num_observations: int = 14
  num_classes: int = 4  # blank, positive, negative, uncertain
  encoder: str = "cnn"
  encoder_checkpoint: str | None = None
  resnet_blocks: int = 1  # residual blocks per stage of the "resnet" encoder
  # > 0: every image token passes through a shared representation of this width, unit-norm
  # (``ImageEncoder``), which every task reads: the conflict study's ``bottleneck`` knob.
  bottleneck: int = 0
  # Where the bottleneck sits (``ImageEncoder``): "token" narrows every image token on its own;
  # "global" narrows the whole feature map of a view (flattened) to ONE vector of width
  # ``bottleneck``, expanded back to ``bottleneck_tokens`` memory tokens: the decoder and the
  # classifier then see the image only through that vector, so the tasks compete for it.
  bottleneck_kind: str = "token"
  bottleneck_tokens: int = 4
  visual_layers: int = 1  # r2gen: transformer encoder layers over the image tokens
  rm_num_slots: int = 3  # r2gen: relational memory slots (R2Gen's default)
  rm_dim: int = 64  # r2gen: width of a memory slot
  rm_num_heads: int = 2  # r2gen: heads of the memory's attention

  @property
  def grid_size(self) -> int:
    """Side of the feature map the encoder leaves: ``image_size / 2**len(channels)``."""
    return self.image_size // 2 ** len(self.channels)

  def __post_init__(self):
    if not self.channels:
      raise ValueError("channels must name at least one encoder stage")
    if self.image_size % 2 ** len(self.channels):
      raise ValueError(
          f"image_size={self.image_size} must be divisible by 2**len(channels)="
          f"{2 ** len(self.channels)}")
    if self.d_model % self.num_heads:
      raise ValueError(
          f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}")
    if self.rm_dim % self.rm_num_heads:
      raise ValueError(
          f"rm_dim={self.rm_dim} must be divisible by rm_num_heads={self.rm_num_heads}")
    if self.vocab_size < 4:
      raise ValueError(f"vocab_size must be >= 4 (pad, bos, eos, unk), got {self.vocab_size}")
    for name in ("resnet_blocks", "rm_num_slots"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.bottleneck < 0:
      raise ValueError(f"bottleneck must be >= 0, got {self.bottleneck}")
    if self.bottleneck_kind not in BOTTLENECK_KINDS:
      raise ValueError(f"bottleneck_kind must be one of {BOTTLENECK_KINDS}, got "
                       f"{self.bottleneck_kind!r}")
    if self.bottleneck_kind == "global" and not self.bottleneck:
      raise ValueError("bottleneck_kind='global' needs a bottleneck width > 0 (bottleneck)")
    if self.bottleneck_tokens < 1:
      raise ValueError(f"bottleneck_tokens must be >= 1, got {self.bottleneck_tokens}")
    if self.visual_layers < 0:
      raise ValueError(f"visual_layers must be >= 0, got {self.visual_layers}")
