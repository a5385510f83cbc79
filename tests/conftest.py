"""Shared fixtures. Eight simulated CPU devices for the sharding tests (set before jax loads)."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402

GRADIENT_CASES = ("random", "nearly_parallel", "opposed", "one_zero", "badly_scaled")


@pytest.fixture
def x64():
  """Run the test body with float64 enabled."""
  with jax.enable_x64(True):
    yield


@pytest.fixture(params=GRADIENT_CASES)
def case(request):
  return request.param

