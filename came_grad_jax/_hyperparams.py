"""Validation and resolution of hyperparameters (floats, arrays or schedules)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ScalarOrSchedule = float | jax.typing.ArrayLike | Callable[[Array], Array]


def _concrete(value) -> np.ndarray | None:
  """``value`` as a NumPy array when it is known at trace time, else None."""
  try:
    return np.asarray(value)
  except (jax.errors.TracerArrayConversionError,
          jax.errors.ConcretizationTypeError):
    return None


def check_scalar(name: str, value: ScalarOrSchedule, *, lower: float,
                 upper: float = np.inf, lower_open: bool = False,
                 upper_open: bool = False) -> None:
  """Check a scalar hyperparameter lies in ``[lower, upper]`` (open ends as asked).

  Schedules (callables) and traced values (e.g. under
  ``optax.inject_hyperparams`` inside ``jit``) cannot be checked here and pass.

  Raises:
    TypeError: if the value is not a real scalar.
    ValueError: if it is non-finite or outside the range.
  """
  if callable(value):
    return
  arr = _concrete(value)
  if arr is None:
    return
  if arr.shape != () or not (np.issubdtype(arr.dtype, np.floating)
                             or np.issubdtype(arr.dtype, np.integer)):
    raise TypeError(f"{name} must be a real scalar or a schedule, got {value!r}")
  x = float(arr)
  below = x <= lower if lower_open else x < lower
  above = x >= upper if upper_open else x > upper
  if not np.isfinite(x) or below or above:
    left, right = "(" if lower_open else "[", ")" if upper_open else "]"
    raise ValueError(f"{name} must be in {left}{lower}, {upper}{right}, got {x}")


def check_bool(name: str, value: object) -> bool:
  """``value`` as a Python bool; a flag given as anything else is refused.

  Raises:
    TypeError: naming ``name`` when ``value`` is not a bool (``"abc"``, ``nan`` and
      ``-1.0`` are not flags).

  Example:
    >>> check_bool("rescale", np.True_)
    True
  """
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be True or False, got {value!r}")
  return bool(value)


def check_optimizer(name: str, value: object) -> None:
  """Refuse an ``optimizer`` argument that is not an Optax transformation (``init`` and ``update``).

  Raises:
    TypeError: naming ``name`` and what was given.

  Example:
    >>> import optax
    >>> check_optimizer("optimizer", optax.sgd(0.1))
  """
  if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
    raise TypeError(f"{name} must be an optax.GradientTransformation (e.g. optax.adam(1e-2)), "
                    f"got {value!r}")


def float_if_concrete(value: jax.typing.ArrayLike) -> float | Array:
  """``float(value)`` when it is known at trace time, else the traced scalar itself.

  Hyperparameters injected with ``optax.inject_hyperparams`` are traced under
  ``jit``; a factory that converts them with ``float()`` would fail there.

  Example:
    >>> float_if_concrete(2)
    2.0
  """
  arr = _concrete(value)
  return jnp.asarray(value) if arr is None else float(arr)


def resolve(value: ScalarOrSchedule, count: Array) -> Array:
  """The value of a hyperparameter at step ``count`` (calls a schedule)."""
  return jnp.asarray(value(count) if callable(value) else value)


def check_task_weights(task_weights, num_tasks: int | None = None):
  """Validate task weights and return a private copy (None stays None).

  Concrete weights must be a non-empty vector of finite, non-negative real
  numbers (bool, complex and strings are refused); they are copied into a NumPy
  float array so that mutating the caller's list later changes nothing. Traced
  weights (inside ``jit``) are only shape-checked.

  Raises:
    TypeError: naming ``task_weights`` when it is not a real vector.
    ValueError: naming ``task_weights`` and what was expected.
  """
  if task_weights is None:
    return None
  if isinstance(task_weights, (str, bytes)):
    raise TypeError(f"task_weights must be a vector of K real weights, got {task_weights!r}")
  arr = _concrete(task_weights)
  if arr is None:
    shape = jnp.shape(task_weights)
    if len(shape) != 1 or (num_tasks is not None and shape != (num_tasks,)):
      want = f"({num_tasks},)" if num_tasks is not None else "(K,)"
      raise ValueError(f"task_weights must have shape {want}, got {shape}")
    return task_weights
  if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating)
                               or np.issubdtype(arr.dtype, np.integer)):
    raise TypeError(
        f"task_weights must be real numbers (float or int), got dtype {arr.dtype}")
  if arr.ndim != 1 or arr.shape[0] == 0:
    raise ValueError(
        f"task_weights must be a non-empty vector of K weights, got shape {arr.shape}")
  if num_tasks is not None and arr.shape[0] != num_tasks:
    raise ValueError(
        f"task_weights has {arr.shape[0]} entries but the gradients have K = "
        f"{num_tasks} tasks")
  if not np.all(np.isfinite(arr)) or np.any(arr < 0):
    raise ValueError(f"task_weights must be finite and >= 0, got {arr.tolist()}")
  return np.array(arr, dtype=np.float64 if arr.dtype == np.float64 else np.float32)
