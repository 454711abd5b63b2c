import numpy as np
import pytest
import trimesh

from models.mesh.metrics import load_mesh, visible_region_filter
from models.mesh.run_io import point_to_mesh_metrics
from tests.mesh.helpers import intrinsics, pose, rectangle, rot_x

N = 20_000


def _wall_camera():
    """A camera at the origin looking along +z at a wall 2 m away (GT depth 2 everywhere)."""
    W, H = 64, 48
    return (intrinsics(50.0, W, H), pose(), W, H, np.full((H, W), 2.0))


def _wall(z=2.0):
    return rectangle(-1.6, 1.6, -1.2, 1.2, z)  # wider than the view (|x| < 1.28, |y| < 0.96 at 2 m)


def test_mesh_against_itself_scores_perfectly():
    m = point_to_mesh_metrics(_wall(), _wall(), [_wall_camera()], n_points=N)
    assert m["chamfer"] < 1e-6  # exact point-to-mesh distances: only float32 rounding
    assert m["fscore"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert m["normal_consistency"] == pytest.approx(1.0, abs=1e-6)
    assert m["tau"] == 0.05
    assert all(isinstance(v, float) for v in m.values())


def test_shifted_plane_chamfer_equals_shift_and_fscore_follows_tau():
    # 3 cm behind the wall: inside the far limit (GT depth 2 m + tau)
    m = point_to_mesh_metrics(_wall(2.03), _wall(), [_wall_camera()], n_points=N, tau=0.05, extra_taus=(0.02,))
    assert m["accuracy"] == pytest.approx(0.03, abs=1e-5)
    assert m["completeness"] == pytest.approx(0.03, abs=1e-5)
    assert m["chamfer"] == pytest.approx(0.03, abs=1e-5)
    assert m["fscore"] == 1.0
    assert m["at_tau"]["0.02"]["fscore"] == 0.0


def test_normal_consistency_of_a_rotated_plane_is_cos_of_the_angle():
    pred = _wall(0.0)
    pred.apply_transform(pose(rot_x(60), position=(0.0, 0.0, 2.0)))  # tilted 60 degrees about the wall's x axis
    m = point_to_mesh_metrics(pred, _wall(), [_wall_camera()], n_points=N)
    assert m["n_pred"] > 0
    assert m["normal_consistency"] == pytest.approx(0.5, abs=1e-6)
    flipped = _wall()
    flipped.invert()  # orientation does not matter: |cos|
    m = point_to_mesh_metrics(flipped, _wall(), [_wall_camera()], n_points=N)
    assert m["normal_consistency"] == pytest.approx(1.0, abs=1e-6)


def _camera(depth_value=None):
    W, H = 64, 48
    depth = None if depth_value is None else np.full((H, W), depth_value)
    return (intrinsics(50.0, W, H), pose(), W, H, depth)


def test_visible_region_filter_keeps_points_in_front_and_drops_behind_or_outside():
    pts = np.array([[0, 0, 2.0], [0, 0, -2.0], [100, 0, 2.0], [0.5, 0.3, 1.0], [0, 0, 0.0]])
    for mode in ("gt", "pred"):
        keep = visible_region_filter(pts, [_camera()], mode=mode)
        assert keep.tolist() == [True, False, False, True, False]


def test_visible_region_filter_depth_rules():
    pts = np.array([[0, 0, 1.0], [0, 0, 1.04], [0, 0, 3.0]])
    # GT: occluded when farther than the depth map (1 m) + tolerance.
    keep_gt = visible_region_filter(pts, [_camera(1.0)], mode="gt", depth_tolerance=0.05, depth_rel_tolerance=0.0)
    assert keep_gt.tolist() == [True, True, False]
    # Pred: not occlusion tested, but nothing beyond the farthest GT depth + far_margin.
    keep_pred = visible_region_filter(pts, [_camera(1.0)], mode="pred", far_margin=0.01)
    assert keep_pred.tolist() == [True, False, False]
    keep_pred = visible_region_filter(pts, [_camera(np.inf)], mode="pred")
    assert keep_pred.tolist() == [False, False, False]  # no valid GT depth: no far limit to trust
    # A second camera that sees the far point rescues it.
    far_cam = (intrinsics(50.0, 64, 48), pose(position=(0, 0, 2.0)), 64, 48, np.full((48, 64), 1.5))
    keep_gt = visible_region_filter(pts, [_camera(1.0), far_cam], mode="gt")
    assert keep_gt.tolist() == [True, True, True]


def test_camera_region_ignores_unseen_gt_and_far_junk_but_not_near_junk():
    front = _wall()
    hidden = rectangle(-1, 1, -1, 1, 4.0)  # entirely behind the front wall
    gt = trimesh.util.concatenate([front, hidden])
    cams = [_wall_camera()]
    pred = _wall()

    seen = point_to_mesh_metrics(pred, gt, cams, n_points=N)
    assert seen["recall"] == 1.0 and seen["precision"] == 1.0  # the hidden wall does not count as missing
    assert seen["n_gt"] < 0.8 * N  # GT outside the image and the hidden wall were not scored

    far_junk = rectangle(-0.5, 0.5, -0.5, 0.5, 10.0)  # inside the view cone, beyond the far limit
    outside_junk = rectangle(20, 21, -0.5, 0.5, 2.0)  # outside the frustum
    m = point_to_mesh_metrics(trimesh.util.concatenate([pred, far_junk, outside_junk]), gt, cams, n_points=N)
    assert m["precision"] == 1.0

    near_junk = rectangle(-0.5, 0.5, -0.5, 0.5, 1.0)  # floating in front of the wall, in view
    m = point_to_mesh_metrics(trimesh.util.concatenate([pred, near_junk]), gt, cams, n_points=N)
    assert m["precision"] < 0.95 and m["accuracy"] > seen["accuracy"] + 0.02


def test_bad_mesh_files_raise_a_clear_error(tmp_path):
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"this is not a ply file\x00\x01\x02")
    with pytest.raises(ValueError, match="garbage.ply"):
        point_to_mesh_metrics(garbage, _wall(), [_wall_camera()])

    missing = tmp_path / "missing.obj"
    with pytest.raises(ValueError, match="missing.obj"):
        load_mesh(missing)

    cloud = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((10, 3))).export(cloud)
    with pytest.raises(ValueError, match="cloud.ply.*no faces"):
        load_mesh(str(cloud))

    with pytest.raises(ValueError, match="no faces"):
        load_mesh(trimesh.Trimesh(vertices=np.zeros((3, 3)), faces=np.zeros((0, 3), int)))


def test_path_input_gives_the_same_numbers(tmp_path):
    pred = rectangle(-1, 1, -0.8, 0.8, 2.03)  # all in view, away from the image border
    path = tmp_path / "pred.ply"
    pred.export(path)
    from_file = point_to_mesh_metrics(path, _wall(), [_wall_camera()], n_points=5000)
    in_memory = point_to_mesh_metrics(pred, _wall(), [_wall_camera()], n_points=5000)
    assert from_file.keys() == in_memory.keys()
    for key in in_memory:  # PLY stores float32 vertices
        assert from_file[key] == pytest.approx(in_memory[key], abs=1e-6)
