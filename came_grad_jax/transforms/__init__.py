"""Transformation-level methods: ``optax.GradientTransformation`` factories, one private module each.

``_methods`` wraps each Gram-level weighting of :mod:`came_grad_jax.weightings`
with :func:`came_grad_jax.aggregate`; the others (GradDrop, the trimmed mean,
ExcessMTL, GradNorm and the gradient tracking of MoCo and DB-MTL) need more than
the Gram matrix (signs, values, losses or state) and are transformations of
their own. The public names are re-exported from :mod:`came_grad_jax`.
"""
