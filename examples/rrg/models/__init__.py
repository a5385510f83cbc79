"""Multi-task radiology report generation models (Flax NNX): one registry of backbones.

Every backbone shares the image encoder (``ModelConfig.encoder``: ``"cnn"`` or ``"resnet"``),
the token embedding and the classification and alignment heads (:mod:`.base`); they differ in
the report decoder:

* ``encoder_decoder`` -- a causal transformer decoder cross-attending to the image tokens;
* ``r2gen``           -- R2Gen (Chen et al., EMNLP 2020): relational memory and memory-driven
  conditional layer norm (:mod:`.relational_memory`);
* ``promptmrg``       -- PromptMRG (Jin et al., AAAI 2024): the classifier's predicted observation
  states become prompt tokens ahead of the report (:mod:`.promptmrg`).

Images arrive as ``(B, V, H, W, 1)``: ``V`` views of one study (1 for MIMIC-CXR and the
synthetic data, 2 for IU X-Ray). The task losses are in ``examples.rrg.training.tasks``, decoding in
``examples.rrg.models.decode``; this package only maps inputs to outputs.

Example:
  >>> from flax import nnx
  >>> cfg = ModelConfig(vocab_size=16, max_len=8, image_size=16, channels=(4, 8), d_model=16,
  ...                   num_heads=2, num_layers=1, mlp_dim=32, embed_dim=8)
  >>> model = build_model(cfg, "promptmrg", rngs=nnx.Rngs(0))
  >>> type(model).__name__, count_params(model) > 0
  ('PromptMRG', True)
"""

from __future__ import annotations

import jax
from flax import nnx

from examples.rrg.models.base import ReportModel
from examples.rrg.models.config import ModelConfig
from examples.rrg.models.encdec import EncoderDecoder
from examples.rrg.models.encoders import ENCODERS
from examples.rrg.models.pretrained import load_params, save_params
from examples.rrg.models.promptmrg import PromptMRG
from examples.rrg.models.relational_memory import R2Gen

BACKBONES: dict[str, type[ReportModel]] = {
    "encoder_decoder": EncoderDecoder,
    "r2gen": R2Gen,
    "promptmrg": PromptMRG,
}
"""Backbone name (``--backbone``) -> model class."""

ReportGenerator = EncoderDecoder  # the model's name before there were several backbones


def build_model(model_config: ModelConfig, backbone: str = "encoder_decoder", *,
                rngs: nnx.Rngs) -> ReportModel:
  """A freshly initialised ``backbone`` model; its encoder is loaded from
  ``model_config.encoder_checkpoint`` when that is set (see :mod:`.pretrained`).

  Raises:
    ValueError: ``backbone`` or ``model_config.encoder`` is not a known name, or the encoder
      checkpoint does not fit the encoder (the message names the file and the parameter).
  """
  if backbone not in BACKBONES:
    raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
  model = BACKBONES[backbone](model_config, rngs=rngs)
  if model_config.encoder_checkpoint:
    load_params(model.encoder, model_config.encoder_checkpoint)
  return model


def count_params(model: nnx.Module) -> int:
  """Number of scalars in the model's ``nnx.Param`` variables."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


__all__ = ["BACKBONES", "ENCODERS", "EncoderDecoder", "ModelConfig", "PromptMRG", "R2Gen",
           "ReportGenerator", "ReportModel", "build_model", "count_params", "load_params",
           "save_params"]
