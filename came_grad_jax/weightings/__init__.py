"""Weightings: pure functions from a (K, K) Gram matrix to K coefficients."""

from came_grad_jax.weightings.base import (AnyWeighting, EmptyState, StatefulWeighting,
                                           Weighting, as_stateful, check_gram)
from came_grad_jax.weightings.cagrad import cagrad
from came_grad_jax.weightings.came import came, fuse, inject_energy, joint_norm, rectify
from came_grad_jax.weightings.linear import linear_scalarization

__all__ = [
    "AnyWeighting", "EmptyState", "StatefulWeighting", "Weighting", "as_stateful",
    "cagrad", "came", "check_gram", "fuse", "inject_energy", "joint_norm",
    "linear_scalarization", "rectify",
]
