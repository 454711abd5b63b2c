"""TSDF fusion of rendered depth maps into a mesh (2DGS's alternative to SuGaR's Poisson mesh).

Defaults (docs/sugar.md, "Mesh after the sugar stage"): depth_trunc = 2·scene radius,
voxel = depth_trunc / 1024, sdf_trunc = 5·voxel; afterwards only the largest connected components
(by triangle count) are kept.

Depth maps are camera-z in metres (gsplat's "ED"), 0 / inf / nan meaning "no depth"; intrinsics
follow gsplat (pixel centres at +0.5); open3d puts pixel centres at integer coordinates, so its
principal point is (cx - 0.5, cy - 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import open3d as o3d
import trimesh

from models.cameras import rigid_inverse

from ._common import check_intrinsics, to_numpy, valid_depth

__all__ = ["TSDFParams", "tsdf_params", "tsdf_fusion", "keep_largest_components", "o3d_to_trimesh"]


@dataclass(frozen=True)
class TSDFParams:
    depth_trunc: float
    voxel_size: float
    sdf_trunc: float


def tsdf_params(
    scene_radius: float | None = None,
    *,
    depth_trunc: float | None = None,
    voxel_size: float | None = None,
    sdf_trunc: float | None = None,
) -> TSDFParams:
    """The fusion parameters: each one given wins, the others follow docs/sugar.md's defaults."""
    if depth_trunc is None:
        if scene_radius is None:
            raise ValueError("tsdf fusion needs scene_radius or depth_trunc (metres)")
        depth_trunc = 2.0 * float(scene_radius)
    if voxel_size is None:
        voxel_size = depth_trunc / 1024.0
    if sdf_trunc is None:
        sdf_trunc = 5.0 * voxel_size
    for name, value in (("depth_trunc", depth_trunc), ("voxel_size", voxel_size), ("sdf_trunc", sdf_trunc)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value}")
    return TSDFParams(float(depth_trunc), float(voxel_size), float(sdf_trunc))


def o3d_to_trimesh(mesh: o3d.geometry.TriangleMesh) -> trimesh.Trimesh:
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.triangles, dtype=np.int64).reshape(-1, 3)
    colors = None
    if mesh.has_vertex_colors() and len(vertices):
        rgb = np.clip(np.asarray(mesh.vertex_colors) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=colors, process=False)


def keep_largest_components(
    mesh: o3d.geometry.TriangleMesh, n_keep: int = 50, min_triangles: int = 0
) -> o3d.geometry.TriangleMesh:
    """Drop every connected component except the n_keep largest by triangle count (and any smaller
    than min_triangles); unreferenced vertices are removed. Works in place and returns the mesh."""
    if len(mesh.triangles) == 0:
        return mesh
    cluster_idx, cluster_sizes, _ = mesh.cluster_connected_triangles()
    cluster_idx = np.asarray(cluster_idx)
    sizes = np.asarray(cluster_sizes)
    order = np.argsort(-sizes, kind="stable")
    keep_cluster = np.zeros(len(sizes), dtype=bool)
    keep_cluster[order[: max(int(n_keep), 1)]] = True
    keep_cluster &= sizes >= min_triangles
    mesh.remove_triangles_by_mask(~keep_cluster[cluster_idx])
    mesh.remove_unreferenced_vertices()
    return mesh


def _rgb_uint8(rgb, height, width) -> np.ndarray:
    if rgb is None:
        return np.full((height, width, 3), 128, dtype=np.uint8)
    rgb = to_numpy(rgb, np.float32)
    if rgb.shape != (height, width, 3):
        raise ValueError(f"rgb must be [H, W, 3] = {(height, width, 3)}, got {rgb.shape}")
    return np.ascontiguousarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))


def tsdf_fusion(
    depths: Sequence,
    Ks: Sequence,
    camera_to_worlds: Sequence,
    rgbs: Sequence | None = None,
    *,
    scene_radius: float | None = None,
    depth_trunc: float | None = None,
    voxel_size: float | None = None,
    sdf_trunc: float | None = None,
    n_components: int = 50,
    min_component_triangles: int = 0,
    progress: bool = False,
) -> trimesh.Trimesh:
    """Fuse V depth maps (+ colours) into a mesh with open3d's ScalableTSDFVolume.

    depths: V maps [H, W] (numpy or torch, metres, camera-z; 0/inf/nan = none). Ks: V [3, 3].
    camera_to_worlds: V [4, 4] OpenCV. rgbs: None or V images [H, W, 3] in [0, 1] (vertex colours).
    Either scene_radius or depth_trunc must be given (see tsdf_params). Keeps the n_components
    largest connected components by triangle count. Returns a trimesh.Trimesh (empty when
    nothing was fused).
    """
    depths = list(depths)
    Ks = list(Ks)
    c2ws = list(camera_to_worlds)
    if not (len(depths) == len(Ks) == len(c2ws)):
        raise ValueError(f"got {len(depths)} depth maps, {len(Ks)} intrinsics, {len(c2ws)} poses")
    if rgbs is not None:
        rgbs = list(rgbs)
        if len(rgbs) != len(depths):
            raise ValueError(f"got {len(rgbs)} rgb images for {len(depths)} depth maps")
    params = tsdf_params(scene_radius, depth_trunc=depth_trunc, voxel_size=voxel_size, sdf_trunc=sdf_trunc)
    volume = o3d.pipelines.integration.ScalableTSDFVolume(
        voxel_length=params.voxel_size,
        sdf_trunc=params.sdf_trunc,
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8,
    )
    views = range(len(depths))
    if progress:
        from tqdm import tqdm

        views = tqdm(views, desc="tsdf fusion", unit="view")
    for i in views:
        depth = to_numpy(depths[i], np.float32)
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise ValueError(f"depth map {i} must be [H, W], got shape {depth.shape}")
        height, width = depth.shape
        depth = np.ascontiguousarray(np.where(valid_depth(depth), depth, 0.0).astype(np.float32))
        rgb = _rgb_uint8(None if rgbs is None else rgbs[i], height, width)
        K = check_intrinsics(Ks[i])
        intrinsic = o3d.camera.PinholeCameraIntrinsic(
            width, height, K[0, 0], K[1, 1], K[0, 2] - 0.5, K[1, 2] - 0.5
        )
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(rgb),
            o3d.geometry.Image(depth),
            depth_scale=1.0,
            depth_trunc=params.depth_trunc,
            convert_rgb_to_intensity=False,
        )
        volume.integrate(rgbd, intrinsic, rigid_inverse(to_numpy(c2ws[i])))
    mesh = volume.extract_triangle_mesh()
    mesh = keep_largest_components(mesh, n_components, min_component_triangles)
    out = o3d_to_trimesh(mesh)
    if rgbs is None:
        out.visual = trimesh.visual.ColorVisuals(out)
    return out
