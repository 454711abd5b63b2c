"""Mesh extraction (SuGaR level set + Poisson, TSDF fusion) and surface metrics against ground truth."""

from .levelset import KnnGaussianDensity, LevelSetPoints, extract_level_set_points, levelset_mesh, poisson_mesh
from .metrics import load_mesh, mesh_metrics, sample_surface, visible_region_filter
from .tsdf import TSDFParams, tsdf_fusion, tsdf_params

__all__ = [
    "KnnGaussianDensity",
    "LevelSetPoints",
    "extract_level_set_points",
    "levelset_mesh",
    "poisson_mesh",
    "load_mesh",
    "mesh_metrics",
    "sample_surface",
    "visible_region_filter",
    "TSDFParams",
    "tsdf_fusion",
    "tsdf_params",
]
