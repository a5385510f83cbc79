"""Shared fixtures. Eight simulated CPU devices for the sharding tests (set before jax loads).

XLA's CPU backend is asked for no LLVM optimisation (``--xla_backend_optimization_level=0``):
the suite's time is mostly compilation of programs that then run a few times, and this cuts it
by about 40% on 2 cores. It changes machine code, not the HLO passes (fusion, layout, buffer
assignment), so memory analyses are unaffected, and every numeric check is relative to a norm.
"""

import os
import shutil
import tempfile

# One XLA compilation cache for the test session, shared by its pytest-xdist workers and its
# subprocesses (they inherit the environment) and removed at the end: many tests build equal
# programs from new function objects (a fresh transformation, a fresh ``jax.jit``), which the
# in-memory cache misses and this one hits by the program's fingerprint (about 40% of the fast
# tier's CPU time). Fresh per session: a run never reuses another run's programs.
_OWN_CACHE = "CAME_GRAD_JAX_TEST_XLA_CACHE" not in os.environ
if _OWN_CACHE:
  os.environ["CAME_GRAD_JAX_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="came_grad_jax-xla-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["CAME_GRAD_JAX_TEST_XLA_CACHE"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Also what subprocess tests (tests/rrg/test_multiprocess.py) pass on to their children.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS",
                      f"--xla_force_host_platform_device_count=8 {TEST_XLA_FLAGS}")

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



def pytest_collection_modifyitems(items):
  """chex's ``without_jit`` variants (eager dispatch, op by op) run in the slow tier; their
  ``with_jit`` twins stay in the fast one (``tests/tiers.py``)."""
  for item in items:
    if item.name.endswith("__without_jit"):
      item.add_marker(pytest.mark.slow)


def pytest_unconfigure(config):
  """The session's compilation cache goes with the process that made it."""
  del config
  if _OWN_CACHE:
    shutil.rmtree(os.environ["CAME_GRAD_JAX_TEST_XLA_CACHE"], ignore_errors=True)
