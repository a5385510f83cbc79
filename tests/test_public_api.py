"""The public names, pinned: moving a module inside the package must not change what users import.

``came_grad_jax.__all__``, ``came_grad_jax.weightings.__all__`` and
``came_grad_jax.loss_weighting.__all__`` are compared with the lists below (a new public name
is added here on purpose, in the same change), and every listed name must resolve.
"""

import importlib

import pytest

import came_grad_jax

TOP_LEVEL = [
    "AggregateState", "Diagnostics", "ExcessMTLState", "GradDropState", "GradNormState",
    "LeanInfo", "Method", "TrackState", "TrimmedMeanState", "__version__", "aggregate",
    "aligned_mtl", "cagrad", "came_grad", "came_s1", "came_s1_s2", "came_s1_s3", "combine",
    "compute_diagnostics", "config", "cr_mogm", "db_mtl", "dualproj", "excess_mtl", "fairgrad",
    "get_method", "graddrop", "gradnorm", "gradvac", "gram", "imtl_g", "krum",
    "lean_value_and_grad", "linear_scalarization", "loss_weighting", "make_method",
    "method_names", "methods_table", "mgda", "moco", "modo", "nash_mtl", "num_tasks_of", "pcd",
    "pcgrad", "register", "representation_value_and_grad", "sdmgrad", "track_gradients",
    "trimmed_mean", "upgrad", "value_and_task_grads", "weightings",
]

WEIGHTINGS = [
    "AnyWeighting", "EMAState", "EmptyState", "GradVacState", "MoDoState", "PCGradState",
    "StatefulWeighting", "Weighting", "aligned_mtl", "as_stateful", "cagrad", "came", "came_s1",
    "came_s1_s2", "came_s1_s3", "came_stages", "check_gram", "config", "dual_cone_weights",
    "dualproj", "ema_weighting", "fairgrad", "fuse", "gradvac", "imtl_g", "inject_energy",
    "joint_norm", "krum", "linear_scalarization", "max_norm_balancing", "mgda", "min_norm_point",
    "modo", "nash_mtl", "pcd", "pcgrad", "rectify", "sdmgrad", "upgrad",
]

LOSS_WEIGHTING = [
    "DWAState", "FAMOState", "GLSState", "LossWeighting", "RLWState", "STCHState",
    "UncertaintyState", "dwa", "famo", "gls", "rlw", "stch", "uncertainty_weighting",
]


@pytest.mark.parametrize("module_name, names", [
    ("came_grad_jax", TOP_LEVEL),
    ("came_grad_jax.weightings", WEIGHTINGS),
    ("came_grad_jax.loss_weighting", LOSS_WEIGHTING),
])
def test_public_names_are_pinned(module_name, names):
  module = importlib.import_module(module_name)
  assert sorted(module.__all__) == names
  assert len(set(module.__all__)) == len(module.__all__)  # no name listed twice
  missing = [name for name in names if not hasattr(module, name)]
  assert not missing, missing


def test_every_registered_factory_is_public():
  """Each registry entry's factory is reachable under a public name (wherever its module lives)."""
  public = {id(getattr(came_grad_jax, name)) for name in came_grad_jax.__all__}
  public |= {id(getattr(came_grad_jax.loss_weighting, name))
             for name in came_grad_jax.loss_weighting.__all__}
  hidden = [name for name in came_grad_jax.method_names()
            if id(came_grad_jax.get_method(name).factory) not in public]
  assert not hidden, hidden
