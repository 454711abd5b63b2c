"""Loader features: split, downscale, init points, scene bounds; prepare_scene caching; Hydra configs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from scenes import SceneFormatError, load_scene, prepare_scene
from scenes.config import load_options, synthetic_params
from scenes.synthetic import COMPLETE_MARKER

REPO = Path(__file__).resolve().parents[2]


def test_train_test_split_by_frame_stride(tiny_scene, tiny_params):
    test_frames = sorted({v.frame_idx for v in tiny_scene.test_views})
    assert test_frames == [1, 4]                       # test_every 3: frames 1, 4 of 0..5
    assert not {v.frame_idx for v in tiny_scene.train_views} & set(test_frames)
    assert len(tiny_scene.train_views) + len(tiny_scene.test_views) == len(tiny_scene.views)
    assert {v.cam_name for v in tiny_scene.test_views} == {"0", "1", "2"}


def test_downscale_scales_images_intrinsics_and_masks(tiny_cfg, tiny_scene):
    half = load_scene({**tiny_cfg, "downscale": 2, "test_every": 0})
    assert not half.test_views
    for full, small in zip(tiny_scene.views, half.views):
        assert (small.width, small.height) == (full.width // 2, full.height // 2)
        assert torch.allclose(small.K[:2], full.K[:2] / 2)
        assert torch.allclose(small.camera_to_world, full.camera_to_world)
        assert small.image.shape == (full.height // 2, full.width // 2, 3)
        assert small.sky_mask.shape == small.lidar_depth.shape == small.gt_depth.shape
        assert torch.equal(small.sky_mask, torch.isinf(small.gt_depth)) or \
            float((small.sky_mask != torch.isinf(small.gt_depth)).float().mean()) < 0.05
        # a box-filtered image: the mean colour is kept
        assert torch.allclose(small.image.mean((0, 1)), full.image.mean((0, 1)), atol=0.01)


def test_views_are_held_compactly_and_give_the_files_values(tiny_scene):
    """uint8 pixels, the LiDAR depth as its filled pixels, the ground-truth depth as its file: the
    float maps made on demand are the images' bytes / 255, the projected returns and the .npy."""
    from PIL import Image

    from scenes.driving_dataset import project_depth
    from scenes.geometry import rigid_inverse
    v = tiny_scene.views[4]
    assert v.pixels.dtype == torch.uint8 and v.gt_depth_file is not None
    stored = np.asarray(Image.open(v.image_path).convert("RGB"))
    assert torch.equal(v.image, torch.from_numpy(stored.astype(np.float32) / 255.0))
    assert torch.equal(v.gt_depth, torch.from_numpy(np.load(v.gt_depth_file.path).astype(np.float32)))
    pts = tiny_scene.lidar.points[tiny_scene.lidar.frame_idx == v.frame_idx].double().numpy()
    dense = v.lidar_depth
    assert dense.shape == (v.height, v.width) and 0 < int((dense > 0).sum()) == len(v.lidar.index)
    assert torch.allclose(dense, torch.from_numpy(project_depth(
        pts, v.K.double().numpy(), rigid_inverse(v.camera_to_world.double().numpy()), v.width, v.height)),
        atol=1e-4)   # the kept points are float32; the load projected the float64 ones
    moved = v.on("cpu")
    assert moved is not v and torch.equal(moved.image, v.image) and torch.equal(moved.lidar_depth, dense)


def test_frame_range_reindexes_world_and_time(tiny_cfg, tiny_scene):
    part = load_scene({**tiny_cfg, "start_frame": 2, "end_frame": 5, "test_every": 0})
    assert sorted({v.frame_idx for v in part.views}) == [2, 3, 4]
    assert sorted({v.time for v in part.views}) == [0.0, 0.5, 1.0]
    # world = ego frame of frame 2: the front camera there is at its mount
    v = next(v for v in part.views if v.frame_idx == 2 and v.cam_name == "0")
    assert torch.allclose(v.camera_to_world[:3, 3], torch.tensor([1.6, 0.0, 1.55]), atol=1e-4)
    assert set(part.lidar.frame_idx.tolist()) == {2, 3, 4}
    mesh = part.load_gt_mesh()
    full_mesh = tiny_scene.load_gt_mesh()
    shift = part.gt_mesh_to_world[:3, 3] - tiny_scene.gt_mesh_to_world[:3, 3]
    assert np.allclose(mesh.vertices - full_mesh.vertices, shift.numpy(), atol=1e-3)


def test_init_points_are_static_coloured_and_capped(tiny_scene):
    xyz, rgb = tiny_scene.init_points()
    assert xyz.dtype == rgb.dtype == torch.float32 and xyz.shape == rgb.shape and xyz.shape[1] == 3
    assert len(xyz) == 5000                            # max_init_points in tiny_cfg
    assert float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    assert len(tiny_scene.init_points(max_points=100)[0]) == 100
    # none inside a moving car's box at any frame
    for track in tiny_scene.moving_instances:
        for f in track.frame_idx:
            assert not bool(track.contains(int(f), xyz, margin=-0.05).any())
    # deterministic
    assert torch.equal(tiny_scene.init_points()[0], xyz)


def test_init_point_colours_come_from_the_images(tiny_scene):
    xyz, rgb = tiny_scene.init_points(max_points=10**9)
    v = tiny_scene.train_views[0]
    w2c = torch.linalg.inv(v.camera_to_world)
    cam = xyz @ w2c[:3, :3].T + w2c[:3, 3]
    u = (v.K[0, 0] * cam[:, 0] / cam[:, 2] + v.K[0, 2]).floor().long()
    r = (v.K[1, 1] * cam[:, 1] / cam[:, 2] + v.K[1, 2]).floor().long()
    ok = (cam[:, 2] > 0) & (u >= 0) & (u < v.width) & (r >= 0) & (r < v.height)
    ok &= (cam[:, 2] - v.lidar_depth[r.clamp(0, v.height - 1), u.clamp(0, v.width - 1)]).abs() < 1e-3
    assert int(ok.sum()) > 50
    # points seen nearest in this view have a colour of the image (from this or another train view)
    diff = (rgb[ok] - v.image[r[ok], u[ok]]).abs().max(dim=1).values
    assert float((diff < 1e-6).float().mean()) > 0.5


def test_scene_center_and_radius(tiny_scene):
    pos = torch.stack([v.camera_to_world[:3, 3] for v in tiny_scene.views])
    assert torch.allclose(tiny_scene.scene_center, pos.mean(0))
    far = float((pos - tiny_scene.scene_center).norm(dim=1).max())
    assert tiny_scene.scene_radius == pytest.approx(max(1.1 * far, 1.0), rel=1e-5)
    lo, hi = tiny_scene.aabb()
    assert bool((lo < hi).all())


def test_prepare_scene_generates_once_and_regenerates_incomplete(tmp_path):
    cfg = dict(type="synthetic", path=str(tmp_path / "s"), seed=1, num_frames=2, cameras=[0], width=32,
               height=24, moving_cars=1, parked_cars=1, trees=1, poles=1, lidar_beams=8, lidar_azimuths=90)
    root = prepare_scene(cfg)
    assert root == tmp_path / "s" and (root / COMPLETE_MARKER).is_file()
    stamp = (root / "images" / "000_0.png").stat().st_mtime_ns
    assert prepare_scene(cfg) == root
    assert (root / "images" / "000_0.png").stat().st_mtime_ns == stamp      # not regenerated
    (root / COMPLETE_MARKER).unlink()                                       # as if interrupted
    (root / "images" / "001_0.png").unlink()
    prepare_scene(cfg)
    assert (root / COMPLETE_MARKER).is_file() and (root / "images" / "001_0.png").is_file()
    # changed generator parameters: regenerated in place
    prepare_scene({**cfg, "seed": 2})
    assert json.loads((root / COMPLETE_MARKER).read_text())["digest"] == synthetic_params({**cfg, "seed": 2}).digest()
    scene = load_scene(cfg)
    assert len(scene.views) == 2 and scene.gt_mesh_path is not None


def test_prepare_scene_refuses_to_overwrite_foreign_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(SceneFormatError, match="mine"):
        prepare_scene(dict(type="synthetic", path=str(tmp_path / "mine"), num_frames=1, cameras=[0],
                           width=16, height=16))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_default_cache_path_depends_on_generator_params():
    from scenes.config import synthetic_path
    a = synthetic_path(synthetic_params({"seed": 0}))
    b = synthetic_path(synthetic_params({"seed": 0, "width": 200}))
    c = synthetic_path(synthetic_params({"seed": 0, "downscale": 2}))   # loader keys do not change the data
    assert a.parent == REPO / "data" and a.name.startswith("synthetic_0_")
    assert a != b and a == c


def test_generation_is_deterministic(tmp_path, tiny_params):
    from scenes import SyntheticParams, generate
    p = SyntheticParams(seed=5, num_frames=2, cameras=[0], width=24, height=16, lidar_beams=4, lidar_azimuths=60)
    generate(p, tmp_path / "a"); generate(p, tmp_path / "b")
    generate(SyntheticParams(**{**p.__dict__, "seed": 6}), tmp_path / "c")
    for rel in ("images/001_0.png", "lidar/001.bin", "ego_pose/001.txt", "gt/static_mesh.ply"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a" / "images/001_0.png").read_bytes() != (tmp_path / "c" / "images/001_0.png").read_bytes()


def test_hydra_scene_group_composes():
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        syn = compose(config_name=None, overrides=["+scene=synthetic"]).scene
        proc = compose(config_name=None, overrides=["+scene=processed", "scene.path=/nowhere"]).scene
        unset = compose(config_name=None, overrides=["+scene=processed"]).scene
    assert syn.type == "synthetic" and list(syn.cameras) == [0, 1, 2]
    assert (syn.width, syn.height) == (160, 96) and 20 <= syn.num_frames <= 30 and syn.moving_cars == 1
    opts = load_options(syn)
    assert opts.cameras == ["0", "1", "2"] and opts.test_every == syn.test_every
    synthetic_params(syn)  # every generator key is known
    assert proc.type == "processed"
    with pytest.raises(SceneFormatError, match="nowhere"):
        prepare_scene(proc)
    with pytest.raises(SceneFormatError, match="scene.path"):
        prepare_scene(unset)


def test_unknown_config_keys_are_named():
    with pytest.raises(SceneFormatError, match="num_frame"):
        prepare_scene({"type": "synthetic", "num_frame": 3})
    with pytest.raises(SceneFormatError, match="scene.type"):
        prepare_scene({"type": "waymo"})
