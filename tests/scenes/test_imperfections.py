"""Camera imperfections of the synthetic street (pose noise and drift, exposure, white balance,
vignetting): off by default without changing a byte, recorded in gt/imperfections.json, and read
back by scenes/imperfections.py as the truth that pose refinement and appearance are measured against."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from scenes import (DrivingScene, LoadOptions, SceneFormatError, SyntheticParams, generate, load_imperfections,
                    true_camera_to_world, true_camera_to_world_np, true_exposure, true_vignetting)
from scenes.config import synthetic_params
from scenes.geometry import OPENCV_TO_DATASET, rigid_inverse
from scenes.camera_imperfections import IMPERFECTION_KEYS, IMPERFECTIONS_FILE, draw_imperfections
from scenes.synthetic import CAMERA_MOUNTS

# Small enough to generate four times in about two seconds.
SMALL = dict(seed=5, num_frames=4, cameras=[0, 1], width=32, height=24, supersample=1, lidar_beams=4,
             lidar_azimuths=32, moving_cars=1, parked_cars=2, trees=2, poles=1)
POSE = dict(pose_noise_m=0.2, pose_noise_deg=1.0, pose_drift_m=0.5)
EXPOSURE = dict(exposure_gain=0.3, exposure_frame_gain=0.1, white_balance=0.1, vignetting=0.3)
# Made before the imperfection keys existed: the digests, and gt/meta.json of SMALL (sha1).
DIGEST_DEFAULT, DIGEST_SMALL = "800a2b70fb", "29c564040a"
META_SHA1_SMALL = "79caf1a49077949267998a0a3c5a00232461178d"


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Folders of the small street: clean, clean with the keys spelt out as 0, posed noise, exposure."""
    base = tmp_path_factory.mktemp("imperfections")
    kinds = {"clean": {}, "zeros": {k: 0 for k in IMPERFECTION_KEYS}, "pose": POSE, "exposure": EXPOSURE}
    for name, extra in kinds.items():
        generate(SyntheticParams(**SMALL, **extra), base / name)
    return {name: base / name for name in kinds}


def _load(root, **kw):
    return DrivingScene.load(root, LoadOptions(cameras=["0", "1"], dataset="waymo", test_every=2, **kw))


@pytest.fixture(scope="module")
def loaded(generated):
    return {name: _load(root) for name, root in generated.items() if name != "zeros"}


def test_defaults_keep_the_digest_and_the_bytes(generated):
    assert SyntheticParams().digest() == DIGEST_DEFAULT
    assert SyntheticParams(**SMALL).digest() == DIGEST_SMALL
    assert SyntheticParams(**SMALL, **{k: 0 for k in IMPERFECTION_KEYS}).digest() == DIGEST_SMALL
    clean, zeros = _files(generated["clean"]), _files(generated["zeros"])
    assert clean == zeros
    assert hashlib.sha1(clean["gt/meta.json"]).hexdigest() == META_SHA1_SMALL
    assert IMPERFECTIONS_FILE not in clean and load_imperfections(generated["clean"]) is None
    # any imperfection makes another scene (another cache folder)
    assert SyntheticParams(**SMALL, vignetting=0.1).digest() != DIGEST_SMALL


def test_imperfections_leave_the_street_alone(generated):
    clean = _files(generated["clean"])
    for name in ("pose", "exposure"):
        other = _files(generated[name])
        assert other["gt/static_mesh.ply"] == clean["gt/static_mesh.ply"]
        assert other["instances/instances_info.json"] == clean["instances/instances_info.json"]
        assert all(other[f] == clean[f] for f in clean if f.startswith(("lidar/", "gt/depth/", "sky_masks/",
                                                                         "extrinsics/", "intrinsics/")))
        meta = json.loads(other["gt/meta.json"])
        assert IMPERFECTIONS_FILE in meta["imperfections"]
        assert IMPERFECTIONS_FILE in other
    assert all(_files(generated["pose"])[f] == clean[f] for f in clean if f.startswith("images/"))
    assert all(_files(generated["exposure"])[f] == clean[f] for f in clean if f.startswith("ego_pose/"))


def test_draws_are_independent_of_each_other_and_of_the_cameras():
    pose = draw_imperfections(SyntheticParams(**SMALL, **POSE), CAMERA_MOUNTS)
    both = draw_imperfections(SyntheticParams(**SMALL, **POSE, **EXPOSURE), CAMERA_MOUNTS)
    assert np.array_equal(pose.pose_delta, both.pose_delta)
    three = draw_imperfections(SyntheticParams(**{**SMALL, "cameras": [0, 1, 2]}, **EXPOSURE), CAMERA_MOUNTS)
    assert three.camera_gain[1] == both.camera_gain[1]
    assert np.array_equal(three.white_balance[1], both.white_balance[1])
    assert draw_imperfections(SyntheticParams(**SMALL), CAMERA_MOUNTS) is None


def test_pose_noise_is_in_the_written_poses_only(generated, loaded):
    root = generated["pose"]
    imp = load_imperfections(root)
    assert imp is not None and imp.params["pose_noise_m"] == 0.2
    clean, noisy = loaded["clean"], loaded["pose"]
    assert np.array_equal(imp.pose_deltas[0], np.eye(4))
    assert all(np.linalg.norm(imp.pose_deltas[t][:3, 3]) > 1e-3 for t in range(1, 4))
    drift = np.asarray(imp.raw["pose"]["drift_translation_m"])
    assert np.isclose(np.linalg.norm(drift[-1]), 0.5) and np.allclose(drift[:, 2], 0) and np.allclose(drift[0], 0)
    assert np.isclose(abs(imp.raw["pose"]["drift_yaw_deg"][-1]), 0.5)
    for cv, nv in zip(clean.views, noisy.views):
        assert (cv.frame_idx, cv.cam_name) == (nv.frame_idx, nv.cam_name)
        assert torch.equal(cv.image, nv.image)                       # rendered from the true pose
        true = true_camera_to_world(noisy, nv, imp)
        assert true.dtype == torch.float32
        assert torch.allclose(true, cv.camera_to_world, atol=1e-5)   # the noise-free scene's pose
        # the loaded pose = the true one moved by the recorded ego-frame delta
        ego_from_cam = np.loadtxt(root / "extrinsics" / f"{nv.cam_name}.txt") @ OPENCV_TO_DATASET
        delta_cam = rigid_inverse(ego_from_cam) @ imp.pose_deltas[nv.frame_idx] @ ego_from_cam
        expected = true_camera_to_world_np(noisy, nv.frame_idx, nv.cam_name, imp) @ delta_cam
        assert np.allclose(nv.camera_to_world.double().numpy(), expected, atol=1e-5)
        if nv.frame_idx == 0:
            assert torch.equal(nv.camera_to_world, cv.camera_to_world)
        else:
            assert not torch.allclose(nv.camera_to_world, cv.camera_to_world, atol=1e-3)
    # LiDAR is written in the ego frame: a noisy ego pose misplaces its frame's points by the same delta
    W = noisy.world_from_log
    for t in range(4):
        moved = W @ imp.true_ego_poses[t] @ imp.pose_deltas[t] @ rigid_inverse(W @ imp.true_ego_poses[t])
        pc = clean.lidar.points[clean.lidar.frame_idx == t].double().numpy()
        pn = noisy.lidar.points[noisy.lidar.frame_idx == t].double().numpy()
        assert np.allclose(pn, pc @ moved[:3, :3].T + moved[:3, 3], atol=1e-4)
    # the GT mesh stays in the world of the true first ego frame
    assert torch.equal(noisy.gt_mesh_to_world, clean.gt_mesh_to_world)


def test_surfaces_of_a_noisy_street_are_scored_over_the_region_its_true_cameras_saw(generated):
    """The GT depth is rendered from the true poses: the scored region (models.mesh.run_io.training_cameras)
    puts it there, so a run on the noisy street is scored over the clean street's region."""
    from models.mesh.run_io import training_cameras

    clean, noisy = (_load(generated[name], load_gt=True) for name in ("clean", "pose"))
    want, got = training_cameras(clean, max_depth=40.0), training_cameras(noisy, max_depth=40.0)
    assert len(want) == len(got) == len(noisy.train_views)
    for (K0, c2w0, w0, h0, d0), (K1, c2w1, w1, h1, d1), view in zip(want, got, noisy.train_views):
        assert np.array_equal(K0, K1) and (w0, h0) == (w1, h1) and np.array_equal(d0, d1)
        assert np.allclose(c2w1, c2w0, atol=1e-5)
        if view.frame_idx > 0:   # not the written, noisy pose
            assert not np.allclose(c2w1, view.camera_to_world.double().numpy(), atol=1e-3)


def test_exposure_multiplies_the_clean_image(generated, loaded):
    imp = load_imperfections(generated["exposure"])
    assert imp is not None and imp.vignetting == 0.3
    gains = np.array([imp.camera_gain[c] for c in ("0", "1")])
    assert np.all(np.abs(gains - 1) <= 0.3) and not np.allclose(gains, 1)
    assert all(np.all(np.abs(imp.white_balance[c] - 1) <= 0.1) for c in ("0", "1"))
    assert all(np.all(np.abs(imp.frame_gain[c] - 1) <= 0.1) for c in ("0", "1"))
    clean, shot = loaded["clean"], loaded["exposure"]
    assert shot.test_views                                            # test frames are exposed too
    for cv, sv in zip(clean.views, shot.views):
        m = true_exposure(shot, sv, imp)
        assert torch.allclose(m.double(), torch.from_numpy(imp.exposure(sv.frame_idx, sv.cam_name)))
        factor = m * true_vignetting(shot, sv, imp)[..., None]       # [H, W, 3]
        expected = (cv.image * factor).clamp(0, 1)
        # clean images were rounded to uint8 too: at most half a level each, scaled by the factor
        bound = (0.5 + 0.5 * factor) / 255 + 1e-6
        assert torch.all((sv.image - expected).abs() <= bound)
        assert torch.equal(sv.camera_to_world, cv.camera_to_world)   # no pose noise asked for
    corner = true_vignetting(shot, shot.views[0], imp)
    assert float(corner.max()) < 1 and 0.7 < float(corner.min()) < 0.75   # 1 - 0.3 r^2, r -> 1 at the corners


def test_exact_scene_truth_is_what_was_loaded(loaded):
    clean = loaded["clean"]
    for v in clean.views:
        assert torch.allclose(true_camera_to_world(clean, v), v.camera_to_world, atol=1e-6)
        assert torch.equal(true_exposure(clean, v), torch.ones(3))
        assert torch.equal(true_vignetting(clean, v), torch.ones(v.height, v.width))


def test_truth_is_in_the_world_of_a_later_start_frame(generated):
    noisy = _load(generated["pose"], start_frame=1)
    clean = _load(generated["clean"], start_frame=1)
    # that world is the written (noisy) ego pose of frame 1, as the GT mesh's: the true cameras
    # differ from the clean scene's by one rigid transform, the same for every view
    imp = load_imperfections(generated["pose"])
    offsets = [true_camera_to_world_np(noisy, v.frame_idx, v.cam_name, imp)
               @ rigid_inverse(v.camera_to_world.double().numpy()) for v in clean.views]
    assert all(np.allclose(o, offsets[0], atol=1e-5) for o in offsets)
    mesh_offset = noisy.gt_mesh_to_world.double().numpy() @ rigid_inverse(clean.gt_mesh_to_world.double().numpy())
    assert np.allclose(mesh_offset, offsets[0], atol=1e-4)


@pytest.mark.parametrize("key, value", [("pose_noise_m", -0.1), ("pose_noise_deg", -1.0),
                                        ("pose_drift_m", float("nan")), ("exposure_gain", 1.0),
                                        ("exposure_frame_gain", 1.5), ("white_balance", -0.1), ("vignetting", 1.0),
                                        ("exposure_gain", "a lot")])
def test_bad_values_name_the_key_and_the_range(key, value):
    with pytest.raises(ValueError, match=rf"scene\.{key}: expected a number >= 0") as err:
        SyntheticParams(**{key: value})
    upper = IMPERFECTION_KEYS[key][1]
    assert upper is None or f"and < {upper:g} (" in str(err.value)
    with pytest.raises(SceneFormatError, match=rf"scene\.{key}: expected"):
        synthetic_params({"type": "synthetic", key: value})


def test_several_bad_values_make_one_error():
    with pytest.raises(ValueError) as err:
        SyntheticParams(pose_noise_m=-1, vignetting=2)
    message = str(err.value)
    assert "scene.pose_noise_m: expected" in message and "scene.vignetting: expected a number >= 0 and < 1" in message
