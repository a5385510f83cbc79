"""Jit-compiled benchmarks of came_grad_jax; ``python -m benchmarks.run_all`` runs them all."""
