"""PRNG keys for the randomized methods: ``key: jax.Array | int``, as Optax takes them."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def as_key(key: jax.Array | int, name: str = "key") -> jax.Array:
  """A typed PRNG key (``jax.random.key``) from an int seed or a key.

  Accepts a non-negative int (or NumPy integer), a typed key array of shape
  ``()``, or legacy raw key data (``uint32[2]``, from ``jax.random.PRNGKey``).
  Checked at construction, so a bad key fails where it is passed.

  Raises:
    TypeError: naming ``name`` when ``key`` is neither.

  Example:
    >>> as_key(0).dtype
    key<fry>
  """
  if isinstance(key, (bool, np.bool_)):
    raise TypeError(f"{name} must be an int seed or a jax.random.key, got {key!r}")
  if isinstance(key, numbers.Integral):
    if int(key) < 0:
      raise ValueError(f"{name} must be a non-negative int seed, got {key!r}")
    return jax.random.key(int(key))
  if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.shape != ():
      raise ValueError(f"{name} must be a single key (shape ()), got shape {key.shape}")
    return key
  if isinstance(key, (jax.Array, np.ndarray)) and key.shape == (2,) and key.dtype == np.uint32:
    return jax.random.wrap_key_data(jnp.asarray(key))
  raise TypeError(f"{name} must be an int seed or a jax.random.key, got {key!r}")


def fresh_key(key: jax.Array) -> jax.Array:
  """A copy of ``key`` in a buffer of its own, for an ``init`` to hand out.

  An initial state may be donated (``jax.jit(..., donate_argnums=...)``), which
  deletes its buffers; a key built once at construction and returned by every
  ``init`` would then be deleted for every later state. Each ``init`` returns
  a fresh copy instead (the same key value, so runs stay reproducible).

  Example:
    >>> k = as_key(0)
    >>> bool(jnp.all(jax.random.key_data(fresh_key(k)) == jax.random.key_data(k)))
    True
  """
  return jnp.copy(key)
