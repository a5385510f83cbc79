"""The version of came_grad_jax (the single source; pyproject.toml reads it)."""

__version__ = "0.3.0"
