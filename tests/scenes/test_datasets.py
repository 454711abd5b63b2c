"""Every drivestudio dataset, written as its preprocessor writes it, loads with the right meaning."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from scipy.ndimage import minimum_filter

from scenes import SceneFormatError, load_scene
from scenes.geometry import rigid_inverse
from scenes.sources import RIGID, SMPL, available, detect_format, get_format

from .drivestudio_fixtures import CLASSES, DATASETS, write_fixture


def _cfg(truth, **extra):
    cfg = dict(type="processed", path=str(truth.root), test_every=0, max_init_points=2000)
    if truth.dataset == "nuplan":
        cfg["undistort"] = True     # nuPlan stores real coefficients; drivestudio's default leaves them unused
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module", params=DATASETS)
def written(request, tmp_path_factory):
    truth = write_fixture(request.param, tmp_path_factory.mktemp(request.param) / "000")
    return truth, load_scene(_cfg(truth))


def test_registry_has_the_six_datasets():
    assert set(available()) == set(DATASETS)
    assert get_format("argoverse").name == "argoverse2" and get_format("AV2").name == "argoverse2"
    with pytest.raises(SceneFormatError, match="scene.dataset"):
        get_format("lyft")


@pytest.mark.parametrize("dataset", DATASETS)
def test_each_dataset_is_detected_and_logged(dataset, tmp_path, caplog):
    truth = write_fixture(dataset, tmp_path / "s", num_frames=2, width=24, height=16)
    name, why = detect_format(truth.root)
    assert name == dataset, why
    with caplog.at_level(logging.INFO, logger="scenes"):
        scene = load_scene(_cfg(truth))
    assert scene.dataset == dataset
    assert any(f"detected {dataset}" in r.getMessage() for r in caplog.records)
    assert [v.cam_name for v in scene.views[:len(truth.cameras)]] == truth.cameras   # every camera written


def test_cameras_agree_with_each_other_and_the_world_is_z_up(written):
    """One rigid transform takes the loaded world to the street for every view, and it keeps z up."""
    truth, scene = written
    assert len(scene.views) == truth.num_frames * len(truth.cameras)
    align = None
    for v in scene.views:
        a = truth.camera_to_street[(v.frame_idx, v.cam_name)] @ rigid_inverse(v.camera_to_world.double().numpy())
        if align is None:
            align = a
        np.testing.assert_allclose(a, align, atol=2e-4)
    np.testing.assert_allclose(align[:3, 2], [0, 0, 1], atol=0.05)   # world z is the street's up
    # and world x is the forward of the files' ego at the first frame (the street's +x here); PandaSet's
    # ego_pose is its LiDAR's pose, whose frame the fixture mounts turned by 90 degrees.
    forward = np.array([0, 1.0, 0]) if truth.dataset == "pandaset" else np.array([1.0, 0, 0])
    assert align[:3, 0] @ forward > 0.99


def test_a_lidar_point_projects_to_the_pixel_where_the_scene_put_it(written):
    truth, scene = written
    pts = scene.lidar.points.double().numpy()
    fidx = scene.lidar.frame_idx.numpy()
    good = in_front = total = 0
    for v in scene.views:
        w2c = np.linalg.inv(v.camera_to_world.double().numpy())
        cam = pts[fidx == v.frame_idx] @ w2c[:3, :3].T + w2c[:3, 3]
        z = cam[:, 2]
        front = z > 0.5
        u = v.K[0, 0].item() * cam[front, 0] / z[front] + v.K[0, 2].item()
        r = v.K[1, 1].item() * cam[front, 1] / z[front] + v.K[1, 2].item()
        inside = (u >= 1) & (u < v.width - 1) & (r >= 1) & (r < v.height - 1)
        full = truth.depth[(v.frame_idx, v.cam_name)]
        rows, cols = r[inside].astype(int), u[inside].astype(int)
        depth = full[rows, cols]
        nearest = minimum_filter(full, size=3, mode="nearest")[rows, cols]   # silhouettes are a pixel wide
        zz = z[front][inside]
        tol = 0.05 * zz + 0.1
        good += int((np.abs(depth - zz) < tol).sum())
        in_front += int((zz < nearest - tol).sum())
        total += len(zz)
    assert total > 200
    # A LiDAR return lies on a surface, so no camera can see past it: it is never in front of what
    # the camera sees at its pixel (but may be hidden behind it, seen only by the LiDAR).
    assert in_front / total < 0.03, (in_front, total)
    assert good / total > 0.6, (good, total)


def test_a_box_at_frame_k_holds_its_points(written):
    truth, scene = written
    info = json.loads((truth.root / "instances" / "instances_info.json").read_text())
    by_id = {t.id: t for t in scene.instances}
    fidx = scene.lidar.frame_idx.numpy()
    held = 0
    for t, per_instance in truth.instance_points.items():
        frame_points = scene.lidar.points[torch.from_numpy(np.nonzero(fidx == t)[0])]
        for key, rows in per_instance.items():
            track = by_id[str(info[str(key)]["id"])]
            if len(rows):
                assert bool(track.contains(t, frame_points[torch.from_numpy(rows)], margin=0.02).all())
                held += len(rows)
            others = [by_id[str(info[str(k)]["id"])] for k in per_instance if k != key]
            for o in others:   # and not the other car's box
                assert not bool(o.contains(t, frame_points[torch.from_numpy(rows)]).any())
    assert held > 20


def test_masks_and_images_land_on_the_right_pixels(written):
    truth, scene = written
    for v in scene.views:
        key = (v.frame_idx, v.cam_name)
        inner = np.zeros((truth.height, truth.width), bool)
        inner[3:-3, 3:-3] = True           # the lens leaves a dark rim that undistortion cannot refill
        dyn = v.dynamic_mask.numpy()
        sky = v.sky_mask.numpy()
        assert (dyn[inner] != truth.box_masks[key][inner]).mean() < 0.04
        assert (sky[inner] != truth.sky[key][inner]).mean() < 0.04
        err = np.abs(v.image.numpy() - truth.image[key])[inner].mean()
        assert err < 0.06, (key, err)
    assert any(v.dynamic_mask.any() for v in scene.views)


def test_class_map_covers_every_dataset_vehicle(written):
    truth, scene = written
    car_a, car_b, person = CLASSES[truth.dataset]
    nodes = {t.class_name: t.node_type for t in scene.instances}
    assert nodes[car_a] == RIGID and nodes[car_b] == RIGID and nodes[person] == SMPL
    assert car_a in get_format(truth.dataset).rigid_classes()


def test_class_map_is_configurable(tmp_path):
    truth = write_fixture("nuscenes", tmp_path / "s", num_frames=2, width=24, height=16)
    scene = load_scene(_cfg(truth, class_map={"vehicle.truck": None, "human.pedestrian.adult": "RigidNodes"}))
    nodes = {t.class_name: t.node_type for t in scene.instances}
    assert nodes == {"vehicle.car": RIGID, "vehicle.truck": None, "human.pedestrian.adult": RIGID}
    with pytest.raises(SceneFormatError, match="class_map.*RigidNodes"):
        load_scene(_cfg(truth, class_map={"vehicle.car": "Rigid"}))


def test_fine_dynamic_masks_are_preferred(tmp_path, caplog):
    truth = write_fixture("argoverse2", tmp_path / "s", num_frames=2, width=32, height=24, fine_masks=True)
    with caplog.at_level(logging.INFO, logger="scenes"):
        scene = load_scene(_cfg(truth))
    assert any("fine_dynamic_masks" in r.getMessage() for r in caplog.records)
    for v in scene.views:
        key = (v.frame_idx, v.cam_name)
        np.testing.assert_array_equal(v.dynamic_mask.numpy(), truth.dynamic[key])
    assert sum(int((truth.box_masks[k] != truth.dynamic[k]).sum()) for k in truth.dynamic) > 0


def test_empty_mask_folder_is_absent_with_one_warning(tmp_path, caplog):
    truth = write_fixture("kitti", tmp_path / "s", num_frames=2, width=24, height=16, sky_masks=False)
    shutil.rmtree(truth.root / "dynamic_masks" / "all")
    (truth.root / "dynamic_masks" / "all").mkdir()
    with caplog.at_level(logging.WARNING, logger="scenes"):
        scene = load_scene(_cfg(truth))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "sky_masks" in warnings[0] and "dynamic_masks" in warnings[0]
    assert not any(v.sky_mask.any() or v.dynamic_mask.any() for v in scene.views)


def test_a_partly_filled_mask_folder_is_still_an_error(tmp_path):
    truth = write_fixture("kitti", tmp_path / "s", num_frames=2, width=24, height=16)
    (truth.root / "sky_masks" / "001_1.png").unlink()
    with pytest.raises(SceneFormatError, match="sky_masks.*001_1"):
        load_scene(_cfg(truth))


@pytest.mark.parametrize("dataset,columns", [("nuscenes", 4), ("pandaset", 5), ("argoverse2", 4), ("kitti", 4),
                                             ("nuplan", 6), ("waymo", 14)])
def test_lidar_of_the_wrong_size_names_file_columns_and_size(dataset, columns, tmp_path):
    truth = write_fixture(dataset, tmp_path / "s", num_frames=2, width=24, height=16)
    path = truth.root / "lidar" / "001.bin"
    path.write_bytes(path.read_bytes()[:-4])
    size = path.stat().st_size
    with pytest.raises(SceneFormatError) as err:
        load_scene(_cfg(truth))
    msg = str(err.value)
    assert str(path) in msg and f"N x {columns}" in msg and f"{size} bytes" in msg and dataset in msg


def test_argoverse_lidar_read_as_waymo_is_an_error_not_garbage(tmp_path):
    """Argoverse rows trimmed to a count whose bytes also fit 14 columns: forcing Waymo must fail."""
    truth = write_fixture("argoverse2", tmp_path / "s", num_frames=2, width=24, height=16)
    for t in range(2):
        path = truth.root / "lidar" / f"{t:03d}.bin"
        rows = np.fromfile(path, np.float32).reshape(-1, 4)
        rows[: len(rows) // 7 * 7].tofile(path)
    with pytest.raises(SceneFormatError, match="001.bin|000.bin.*origins"):
        load_scene(_cfg(truth, dataset="waymo", cameras=[0, 1, 2, 3, 4]))


def test_per_frame_extrinsics_are_not_cameras(tmp_path):
    """nuScenes' extrinsics/000_0.txt read as a per-camera dataset is one clear error, not camera '000_0'."""
    truth = write_fixture("pandaset", tmp_path / "s", num_frames=2, width=24, height=16)
    with pytest.raises(SceneFormatError, match="000_0.txt.*per-frame"):
        load_scene(_cfg(truth, dataset="argoverse2"))


def test_undistortion_follows_the_setting(tmp_path, caplog):
    truth = write_fixture("waymo", tmp_path / "s", num_frames=2, width=48, height=32)
    on = load_scene(_cfg(truth))                         # Waymo: drivestudio undistorts by default
    with caplog.at_level(logging.WARNING, logger="scenes"):
        off = load_scene(_cfg(truth, undistort=False))
    assert any("distortion coefficients" in r.getMessage() for r in caplog.records)
    inner = (slice(3, -3), slice(3, -3))
    wrong_on = wrong_off = 0
    for a, b in zip(on.views, off.views):
        want = truth.sky[(a.frame_idx, a.cam_name)][inner]
        wrong_on += int((a.sky_mask.numpy()[inner] != want).sum())
        wrong_off += int((b.sky_mask.numpy()[inner] != want).sum())
    assert wrong_on * 3 < wrong_off, (wrong_on, wrong_off)    # the sky's edge is back where the pinhole puts it


def test_undistortion_inverts_the_lens_model():
    from scenes.undistort import distort_normalized, undistort_normalized
    x, y = np.meshgrid(np.linspace(-0.6, 0.6, 7), np.linspace(-0.4, 0.4, 5))
    dist = [-0.09, 0.02, -0.0006, 0.0009, -0.002]
    xd, yd = distort_normalized(x, y, dist)
    assert np.abs(xd - x).max() > 0.01
    xu, yu = undistort_normalized(xd, yd, dist)
    np.testing.assert_allclose(xu, x, atol=1e-9)
    np.testing.assert_allclose(yu, y, atol=1e-9)


def test_ambiguous_folder_asks_for_the_dataset(tmp_path):
    truth = write_fixture("argoverse2", tmp_path / "s", num_frames=2, width=24, height=16)
    for c in ("5", "6"):
        (truth.root / "extrinsics" / f"{c}.txt").unlink()
    with pytest.raises(SceneFormatError, match="scene.dataset"):
        detect_format(truth.root)
    scene = load_scene(_cfg(truth, dataset="argoverse2", cameras=[0, 1, 2, 3, 4]))
    assert scene.dataset == "argoverse2"


def test_synthetic_scene_is_what_drivestudio_reads(tiny_generated):
    """drivestudio's load_objects: int(key) indexes instances; frame lists index a numpy array."""
    root, _ = tiny_generated
    info = json.loads((root / "instances" / "instances_info.json").read_text())
    frames = json.loads((root / "instances" / "frame_instances.json").read_text())
    assert sorted(int(k) for k in info) == list(range(len(info)))
    mask = np.zeros((len(frames), len(info)))
    for frame_idx, ids in frames.items():
        assert all(type(i) is int for i in ids)
        mask[int(frame_idx), ids] = 1              # raises IndexError for string ids
    assert mask.sum() > 0
    assert all(get_format("waymo").class_nodes[r["class_name"]] == RIGID for r in info.values())
    for sub in ("all", "human", "vehicle"):
        assert len(list((root / "dynamic_masks" / sub).glob("*.png"))) == len(list((root / "images").iterdir()))
    assert detect_format(root)[0] == "waymo"
