"""Lorenz-63: inference on (σ, ρ, β) with θ-dependent manifolds (``python -m analyses.lorenz.run``)."""
