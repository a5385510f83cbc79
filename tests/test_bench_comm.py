"""bench_comm: the HLO reader, and the exact method's data-parallel traffic (K x LS's)."""

import jax
import pytest

pytest.importorskip("flax")

from benchmarks import bench_comm  # noqa: E402

HLO = """
%p = f32[16,8]{1,0} parameter(0)
%q = bf16[4]{0} parameter(1)
%ar = (f32[16,8]{1,0}, bf16[4]{0}) all-reduce(f32[16,8]{1,0} %p, bf16[4]{0} %q), to_apply=%add
%ag = f32[64,8]{1,0} all-gather(f32[16,8]{1,0} %p), dimensions={0}
%ags = (f32[16,8]{1,0}, f32[64,8]{1,0}) all-gather-start(f32[16,8]{1,0} %p), dimensions={0}
%agd = f32[64,8]{1,0} all-gather-done((f32[16,8]{1,0}, f32[64,8]{1,0}) %ags)
%rs = f32[4,8]{1,0} reduce-scatter(%p), dimensions={0}, to_apply=%add
%cp = f32[16,8]{1,0} collective-permute(f32[16,8]{1,0} %p), source_target_pairs={{0,1}}
"""


def test_collective_bytes_reads_each_kind():
  got = bench_comm.collective_bytes(HLO)
  assert got["all-reduce"] == {"ops": 1, "bytes": 16 * 8 * 4 + 4 * 2}
  # all-gather: the gathered result; its async start: the result minus the operand.
  assert got["all-gather"] == {"ops": 2, "bytes": 2 * 64 * 8 * 4}
  assert got["reduce-scatter"] == {"ops": 1, "bytes": 16 * 8 * 4}  # operand by name only
  assert got["collective-permute"] == {"ops": 1, "bytes": 16 * 8 * 4}
  assert got["all-to-all"] == {"ops": 0, "bytes": 0}


def test_task_names_and_k():
  assert bench_comm.task_names(3) == ("nll", "cls", "align")
  assert len(bench_comm.task_names(8)) == 8
  with pytest.raises(ValueError, match="K must be"):
    bench_comm.task_names(5)


@pytest.mark.slow
def test_exact_method_reduces_k_gradients_over_data():
  """Data parallel (data=8): LS reduces one gradient, CAME-Grad K = 2 of them, no gather."""
  if jax.device_count() < 8:
    pytest.fail("needs 8 devices: XLA_FLAGS is set in tests/conftest.py")
  problem = bench_comm.transformer_problem(quick=True)
  gradient_bytes = 4 * bench_comm.num_params(problem.params)
  got = {m: bench_comm.collective_bytes(bench_comm.compiled_hlo(problem, m, 2, "data=8"))
         for m in ("ls_1bwd", "came")}
  # XLA may leave out parameters whose gradient is known to be zero, so LS reduces at most one
  # gradient's bytes; CAME-Grad reduces more than LS (K task gradients) and gathers nothing.
  ls = got["ls_1bwd"]["all-reduce"]["bytes"]
  came = got["came"]["all-reduce"]["bytes"]
  assert 0 < ls <= 1.05 * gradient_bytes, got["ls_1bwd"]
  assert ls < came <= 1.05 * 2 * gradient_bytes + 64, got["came"]
  for method in got:
    assert got[method]["all-gather"]["ops"] == 0, (method, got[method])
