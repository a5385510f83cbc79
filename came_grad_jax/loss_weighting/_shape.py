"""K from a loss vector, for the loss weightings whose state does not hold it."""

from __future__ import annotations

import jax.numpy as jnp


def _num_losses(losses) -> int:
  """K of a (K,) loss vector (static).

  Raises:
    ValueError: naming ``losses`` when it is not a non-empty vector.
  """
  shape = jnp.shape(losses)
  if len(shape) != 1 or shape[0] == 0:
    raise ValueError(f"losses must have shape (K,) with K >= 1, got {shape}")
  return shape[0]
