"""A generated scene, read back through the loader, agrees with the generator and with itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh


def _on_mesh(points: np.ndarray, mesh: trimesh.Trimesh, tol: float = 2e-3) -> np.ndarray:
    """bool [N]: point lies on some triangle (plane distance < tol, barycentric inside)."""
    tri = mesh.triangles  # [F, 3, 3]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = np.cross(b - a, c - a)
    area2 = np.linalg.norm(n, axis=1)
    n = n / area2[:, None]
    out = np.zeros(len(points), bool)
    for i, p in enumerate(points):
        dist = np.abs(((p - a) * n).sum(1))
        cand = dist < tol
        if not cand.any():
            continue
        pa, pb, pc = a[cand] - p, b[cand] - p, c[cand] - p
        nn = n[cand]
        w0 = (np.cross(pb, pc) * nn).sum(1); w1 = (np.cross(pc, pa) * nn).sum(1); w2 = (np.cross(pa, pb) * nn).sum(1)
        eps = -tol * area2[cand]
        out[i] = bool(((w0 >= eps) & (w1 >= eps) & (w2 >= eps)).any())
    return out


def test_cameras_load_back_as_generated(tiny_scene, tiny_generated, tiny_params):
    _, truth = tiny_generated
    assert len(tiny_scene.views) == tiny_params.num_frames * len(tiny_params.cameras)
    for v in tiny_scene.views:
        cam = int(v.cam_name)
        expected = truth.camera_to_world(v.frame_idx, cam)
        assert torch.allclose(v.camera_to_world.double(), torch.tensor(expected), atol=1e-4), (v.frame_idx, cam)
        assert torch.allclose(v.K.double(), torch.tensor(truth.K[cam]), atol=1e-5)
        assert (v.width, v.height) == (tiny_params.width, tiny_params.height)
        assert v.image.shape == (v.height, v.width, 3) and v.image.dtype == torch.float32
        assert 0.0 <= float(v.image.min()) and float(v.image.max()) <= 1.0
    # World = first ego frame: the front camera at frame 0 sits at its mount, looking along +x.
    front0 = next(v for v in tiny_scene.views if v.frame_idx == 0 and v.cam_name == "0")
    assert torch.allclose(front0.camera_to_world[:3, 3], torch.tensor([1.6, 0.0, 1.55]), atol=1e-5)
    assert float(front0.camera_to_world[0, 2]) > 0.99          # optical axis ~ +x
    assert float(front0.camera_to_world[2, 1]) < -0.99         # image down ~ -z
    times = sorted({v.time for v in tiny_scene.views})
    assert times[0] == 0.0 and times[-1] == 1.0


def test_tracks_load_back_as_generated(tiny_scene, tiny_generated, tiny_params):
    _, truth = tiny_generated
    moving = truth.moving_vehicles()
    assert len(moving) == tiny_params.moving_cars
    tracks = {t.id: t for t in tiny_scene.instances}
    assert set(tracks) == {v.id for v in moving}
    for veh in moving:
        track = tracks[veh.id]
        assert track.moving and track.class_name == "Vehicle"
        assert list(track.frame_idx) == list(range(tiny_params.num_frames))
        expected = np.einsum("ij,fjk->fik", truth.first_ego_from_street, veh.poses)
        assert np.allclose(track.obj_to_world.double().numpy(), expected, atol=1e-4)
        assert np.allclose(track.box_size.numpy(), veh.size[None], atol=1e-5)


def test_known_point_projects_to_expected_pixel(tiny_scene, tiny_params):
    v = next(v for v in tiny_scene.views if v.frame_idx == 0 and v.cam_name == "0")
    K = v.K.double().numpy()
    w2c = np.linalg.inv(v.camera_to_world.double().numpy())

    def project(p):
        c = w2c[:3, :3] @ p + w2c[:3, 3]
        return K[0, 0] * c[0] / c[2] + K[0, 2], K[1, 1] * c[1] / c[2] + K[1, 2]

    # 20 m straight ahead at camera height: centre column, above the centre row by f*tan(pitch).
    u, r = project(np.array([1.6 + 20.0, 0.0, 1.55]))
    pitch = np.radians(tiny_params.camera_pitch_deg)
    assert u == pytest.approx(tiny_params.width / 2, abs=1e-3)
    assert r == pytest.approx(tiny_params.height / 2 - K[1, 1] * np.tan(pitch), abs=1e-3)
    # Left of the car (+y) is left in the image (smaller u); up (+z) is up (smaller v).
    assert project(np.array([21.6, 2.0, 1.55]))[0] < u
    assert project(np.array([21.6, 0.0, 3.55]))[1] < r


def test_gt_depth_unprojects_onto_the_gt_mesh(tiny_scene):
    mesh = tiny_scene.load_gt_mesh()
    assert mesh is not None and len(mesh.faces) > 100
    rng = np.random.default_rng(0)
    pts, pix = [], []
    for v in tiny_scene.views[::4]:
        ok = torch.isfinite(v.gt_depth) & ~v.dynamic_mask
        rows, cols = torch.nonzero(ok, as_tuple=True)
        pick = rng.choice(len(rows), 6, replace=False)
        K = v.K.double().numpy(); c2w = v.camera_to_world.double().numpy()
        for k in pick:
            r, c = int(rows[k]), int(cols[k])
            z = float(v.gt_depth[r, c])
            cam = np.array([(c + 0.5 - K[0, 2]) / K[0, 0] * z, (r + 0.5 - K[1, 2]) / K[1, 1] * z, z])
            pts.append(c2w[:3, :3] @ cam + c2w[:3, 3])
    on = _on_mesh(np.array(pts), mesh)
    assert on.all(), f"{(~on).sum()} of {len(on)} unprojected depth samples are off the GT mesh"


def test_lidar_agrees_with_gt_depth(tiny_scene):
    """LiDAR points projected into each camera land where GT depth matches within 1 %."""
    good = total = 0
    for v in tiny_scene.views:
        sel = tiny_scene.lidar.frame_idx == v.frame_idx
        pts = tiny_scene.lidar.points[sel].double().numpy()
        w2c = np.linalg.inv(v.camera_to_world.double().numpy())
        K = v.K.double().numpy()
        cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
        z = cam[:, 2]
        front = z > 0.5
        cam, z = cam[front], z[front]
        u = K[0, 0] * cam[:, 0] / z + K[0, 2]
        r = K[1, 1] * cam[:, 1] / z + K[1, 2]
        # bilinear interpolation of inverse depth between pixel centres: exact on planes
        x, y = u - 0.5, r - 0.5
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < v.width) & (y0 + 1 < v.height)
        x, y, x0, y0, z = x[inside], y[inside], x0[inside], y0[inside], z[inside]
        inv = 1.0 / v.gt_depth.double().numpy()   # 0 for sky
        fx, fy = x - x0, y - y0
        corners = np.stack([inv[y0, x0], inv[y0, x0 + 1], inv[y0 + 1, x0], inv[y0 + 1, x0 + 1]])
        smooth = (corners.min(0) > 0) & (corners.max(0) < corners.min(0) * 1.05)  # one surface
        interp = ((1 - fx) * (1 - fy) * corners[0] + fx * (1 - fy) * corners[1]
                  + (1 - fx) * fy * corners[2] + fx * fy * corners[3])
        gt = 1.0 / np.maximum(interp, 1e-9)
        rel = np.abs(gt - z) / z
        good += int((rel[smooth] < 0.01).sum()); total += int(smooth.sum())
    assert total > 1000
    # Occlusions between the LiDAR's and the camera's viewpoints account for the rest.
    assert good / total > 0.97, f"only {good}/{total} LiDAR points match GT depth within 1 %"


def test_lidar_depth_maps_are_projected_lidar(tiny_scene):
    v = tiny_scene.views[0]
    d = v.lidar_depth
    assert d.shape == (v.height, v.width) and d.dtype == torch.float32
    hit = d > 0
    assert 0.02 < float(hit.float().mean()) < 1.0
    gt = v.gt_depth[hit]
    rel = ((d[hit] - gt).abs() / gt)
    assert float((rel < 0.05).float().mean()) > 0.8   # nearest return per pixel vs pixel-centre depth
    assert not bool((d[v.sky_mask] > 0).any())


def test_vehicle_boxes_contain_their_lidar_points(tiny_scene):
    lid = tiny_scene.lidar
    moves = lid.flow.norm(dim=1) > 0
    assert bool((lid.flow_class[moves] == 1).all())
    per_track = {t.id: 0 for t in tiny_scene.moving_instances}
    for f in sorted(set(lid.frame_idx.tolist())):
        sel = lid.frame_idx == f
        pts = lid.points[sel]
        in_any = torch.zeros(len(pts), dtype=torch.bool)
        for track in tiny_scene.moving_instances:
            inside = track.contains(f, pts, margin=1e-3)
            in_any |= inside
            per_track[track.id] += int(inside.sum())
            # strictly inside a moving box: moving vehicle returns only (the box touches the road)
            interior = track.contains(f, pts, margin=-0.01)
            assert bool((lid.flow_class[sel][interior] == 1).all() and moves[sel][interior].all())
        # every moving return lies in a moving vehicle's box
        assert bool(in_any[moves[sel]].all()), f"frame {f}: moving LiDAR points outside every box"
    assert min(per_track.values()) > 10, f"every moving car should be hit by the LiDAR: {per_track}"


def test_sky_mask_is_exactly_where_gt_depth_is_infinite(tiny_scene):
    for v in tiny_scene.views:
        assert torch.equal(v.sky_mask, torch.isinf(v.gt_depth)), (v.frame_idx, v.cam_name)
    assert any(bool(v.sky_mask.any()) for v in tiny_scene.views)
    assert all(not bool(v.sky_mask.all()) for v in tiny_scene.views)


def test_dynamic_mask_is_where_moving_cars_are_seen(tiny_scene):
    seen = 0
    for v in tiny_scene.views:
        rows, cols = torch.nonzero(v.dynamic_mask, as_tuple=True)
        if len(rows) == 0:
            continue
        seen += len(rows)
        K = v.K.double().numpy(); c2w = v.camera_to_world.double().numpy()
        z = v.gt_depth[rows, cols].double().numpy()
        cam = np.stack([(cols.numpy() + 0.5 - K[0, 2]) / K[0, 0] * z, (rows.numpy() + 0.5 - K[1, 2]) / K[1, 1] * z, z], 1)
        world = torch.tensor(cam @ c2w[:3, :3].T + c2w[:3, 3])
        inside = torch.zeros(len(world), dtype=torch.bool)
        for track in tiny_scene.moving_instances:
            inside |= track.contains(v.frame_idx, world, margin=1e-3)
        assert bool(inside.all()), (v.frame_idx, v.cam_name)
    assert seen > 20


def test_vehicle_meshes_fit_their_boxes(tiny_scene):
    assert set(tiny_scene.gt_vehicle_mesh_paths) == {t.id for t in tiny_scene.moving_instances}
    for track in tiny_scene.moving_instances:
        mesh = trimesh.load(tiny_scene.gt_vehicle_mesh_paths[track.id], process=False)
        half = track.box_size[0].numpy() / 2
        assert np.all(np.abs(mesh.vertices) <= half + 1e-4)
        assert np.allclose(mesh.bounds[1, :2], half[:2], atol=1e-4)   # the body fills length and width
