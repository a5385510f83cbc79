"""Two JAX processes (4 simulated CPU devices each, Gloo collectives) train like one device.

The processes are started with ``python -m examples.rrg.launch`` on a local coordinator; each
loads only its half of every batch, and after 20 CAME-Grad steps on the (data=2, fsdp=4) mesh
that spans both, the losses and parameters equal the one-device run's.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import conftest
from tests.rrg import mesh_run

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_device(tmp_path):
  out = tmp_path / "result.npz"
  env = {**os.environ,
         "XLA_FLAGS": f"--xla_force_host_platform_device_count=4 {conftest.TEST_XLA_FLAGS}",
         "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "examples.rrg.launch", "--coordinator", f"localhost:{port}",
       "--num-processes", "2", "--process-id", str(i), "--module", "tests.rrg.mesh_run", "--",
       "--method", "came", "--mesh", "data=2,fsdp=4", "--steps", str(mesh_run.TINY.num_steps),
       "--out", str(out)],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=1800)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0, f"process {i} failed:\n{log[-4000:]}"
  # Each process saw 8 of the 8 devices and read only its 4 rows of every batch of 8.
  assert "process 0/2: 4 local of 8 devices" in logs[0], logs[0][-2000:]
  assert "process 0 loads rows 0:4 of each batch" in logs[0]
  assert "process 1 loads rows 4:8 of each batch" in logs[1]

  result = np.load(out)
  losses = result["losses"]
  params = {k.removeprefix("param:"): result[k] for k in result.files if k.startswith("param:")}
  want_losses, want_params = mesh_run.reference("came")
  assert np.linalg.norm(losses - want_losses) <= 1e-5 * np.linalg.norm(want_losses)
  assert mesh_run.rel_err(params, want_params) <= 1e-5
