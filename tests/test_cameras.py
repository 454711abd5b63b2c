"""models.cameras: the one camera type and the rigid / pinhole maths every module uses."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.cameras import Camera, pixel_rays, project_points, rigid_inverse, transform_points, unproject_pixels
from models.rendering import rasterization
from tests.rendering.scenes import random_scene


def _pose(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    pose = torch.eye(4, dtype=dtype)
    pose[:3, :3] = q * torch.sign(torch.linalg.det(q))
    pose[:3, 3] = torch.randn(3, generator=g, dtype=dtype) * 5
    return pose


def test_rigid_inverse_is_the_inverse_for_numpy_torch_and_stacks():
    pose = _pose()
    assert torch.allclose(rigid_inverse(pose) @ pose, torch.eye(4, dtype=torch.float64), atol=1e-12)
    inv_np = rigid_inverse(pose.numpy())
    assert isinstance(inv_np, np.ndarray) and np.allclose(inv_np, np.linalg.inv(pose.numpy()), atol=1e-12)
    stack = torch.stack([_pose(1), _pose(2)])
    assert torch.allclose(rigid_inverse(stack), torch.linalg.inv(stack), atol=1e-12)
    with pytest.raises(ValueError, match="4, 4"):
        rigid_inverse(np.eye(3))


def test_project_and_unproject_are_inverse_with_pixel_centres_at_half():
    K = torch.tensor([[50.0, 0.3, 32.0], [0, 52.0, 24.0], [0, 0, 1]], dtype=torch.float64)
    pts = torch.tensor([[0.0, 0.0, 3.0], [0.3, -0.6, 3.0], [-1.0, 0.4, 7.5]], dtype=torch.float64)
    u, v = project_points(pts, K)
    assert torch.allclose(torch.stack([u[0], v[0]]), torch.tensor([32.0, 24.0], dtype=torch.float64))
    assert torch.allclose(unproject_pixels(u, v, pts[:, 2], K), pts)
    # numpy in, numpy out, same numbers
    un, vn = project_points(pts.numpy(), K.numpy())
    assert np.allclose(un, u.numpy()) and np.allclose(vn, v.numpy())
    rays = pixel_rays(K.numpy(), 64, 48)
    assert rays.shape == (48, 64, 3) and np.allclose(rays[..., 2], 1.0)
    uc, vc = project_points(rays[10, 20][None], K.numpy())   # a pixel ray projects onto its pixel centre
    assert np.allclose([uc[0], vc[0]], [20.5, 10.5])


def test_camera_round_trip_and_inside():
    c2w = _pose(3).float()
    K = torch.tensor([[40.0, 0, 20.0], [0, 40.0, 15.0], [0, 0, 1]])
    cam = Camera(c2w, K, 40, 30)
    assert torch.allclose(cam.viewmat @ c2w, torch.eye(4), atol=1e-5)
    world = cam.unproject(torch.tensor([[0.5, 0.5], [39.5, 29.5], [20.0, 15.0]]), torch.tensor([2.0, 5.0, 9.0]))
    uv, z = cam.project(world)
    assert torch.allclose(uv, torch.tensor([[0.5, 0.5], [39.5, 29.5], [20.0, 15.0]]), atol=1e-3)
    assert torch.allclose(z, torch.tensor([2.0, 5.0, 9.0]), atol=1e-4)
    assert cam.inside(uv, z).all()
    behind = cam.camera_to_world_points(torch.tensor([[0.0, 0.0, -2.0]]))
    assert not cam.inside(*cam.project(behind)).any()
    assert torch.allclose(transform_points(cam.viewmat, cam.center[None]), torch.zeros(1, 3), atol=1e-5)
    with pytest.raises(ValueError, match="4x4"):
        Camera(torch.eye(3), K, 40, 30)


def test_the_camera_projects_where_the_rasterizer_draws():
    """Camera.project and the renderer's screen-space means agree (one projection convention)."""
    means, quats, scales, opac, colors, vm, K = random_scene(50, 48, 32, 2, seed=3, extremes=False)
    cam = Camera.from_viewmat(vm[1], K[1], 48, 32)
    _, _, info = rasterization(means, quats, scales, opac, colors, cam.viewmat[None], cam.K[None], 48, 32)
    uv, z = cam.project(means)
    drawn = (info["radii"][0] > 0).all(-1)
    assert drawn.sum() > 10
    assert torch.allclose(info["means2d"][0][drawn], uv[drawn], atol=1e-3)
    assert torch.allclose(info["depths"][0][drawn], z[drawn], atol=1e-4)


def test_views_carry_their_camera(tmp_path):
    from tests.trainers.tiny_run import tiny_config
    from scenes import load_scene

    scene = load_scene(tiny_config(tmp_path / "scene", tmp_path / "run").scene)
    view = scene.train_views[0]
    cam = view.camera
    assert (cam.width, cam.height) == (view.width, view.height) and torch.equal(cam.K, view.K)
    assert torch.allclose(cam.viewmat, torch.linalg.inv(view.camera_to_world), atol=1e-5)
