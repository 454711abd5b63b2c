import numpy as np
import pytest
import torch

from models.mesh.tsdf import tsdf_fusion, tsdf_params
from tests.mesh.helpers import intrinsics, plane_depth, pose, rot_y

W, H = 64, 48
WALL_Z = 3.0


def _wall_views():
    K = intrinsics(60.0, W, H)
    c2ws = [pose(position=(-0.5, 0, 0)), pose(position=(0.5, 0.1, 0)), pose(rot_y(10), position=(0, -0.1, 0.3))]
    depths = [plane_depth(K, c, W, H, WALL_Z) for c in c2ws]
    return K, c2ws, depths


def test_default_parameters_follow_sugar_md():
    p = tsdf_params(scene_radius=25.0)
    assert p.depth_trunc == 50.0
    assert p.voxel_size == pytest.approx(50.0 / 1024)
    assert p.sdf_trunc == pytest.approx(5 * 50.0 / 1024)
    p = tsdf_params(scene_radius=25.0, voxel_size=0.1)
    assert (p.depth_trunc, p.voxel_size, p.sdf_trunc) == (50.0, 0.1, pytest.approx(0.5))
    with pytest.raises(ValueError, match="scene_radius or depth_trunc"):
        tsdf_params()


def test_fused_wall_lies_on_the_plane_with_its_colour():
    K, c2ws, depths = _wall_views()
    depths[0][:5] = np.inf  # "no depth" markers are skipped, not fused
    depths[1][:, :3] = 0.0
    rgb = np.full((H, W, 3), [0.2, 0.6, 0.9])
    voxel = 0.02
    mesh = tsdf_fusion(
        [torch.as_tensor(d, dtype=torch.float32) for d in depths], [K] * 3, c2ws, [rgb] * 3,
        scene_radius=2.5, voxel_size=voxel,
    )
    assert len(mesh.faces) > 1000
    assert np.abs(mesh.vertices[:, 2] - WALL_Z).max() < 2 * voxel
    # It covers what the cameras saw: x from about -2.1 to 2.1 m at 3 m.
    lo, hi = mesh.bounds
    assert lo[0] < -1.9 and hi[0] > 1.9 and lo[1] < -1.0 and hi[1] > 1.0
    colours = mesh.visual.vertex_colors[:, :3].astype(float) / 255
    assert np.abs(colours - [0.2, 0.6, 0.9]).max() < 0.01
    # Faces point back at the cameras (-z).
    assert (mesh.face_normals[:, 2] < 0).mean() > 0.99


def test_depth_beyond_depth_trunc_is_dropped_and_small_components_removed():
    K, c2ws, depths = _wall_views()
    # A small far patch (separate component) in one view beyond a depth_trunc of 5 m.
    depths[0][20:24, 30:34] = 6.0
    mesh = tsdf_fusion(depths, [K] * 3, c2ws, depth_trunc=5.0, voxel_size=0.02, n_components=1)
    assert np.abs(mesh.vertices[:, 2] - WALL_Z).max() < 0.04
    # An isolated blob (a second wall patch far from the first) is dropped by n_components=1.
    near = np.zeros((H, W))
    near[10:14, 10:14] = 1.0
    mesh2 = tsdf_fusion(depths + [near], [K] * 4, c2ws + [pose()], depth_trunc=5.0, voxel_size=0.02, n_components=1)
    assert np.abs(mesh2.vertices[:, 2] - WALL_Z).max() < 0.04
    mesh3 = tsdf_fusion(depths + [near], [K] * 4, c2ws + [pose()], depth_trunc=5.0, voxel_size=0.02, n_components=50)
    assert np.abs(mesh3.vertices[:, 2] - 1.0).min() < 0.04
