"""SuGaR's surface stage: Gaussian geometry helpers and the SDF / density / normal regularizers."""
from .geometry import (
    GaussianGeometry,
    gaussian_density,
    gaussian_normals,
    knn,
    quat_to_rotmat,
    sample_image_bilinear,
    sample_points_around_gaussians,
    std_along_directions,
)
from .regularizers import (
    sugar_density_loss,
    sugar_normal_loss,
    sugar_sdf_loss,
    visible_surface_mask,
)

__all__ = [
    "GaussianGeometry",
    "gaussian_density",
    "gaussian_normals",
    "knn",
    "quat_to_rotmat",
    "sample_image_bilinear",
    "sample_points_around_gaussians",
    "std_along_directions",
    "sugar_density_loss",
    "sugar_normal_loss",
    "sugar_sdf_loss",
    "visible_surface_mask",
]
