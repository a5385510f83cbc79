"""came_grad_jax: CAME-Grad and multi-task gradient weightings for JAX/Optax.

Layers:
  1. :func:`value_and_task_grads`: per-task gradients, stacked on a leading axis K.
  2. :mod:`came_grad_jax.weightings`: Gram matrix (K, K) -> coefficients (K,).
  3. :func:`aggregate`, :func:`came_grad`: ``optax.GradientTransformation``s.
"""

from came_grad_jax import loss_weighting, weightings
from came_grad_jax._diagnostics import Diagnostics, compute_diagnostics
from came_grad_jax._gram import combine, gram, num_tasks_of
from came_grad_jax._lean import LeanInfo, lean_value_and_grad, representation_value_and_grad
from came_grad_jax._registry import (
                                     Method,
                                     get_method,
                                     make_method,
                                     method_names,
                                     methods_table,
                                     register,
)
from came_grad_jax._task_grads import value_and_task_grads
from came_grad_jax._transform import AggregateState, aggregate, came_grad
from came_grad_jax._version import __version__
from came_grad_jax.transforms._excess_mtl import ExcessMTLState, excess_mtl
from came_grad_jax.transforms._graddrop import GradDropState, graddrop
from came_grad_jax.transforms._gradnorm import GradNormState, gradnorm
from came_grad_jax.transforms._methods import (
                                     aligned_mtl,
                                     cagrad,
                                     came_s1,
                                     came_s1_s2,
                                     came_s1_s3,
                                     config,
                                     cr_mogm,
                                     db_mtl,
                                     dualproj,
                                     fairgrad,
                                     gradvac,
                                     imtl_g,
                                     krum,
                                     linear_scalarization,
                                     mgda,
                                     moco,
                                     modo,
                                     nash_mtl,
                                     pcd,
                                     pcgrad,
                                     sdmgrad,
                                     upgrad,
)
from came_grad_jax.transforms._tracking import TrackState, track_gradients
from came_grad_jax.transforms._trimmed_mean import TrimmedMeanState, trimmed_mean

__all__ = [
    "AggregateState", "Diagnostics", "aggregate", "came_grad", "combine",
    "compute_diagnostics", "gram", "num_tasks_of", "value_and_task_grads", "weightings",
    "LeanInfo", "lean_value_and_grad", "representation_value_and_grad",
    # Baselines, ablations and loss weightings (docs/methods.md).
    "GradDropState", "aligned_mtl", "cagrad", "came_s1", "came_s1_s2", "came_s1_s3",
    "dualproj", "graddrop", "gradvac", "imtl_g", "linear_scalarization", "loss_weighting",
    "mgda", "nash_mtl", "pcgrad", "upgrad",
    "ExcessMTLState", "GradNormState", "TrackState", "TrimmedMeanState", "config", "cr_mogm",
    "db_mtl", "excess_mtl", "fairgrad", "gradnorm", "krum", "moco", "modo", "pcd", "sdmgrad",
    "track_gradients", "trimmed_mean",
    # The registry of methods.
    "Method", "get_method", "make_method", "method_names", "methods_table", "register",
    "__version__",
]
