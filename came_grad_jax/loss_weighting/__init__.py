"""Loss weightings: task weights from the K loss values alone, with their state.

Each step a :class:`LossWeighting` turns the losses into weights ``w`` and the
model takes one backward pass of ``sum_k w_k L_k`` (no per-task gradients).
"""

from came_grad_jax.loss_weighting._gls import GLSState, gls
from came_grad_jax.loss_weighting._impl import (
                                                DWAState,
                                                FAMOState,
                                                LossWeighting,
                                                UncertaintyState,
                                                dwa,
                                                famo,
                                                uncertainty_weighting,
)
from came_grad_jax.loss_weighting._rlw import RLWState, rlw
from came_grad_jax.loss_weighting._stch import STCHState, stch

__all__ = ["DWAState", "FAMOState", "LossWeighting", "UncertaintyState", "dwa", "famo",
           "uncertainty_weighting",
           "GLSState", "RLWState", "STCHState", "gls", "rlw", "stch"]
