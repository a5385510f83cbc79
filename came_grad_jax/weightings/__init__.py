"""Weightings: pure functions from a (K, K) Gram matrix to K coefficients."""

from came_grad_jax.weightings._ablations import came_s1, came_s1_s2, came_s1_s3, came_stages
from came_grad_jax.weightings._aligned_mtl import aligned_mtl
from came_grad_jax.weightings._base import (
                                           AnyWeighting,
                                           EmptyState,
                                           StatefulWeighting,
                                           Weighting,
                                           as_stateful,
                                           check_gram,
)
from came_grad_jax.weightings._cagrad import cagrad
from came_grad_jax.weightings._came import came, fuse, inject_energy, joint_norm, rectify

# Issue 13: the breadth of LibMTL and TorchJD.
from came_grad_jax.weightings._config import config
from came_grad_jax.weightings._db_mtl import max_norm_balancing
from came_grad_jax.weightings._dualproj import dualproj
from came_grad_jax.weightings._ema import EMAState, ema_weighting
from came_grad_jax.weightings._fairgrad import fairgrad
from came_grad_jax.weightings._gradvac import GradVacState, gradvac
from came_grad_jax.weightings._imtl_g import imtl_g
from came_grad_jax.weightings._krum import krum
from came_grad_jax.weightings._linear import linear_scalarization
from came_grad_jax.weightings._mgda import mgda, min_norm_point
from came_grad_jax.weightings._modo import MoDoState, modo
from came_grad_jax.weightings._nash_mtl import nash_mtl
from came_grad_jax.weightings._pcd import pcd
from came_grad_jax.weightings._pcgrad import PCGradState, pcgrad
from came_grad_jax.weightings._sdmgrad import sdmgrad
from came_grad_jax.weightings._upgrad import dual_cone_weights, upgrad

__all__ = [
    "AnyWeighting", "EmptyState", "StatefulWeighting", "Weighting", "as_stateful",
    "cagrad", "came", "check_gram", "fuse", "inject_energy", "joint_norm",
    "linear_scalarization", "rectify",
    # Baselines and ablations.
    "GradVacState", "PCGradState", "aligned_mtl", "came_s1", "came_s1_s2", "came_s1_s3",
    "came_stages", "dual_cone_weights", "dualproj", "gradvac", "imtl_g", "mgda",
    "min_norm_point", "nash_mtl", "pcgrad", "upgrad",
    "EMAState", "MoDoState", "config", "ema_weighting", "fairgrad", "krum",
    "max_norm_balancing", "modo", "pcd", "sdmgrad",
]
