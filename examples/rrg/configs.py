"""Configurations of the RRG example.

* ``smoke``   -- seconds: tiny model and data, a few steps; what the test suite runs end to end.
* ``default`` -- the main job: K = 3 tasks (report NLL, classification, alignment) with task
  weights ``[1, 4, 1]`` on the synthetic data, linear scalarization vs CAME-Grad, 3 seeds; under
  10 minutes on 2 CPU cores, compilation included.
* ``k2``      -- the paper's own trainer: K = 2, ``[loss_lm, loss_cls]`` with weights ``[1, 4]``.
* ``r2gen``   -- real IU X-Ray / MIMIC-CXR data in the R2Gen ``annotation.json`` layout; paths
  come from the command line (``--ann``, ``--images``, ``--dataset``).
"""

from __future__ import annotations

import dataclasses

from examples.rrg.models import ModelConfig


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run needs besides the method and the seed."""

  name: str = "default"
  # Tasks, in the order of the loss vector, and their weights w_k.
  tasks: tuple[str, ...] = ("nll", "cls", "align")
  task_weights: tuple[float, ...] = (1.0, 4.0, 1.0)
  # Methods compared and seeds (command-line flags override both).
  methods: tuple[str, ...] = ("ls", "came")
  seeds: tuple[int, ...] = (0, 1, 2)
  # CAME-Grad (the paper's trainer flags --came_rho/--came_kappa/--came_nu) and CAGrad.
  came_rho: float = 0.5
  came_kappa: float = 1.5
  came_nu: float = 0.2
  cagrad_c: float = 0.4
  # Optimisation: AdamW with linear warmup and cosine decay to 10% of the peak.
  learning_rate: float = 2e-3
  weight_decay: float = 1e-4
  warmup_steps: int = 20
  num_steps: int = 200
  batch_size: int = 32
  temperature: float = 0.1  # InfoNCE temperature of the alignment task
  model: ModelConfig = ModelConfig()
  # Data: "synthetic" (ships with the project) or "r2gen" (annotation.json + images).
  data: str = "synthetic"
  num_train: int = 512
  num_val: int = 64
  num_test: int = 128
  image_size: int = 64
  max_len: int = 48
  data_seed: int = 0
  ann_path: str | None = None
  image_dir: str | None = None
  dataset: str = "iu_xray"
  min_count: int = 3
  labels_path: str | None = None
  # Bookkeeping.
  eval_batch_size: int = 64
  meteor: bool = False  # METEOR needs Java and ~10 s per evaluation
  log_every: int = 10
  checkpoint_every: int = 0  # 0: never (main.py --checkpoint sets it)

  def __post_init__(self):
    if len(self.task_weights) != len(self.tasks):
      raise ValueError(
          f"task_weights has {len(self.task_weights)} entries but there are "
          f"{len(self.tasks)} tasks {self.tasks}")
    if any(w < 0 for w in self.task_weights):
      raise ValueError(f"task_weights must be >= 0, got {self.task_weights}")
    if self.data not in ("synthetic", "r2gen"):
      raise ValueError(f"data must be 'synthetic' or 'r2gen', got {self.data!r}")


def default() -> Config:
  """The main job (see the module docstring)."""
  return Config()


def smoke() -> Config:
  """Seconds on a CPU: a tiny model, 24/8/16 examples, 6 steps, one seed."""
  return Config(
      name="smoke",
      seeds=(0,),
      learning_rate=1e-2,
      num_steps=6,
      warmup_steps=2,
      batch_size=8,
      num_train=24,
      num_val=8,
      num_test=16,
      image_size=32,
      max_len=24,
      eval_batch_size=16,
      log_every=2,
      model=ModelConfig(channels=(8, 16, 16), d_model=32, num_heads=2, num_layers=1,
                        mlp_dim=64, embed_dim=16),
  )


def k2() -> Config:
  """The paper's trainer: ``[loss_lm, loss_cls]``, task weights ``[1.0, cls_weight=4.0]``."""
  return dataclasses.replace(default(), name="k2", tasks=("nll", "cls"), task_weights=(1.0, 4.0))


def r2gen() -> Config:
  """Real data (R2Gen layout): 2 views for IU X-Ray, longer reports, paths from the flags."""
  return dataclasses.replace(
      default(), name="r2gen", data="r2gen", max_len=60, num_steps=3000, batch_size=16,
      warmup_steps=200, learning_rate=5e-4, image_size=128,
      model=ModelConfig(channels=(16, 32, 64, 96, 128), d_model=256, num_heads=4,
                        num_layers=3, mlp_dim=512, embed_dim=128))


CONFIGS = {"default": default, "smoke": smoke, "k2": k2, "r2gen": r2gen}


def get_config(name: str) -> Config:
  """The configuration called ``name`` (one of :data:`CONFIGS`)."""
  if name not in CONFIGS:
    raise ValueError(f"unknown config {name!r}; expected one of {sorted(CONFIGS)}")
  return CONFIGS[name]()
