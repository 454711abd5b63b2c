"""Rendering: ``rasterization()`` with gsplat's signature; PyTorch and gsplat backends.

The dense reference renderer (tests/benchmarks only) is ``models.rendering.reference.rasterization_dense``.
"""
from .rasterize import rasterization

__all__ = ["rasterization"]
