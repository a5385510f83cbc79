r"""Multi-process entry point: start JAX's distributed runtime, then run the RRG job.

Every process runs the same command; JAX connects them through a coordinator (process 0's
address) and from then on ``jax.devices()`` lists the devices of all processes, so a mesh
(``--mesh data=D,fsdp=F``, see ``sharding.py``) spans every host. Each process reads only its
share of every batch.

  python -m examples.rrg.launch [--coordinator HOST:PORT --num-processes N --process-id I] \
      [--module examples.rrg.main] -- --mesh data=2,fsdp=4 --config smoke

Without the three flags (and without ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID`` in the environment) JAX detects the cluster itself: SLURM (``srun``), Open
MPI, Cloud TPU pod slices. On CPU the processes exchange data with Gloo.

Two processes on one machine, four simulated CPU devices each:

  export XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu
  python -m examples.rrg.launch --coordinator localhost:12355 --num-processes 2 \
      --process-id 0 -- --config smoke --mesh data=2,fsdp=4 --out runs/mp &
  python -m examples.rrg.launch --coordinator localhost:12355 --num-processes 2 \
      --process-id 1 -- --config smoke --mesh data=2,fsdp=4 --out runs/mp
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Sequence

ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m examples.rrg.launch", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--coordinator", default=os.environ.get(ENV["coordinator"]),
                 help=f"HOST:PORT of process 0 (default ${ENV['coordinator']}; "
                 "none: let JAX detect the cluster)")
  p.add_argument("--num-processes", type=int, default=_env_int("num_processes"),
                 help=f"number of processes (default ${ENV['num_processes']})")
  p.add_argument("--process-id", type=int, default=_env_int("process_id"),
                 help=f"this process, 0..N-1 (default ${ENV['process_id']})")
  p.add_argument("--module", default="examples.rrg.main",
                 help="module whose main(argv) runs in every process (default: the RRG job)")
  p.add_argument("argv", nargs=argparse.REMAINDER,
                 help="arguments for the module, after '--'")
  args = p.parse_args(argv)
  given = [args.coordinator is not None, args.num_processes is not None,
           args.process_id is not None]
  if any(given) and not all(given):
    p.error("--coordinator, --num-processes and --process-id go together (or none of them, "
            "to let JAX detect the cluster)")
  if all(given) and not 0 <= args.process_id < args.num_processes:
    p.error(f"--process-id must be in [0, {args.num_processes}), got {args.process_id}")
  if args.argv[:1] == ["--"]:
    args.argv = args.argv[1:]
  return args


def _env_int(key: str) -> int | None:
  value = os.environ.get(ENV[key])
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise SystemExit(f"${ENV[key]} must be an integer, got {value!r}") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """``jax.distributed.initialize`` with Gloo as the CPU collectives; a no-op for 1 process.

  With no arguments JAX detects the cluster (SLURM, Open MPI, TPU pod slices).
  """
  import jax  # pylint: disable=import-outside-toplevel

  if num_processes == 1:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


def per_process_out(argv: Sequence[str], process_index: int) -> list[str]:
  """``argv`` with ``--out DIR`` made ``DIR/process<i>`` for processes other than 0.

  Every process computes the same results (metrics are replicated); process 0 writes them where
  asked, the others beside it, so that no two processes write one file.

  >>> per_process_out(["--out", "runs/x", "--steps", "5"], 1)
  ['--out', 'runs/x/process1', '--steps', '5']
  >>> per_process_out(["--out=runs/x"], 0)
  ['--out=runs/x']
  """
  argv = list(argv)
  if process_index == 0:
    return argv
  for i, arg in enumerate(argv):
    if arg == "--out" and i + 1 < len(argv):
      argv[i + 1] = os.path.join(argv[i + 1], f"process{process_index}")
    elif arg.startswith("--out="):
      argv[i] = "--out=" + os.path.join(arg.split("=", 1)[1], f"process{process_index}")
  return argv


def main(argv: Sequence[str] | None = None):
  """Initializes the runtime, then calls ``<module>.main(argv)`` and returns its result."""
  args = parse_args(argv)
  initialize(args.coordinator, args.num_processes, args.process_id)
  import jax  # pylint: disable=import-outside-toplevel

  print(f"process {jax.process_index()}/{jax.process_count()}: "
        f"{jax.local_device_count()} local of {jax.device_count()} devices", flush=True)
  module = importlib.import_module(args.module)
  return module.main(per_process_out(args.argv, jax.process_index()))


if __name__ == "__main__":
  main()
