"""Broken scene folders fail when the scene is opened, with one error naming the file and the expectation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from scenes import SceneFormatError, load_scene, prepare_scene


def _open(root, **extra):
    cfg = dict(type="processed", path=str(root), cameras=[0, 1, 2], **extra)
    return load_scene(cfg)


def _fails(root, *fragments, **extra):
    with pytest.raises(SceneFormatError) as err:
        _open(root, **extra)
    msg = str(err.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in: {msg}"
    return msg


def test_intact_copy_opens(scene_copy):
    scene = _open(scene_copy)
    assert len(scene.views) == 18


def test_missing_scene_folder(tmp_path):
    _fails(tmp_path / "no_such_scene", "no_such_scene", "no such directory")


@pytest.mark.parametrize("folder", ["images", "ego_pose", "extrinsics", "intrinsics", "lidar"])
def test_missing_required_folder(scene_copy, folder):
    import shutil
    shutil.rmtree(scene_copy / folder)
    _fails(scene_copy, str(scene_copy / folder), "missing")


def test_missing_image(scene_copy):
    (scene_copy / "images" / "003_1.png").unlink()
    _fails(scene_copy, "images", "003_1", "camera 1")


def test_missing_camera_files(scene_copy):
    (scene_copy / "intrinsics" / "2.txt").unlink()
    _fails(scene_copy, "intrinsics/2.txt", "no such file")


def test_frame_counts_disagree(scene_copy):
    (scene_copy / "lidar" / "005.bin").unlink()
    _fails(scene_copy, "lidar", "6 LiDAR files", "005.bin")


def test_extra_pose_frame_makes_other_folders_short(scene_copy):
    (scene_copy / "ego_pose" / "006.txt").write_text((scene_copy / "ego_pose" / "005.txt").read_text())
    _fails(scene_copy, "images", "7 images", "006_0")


def test_missing_sky_mask(scene_copy):
    (scene_copy / "sky_masks" / "002_2.png").unlink()
    _fails(scene_copy, "sky_masks", "002_2")


def test_gap_in_ego_poses(scene_copy):
    (scene_copy / "ego_pose" / "002.txt").unlink()
    _fails(scene_copy, "ego_pose", "002.txt")


def test_unreadable_image(scene_copy):
    (scene_copy / "images" / "004_0.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really an image")
    _fails(scene_copy, "images/004_0.png", "readable")


def test_truncated_image(scene_copy):
    path = scene_copy / "images" / "001_2.png"
    path.write_bytes(path.read_bytes()[:200])
    _fails(scene_copy, "images/001_2.png")


def test_mask_of_wrong_size(scene_copy):
    from PIL import Image
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(scene_copy / "dynamic_masks" / "all" / "000_1.png")
    _fails(scene_copy, "dynamic_masks/all/000_1.png", "64x40", "10x10")


def test_malformed_instances_json(scene_copy):
    path = scene_copy / "instances" / "instances_info.json"
    path.write_text(path.read_text()[:-20])
    _fails(scene_copy, "instances_info.json", "valid JSON")


def test_malformed_frame_instances_json(scene_copy):
    (scene_copy / "instances" / "frame_instances.json").write_text("{'0': [}")
    _fails(scene_copy, "frame_instances.json", "valid JSON")


def test_instance_record_with_wrong_matrix_shape(scene_copy):
    path = scene_copy / "instances" / "instances_info.json"
    info = json.loads(path.read_text())
    key = next(iter(info))
    info[key]["frame_annotations"]["obj_to_world"][2] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    path.write_text(json.dumps(info))
    _fails(scene_copy, "instances_info.json", f"instance {key}", "obj_to_world")


def test_instance_record_missing_keys(scene_copy):
    path = scene_copy / "instances" / "instances_info.json"
    info = json.loads(path.read_text())
    key = next(iter(info))
    del info[key]["frame_annotations"]["box_size"]
    path.write_text(json.dumps(info))
    _fails(scene_copy, "instances_info.json", "box_size")


def test_extrinsics_of_wrong_shape(scene_copy):
    np.savetxt(scene_copy / "extrinsics" / "1.txt", np.eye(4)[:3])
    _fails(scene_copy, "extrinsics/1.txt", "4x4", "3x4")


def test_ego_pose_not_rigid(scene_copy):
    m = np.eye(4); m[0, 0] = 3.0
    np.savetxt(scene_copy / "ego_pose" / "003.txt", m)
    _fails(scene_copy, "ego_pose/003.txt", "rigid")


def test_ego_pose_with_text(scene_copy):
    (scene_copy / "ego_pose" / "001.txt").write_text("1 0 0 0\n0 1 0 0\nzero 0 1 0\n0 0 0 1\n")
    _fails(scene_copy, "ego_pose/001.txt", "4x4")


def test_intrinsics_with_too_few_values(scene_copy):
    np.savetxt(scene_copy / "intrinsics" / "0.txt", np.array([100.0, 100.0, 32.0, 20.0]))
    _fails(scene_copy, "intrinsics/0.txt", "9 numbers", "found 4")


def test_lidar_file_of_wrong_size(scene_copy):
    path = scene_copy / "lidar" / "003.bin"
    path.write_bytes(path.read_bytes()[:-4])
    _fails(scene_copy, "lidar/003.bin", "multiple of 56")


def test_bad_frame_range_and_split(scene_copy):
    _fails(scene_copy, "end_frame", end_frame=9)
    _fails(scene_copy, "test_every", test_every=1)


def test_prepare_scene_validates_processed_folders(scene_copy):
    (scene_copy / "images" / "000_0.png").unlink()
    with pytest.raises(SceneFormatError, match="000_0"):
        prepare_scene(dict(type="processed", path=str(scene_copy)))


def test_optional_folders_may_be_absent(scene_copy):
    import shutil
    for d in ("sky_masks", "dynamic_masks", "instances", "gt"):
        shutil.rmtree(scene_copy / d)
    scene = _open(scene_copy)
    v = scene.views[0]
    assert v.gt_depth is None and not bool(v.sky_mask.any()) and not bool(v.dynamic_mask.any())
    assert scene.instances == [] and scene.gt_mesh_path is None
    assert len(scene.init_points()[0]) > 0
