"""Mesh extraction (SuGaR level set + Poisson, TSDF fusion) and surface metrics against ground truth."""

from .levelset import KnnGaussianDensity, LevelSetPoints, extract_level_set_points, levelset_mesh, poisson_mesh
from .metrics import load_mesh, sample_surface, visible_region_filter
from .run_io import (LoadedRun, RunInputError, evaluate_run, extract_run_mesh, load_run, point_to_mesh_metrics,
                     save_mesh)
from .tsdf import TSDFParams, tsdf_fusion, tsdf_params

__all__ = [
    "KnnGaussianDensity",
    "LevelSetPoints",
    "extract_level_set_points",
    "levelset_mesh",
    "poisson_mesh",
    "load_mesh",
    "sample_surface",
    "visible_region_filter",
    "TSDFParams",
    "tsdf_fusion",
    "tsdf_params",
    "LoadedRun",
    "RunInputError",
    "load_run",
    "extract_run_mesh",
    "save_mesh",
    "evaluate_run",
    "point_to_mesh_metrics",
]
