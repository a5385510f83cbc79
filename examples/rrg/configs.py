"""Configurations of the RRG example.

* ``default`` -- the main job, the paper's own setting: K = 2 tasks ``[nll, cls]`` (the paper's
  trainer's ``[loss_lm, loss_cls]``) with task weights ``[1, 4]`` on the synthetic data, linear
  scalarization vs CAME-Grad, 5 seeds, model selection on the val split by CE-F1; under 10
  minutes on 2 CPU cores, compilation included (per-run work is small to afford the seeds).
* ``k3``      -- the same with a third task, image-report alignment (InfoNCE), weights
  ``[1, 4, 1]``: not the paper's setting.
* ``conflict_global`` -- ``default`` with a global bottleneck of width 8, the dial's second
  set of findings drawn upside down, learning rate 7e-4 and ``disjoint`` 1: a candidate
  setting of the conflict study (``examples/rrg/conflict.py``), not yet meeting its bar.
* ``conflict_large`` -- ``conflict_global`` on 4096 training studies for 1200 steps: the
  dial's ends further apart, its far end less negative.
* ``smoke``   -- seconds: tiny model and data, a few steps, one seed; what the tests run.
* ``r2gen``   -- real IU X-Ray / MIMIC-CXR data in the R2Gen ``annotation.json`` layout; paths
  come from the command line (``--ann``, ``--images``, ``--dataset``).

A :class:`Config` describes one run (``method``, ``seed``) and the sweep around it
(``methods``, ``seeds``); ``train.train_and_evaluate(config, workdir)`` runs the former,
``sweep.run(config, workdir)`` the latter.
"""

from __future__ import annotations

import dataclasses

from examples.rrg.data import synthetic
from examples.rrg.models import ModelConfig


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run needs. Command-line flags override fields (see ``main.py``)."""

  name: str = "default"
  # Tasks, in the order of the loss vector, and their weights w_k.
  tasks: tuple[str, ...] = ("nll", "cls")
  task_weights: tuple[float, ...] = (1.0, 4.0)
  # The run: a method of the library's registry (``came_grad_jax.method_names()``) and a seed
  # (model initialisation and batch order).
  method: str = "came"
  seed: int = 0
  # The sweep: methods x seeds ("ls_tuned" is LS with the cls weight tuned on val, see below).
  methods: tuple[str, ...] = ("ls", "came")
  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
  # Hyperparameters of the methods (CAME-Grad: the paper's trainer flags --came_rho,
  # --came_kappa, --came_nu; CAGrad's c).
  came_rho: float = 0.5
  came_kappa: float = 1.5
  came_nu: float = 0.2
  cagrad_c: float = 0.4
  # "ls_tuned": LS trained at each of these cls weights (the others kept), the weight with the
  # best mean val CE-F1 over seeds selected; costs len(grid) LS runs per seed.
  ls_tune_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
  # Optimisation: AdamW, linear warmup over a fraction of the step budget, cosine decay to 10%.
  learning_rate: float = 2e-3
  weight_decay: float = 1e-4
  # "default" (above) or "paper": the paper's trainer, AdamW with weight decay 0.05 on ndim >= 2
  # parameters only, warmup from 1% of the peak, LS clipped by value 0.1 (train.base_optimizer).
  recipe: str = "default"
  warmup_fraction: float = 0.1
  # 600 updates of batch 16: the classification task needs the updates (at batch 32 x 150 its
  # loss stays at the label prior; see examples/rrg/README.md, "A classification task that
  # learns from the image").
  num_steps: int = 600
  batch_size: int = 16
  temperature: float = 0.1  # InfoNCE temperature of the alignment task
  backbone: str = "encoder_decoder"
  # Small enough that 2 methods x 5 seeds run within 10 minutes on 2 CPU cores: a 3-stage CNN
  # on 32 x 32 images (16 image tokens) and a one-layer decoder of width 64.
  model: ModelConfig = ModelConfig(channels=(16, 32, 64), d_model=64, num_heads=4, num_layers=1,
                                   mlp_dim=128, embed_dim=32)
  # Data: "synthetic" (ships with the project) or "r2gen" (annotation.json + images).
  data: str = "synthetic"
  num_train: int = 512
  num_val: int = 64
  num_test: int = 128
  image_size: int = 32
  max_len: int = 48
  # Decoding of the test reports: 1 is greedy (the synthetic main job, for its CPU budget);
  # the papers use beam search with 3 beams (the r2gen config). Val selection stays greedy.
  beam_size: int = 1
  length_penalty: float = 0.0
  data_seed: int = 0
  # The conflict dial (synthetic data only, ``examples/rrg/conflict.py``): None is today's data;
  # a share in [0, 1] draws an independent second set of findings into every image and moves
  # that share of the cls targets to it (``input_pipeline.synthetic_dataset``).
  disjoint: float | None = None
  # How the dial's second set of findings is drawn (``synthetic.INDEPENDENT_STYLES``):
  # "opposite" (same places, opposite brightness) or "flipped" (same brightness, upside down).
  independent_style: str = "opposite"
  # Grain worker processes reading the training batches (0: threads of the training process).
  workers: int = 0
  ann_path: str | None = None
  image_dir: str | None = None
  dataset: str = "iu_xray"
  min_count: int = 3
  labels_path: str | None = None
  # Model selection: CE-F1 on the val split every eval_every steps (and at the end); the test
  # metrics are those of the selected step.
  eval_every: int = 100
  # Bookkeeping.
  eval_batch_size: int = 64
  meteor: bool = False  # METEOR needs Java and ~10 s per evaluation
  log_every: int = 10
  checkpoint_every: int = 0  # 0: never (main.py --checkpoint sets it)
  mesh: str = ""  # device mesh "data=D,fsdp=F" (examples/rrg/training/sharding.py); "": one device
  timing_steps: int = 10  # steps of the plain LS trainer timed for the per-step time ratio
  bootstrap_samples: int = 1000  # resamples of the paired confidence intervals

  def __post_init__(self):
    if not self.tasks:
      raise ValueError("tasks must not be empty")
    if len(self.task_weights) != len(self.tasks):
      raise ValueError(
          f"task_weights has {len(self.task_weights)} entries but there are "
          f"{len(self.tasks)} tasks {self.tasks}")
    if any(w < 0 for w in self.task_weights):
      raise ValueError(f"task_weights must be >= 0, got {self.task_weights}")
    if self.data not in ("synthetic", "r2gen"):
      raise ValueError(f"data must be 'synthetic' or 'r2gen', got {self.data!r}")
    if not 0.0 <= self.warmup_fraction < 1.0:
      raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
    for field in ("num_steps", "batch_size", "eval_every", "eval_batch_size", "log_every",
                  "image_size", "max_len", "bootstrap_samples", "beam_size"):
      if getattr(self, field) < 1:
        raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
    if self.workers < 0:
      raise ValueError(f"workers must be >= 0, got {self.workers}")
    if self.learning_rate <= 0:
      raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
    if self.recipe not in ("default", "paper"):
      raise ValueError(f"recipe must be 'default' or 'paper', got {self.recipe!r}")
    if self.disjoint is not None and not 0.0 <= self.disjoint <= 1.0:
      raise ValueError(f"disjoint must be None or in [0, 1], got {self.disjoint}")
    if self.independent_style not in synthetic.INDEPENDENT_STYLES:
      raise ValueError(f"independent_style must be one of {synthetic.INDEPENDENT_STYLES}, got "
                       f"{self.independent_style!r}")
    if self.disjoint is not None and self.data != "synthetic":
      raise ValueError("disjoint is a knob of the synthetic data (data='synthetic')")
    if any(w <= 0 for w in self.ls_tune_grid):
      raise ValueError(f"ls_tune_grid must hold positive weights, got {self.ls_tune_grid}")

  @property
  def warmup_steps(self) -> int:
    """Linear warmup steps: ``warmup_fraction`` of ``num_steps`` (at least 1)."""
    return max(1, round(self.warmup_fraction * self.num_steps))

  def run_name(self) -> str:
    """The run's folder name: ``<method>_seed<seed>``."""
    return f"{self.method}_seed{self.seed}"


def default() -> Config:
  """The main job (see the module docstring)."""
  return Config()


def k3() -> Config:
  """K = 3: report NLL, classification and image-report alignment, weights ``[1, 4, 1]``."""
  return dataclasses.replace(default(), name="k3", tasks=("nll", "cls", "align"),
                             task_weights=(1.0, 4.0, 1.0))


def conflict_global() -> Config:
  """``default`` with the tasks made to compete for one narrow representation of the image (a
  candidate setting for the conflict study, ``python -m examples.rrg.conflict --config
  conflict_global``; it does NOT yet meet the study's bar, see below).

  * ``bottleneck_kind="global"``, ``bottleneck=8``: the decoder and the classifier see the
    image only through one unit-RMS vector of 8 numbers (expanded to 4 memory tokens);
  * ``independent_style="flipped"``: the dial's second set of findings is drawn with the same
    brightness, upside down, so it is told apart from the reported set by where it is (with
    ``"opposite"`` both sets are read off the same local contrast);
  * ``learning_rate=7e-4``: at the default 2e-3 the classifier's encoder gradient dominates the
    joint one (about 0.9 of its norm against 0.2-0.4 for the nll's) and their cosine turns at
    random between checkpoints; slower training keeps the two comparable.

  Measured (LS, 600 steps, full-batch encoder cosine: mean over the 6 checkpoints), seeds 0-4:
  disjoint 0: -0.03, -0.23, +0.10, +0.08, +0.13 (mean +0.01); disjoint 1: -0.24, -0.19,
  -0.38, -0.04, +0.02 (mean -0.17); disjoint 0.5: -0.15, -0.22, -0.07, -0.10, -0.02 (mean
  -0.11; ``examples/rrg/results/conflict_global/conflict.json``); at disjoint 1 the cls loss
  0.57-0.63 against its prior 0.74, AUROC of the frequent observations 0.76-0.82. The dial
  moves the cosine by 0.17 on average, but disjoint 1 stays above -0.2 and one seed in five
  reverses the order.
  """
  base = default()
  return dataclasses.replace(
      base, name="conflict_global", learning_rate=7e-4, disjoint=1.0,
      independent_style="flipped",
      model=dataclasses.replace(base.model, bottleneck=8, bottleneck_kind="global",
                                bottleneck_tokens=4))


def conflict_large() -> Config:
  """``conflict_global`` trained on 8 times the studies (4096) for twice the updates (1200):
  a setting of the conflict study (``python -m examples.rrg.conflict --config
  conflict_large``).

  Measured (LS, full-batch encoder cosine, mean over 6 checkpoints and seeds 0-4;
  ``examples/rrg/results/conflict_large/conflict.json``): +0.18 at ``disjoint`` 0, +0.23 at
  0.5, -0.09 at 1, against +0.01, -0.11 and -0.17 for ``conflict_global``: the tasks stay
  aligned at 0, every seed is lower at 1 than at 0, but 1 is less negative; LS macro CE-F1
  0.263 at 0 (0.147 on 512 studies). The probe still measures on a fixed batch, the first 512
  training studies.
  """
  return dataclasses.replace(conflict_global(), name="conflict_large", num_train=4096,
                             num_steps=1200)


def smoke() -> Config:
  """Seconds on a CPU: a tiny model, 24/8/16 examples, 6 steps, one seed, K = 3."""
  return Config(
      name="smoke",
      tasks=("nll", "cls", "align"),
      task_weights=(1.0, 4.0, 1.0),
      seeds=(0,),
      learning_rate=1e-2,
      num_steps=6,
      warmup_fraction=0.3,
      batch_size=8,
      num_train=24,
      num_val=8,
      num_test=16,
      image_size=32,
      max_len=24,
      eval_every=3,
      eval_batch_size=16,
      log_every=2,
      timing_steps=2,
      bootstrap_samples=50,
      ls_tune_grid=(2.0, 4.0),
      model=ModelConfig(channels=(8, 16, 16), d_model=32, num_heads=2, num_layers=1,
                        mlp_dim=64, embed_dim=16),
  )


def r2gen() -> Config:
  """Real data (R2Gen layout): 2 views for IU X-Ray, longer reports, paths from the flags."""
  return dataclasses.replace(
      default(), name="r2gen", data="r2gen", max_len=60, num_steps=3000, batch_size=16,
      beam_size=3,
      warmup_fraction=0.07, learning_rate=5e-4, image_size=128, eval_every=500, seeds=(0, 1, 2),
      model=ModelConfig(channels=(16, 32, 64, 96, 128), d_model=256, num_heads=4,
                        num_layers=3, mlp_dim=512, embed_dim=128))


CONFIGS = {"default": default, "k3": k3, "conflict_global": conflict_global,
           "conflict_large": conflict_large, "smoke": smoke, "r2gen": r2gen}


def get_config(name: str) -> Config:
  """The configuration called ``name`` (one of :data:`CONFIGS`)."""
  if name not in CONFIGS:
    raise ValueError(f"unknown config {name!r}; expected one of {sorted(CONFIGS)}")
  return CONFIGS[name]()
