"""Loss weightings: task weights from the K loss values alone, with their state.

Each step a :class:`LossWeighting` turns the losses into weights ``w`` and the
model takes one backward pass of ``sum_k w_k L_k`` (no per-task gradients).
"""

from came_grad_jax.loss_weighting._impl import (DWAState, FAMOState, LossWeighting,
                                                UncertaintyState, dwa, famo,
                                                uncertainty_weighting)

__all__ = ["DWAState", "FAMOState", "LossWeighting", "UncertaintyState", "dwa", "famo",
           "uncertainty_weighting"]
