"""People on the synthetic street (scenes/people.py): off by default without changing a byte; on, walking
pedestrians and cyclists written as drivestudio's Pedestrian / Cyclist instances with exact human masks,
LiDAR returns, articulated limbs and their truth in gt/people.json."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from scenes import DrivingScene, LoadOptions, SceneFormatError, SyntheticParams, generate
from scenes.config import synthetic_params
from scenes.dataset_format import DEFORMABLE, SMPL
from scenes.geometry import project_points, rigid_inverse
from scenes.people import FLOW_CLASS, PEOPLE_FILE
from scenes.raycast import box_corners
from scenes.synthetic import build_street

# tests/scenes/test_imperfections.py's small street; its digest and its files' hash (every path and
# byte, sorted) were taken before the people keys existed.
SMALL = dict(seed=5, num_frames=4, cameras=[0, 1], width=32, height=24, supersample=1, lidar_beams=4,
             lidar_azimuths=32, moving_cars=1, parked_cars=2, trees=2, poles=1)
DIGEST_DEFAULT, DIGEST_SMALL = "800a2b70fb", "29c564040a"
TREE_SHA1_SMALL = "5bcd74badc3bdd1e3047fed809f13eb59783ab78"
# A street with people big enough to see them: 4 pedestrians (the third crosses) and 2 cyclists.
PEOPLE = dict(seed=3, num_frames=12, cameras=[0, 1, 2], width=96, height=64, supersample=1, lidar_beams=24,
              lidar_azimuths=720, moving_cars=1, parked_cars=2, trees=2, poles=1, pedestrians=4, cyclists=2)


def _tree_sha1(root):
    h = hashlib.sha1()
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(root)).encode()); h.update(f.read_bytes())
    return h.hexdigest()


def _mask(path):
    return np.asarray(Image.open(path)) > 0


@pytest.fixture(scope="module")
def people_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("people") / "scene"
    generate(SyntheticParams(**PEOPLE), root)
    return root


@pytest.fixture(scope="module")
def loaded(people_root):
    return DrivingScene.load(people_root, LoadOptions(cameras=["0", "1", "2"], dataset="waymo"))


def test_people_off_keep_the_digest_and_the_bytes(tmp_path):
    assert SyntheticParams().digest() == DIGEST_DEFAULT
    assert SyntheticParams(pedestrians=0, cyclists=0).digest() == DIGEST_DEFAULT
    assert SyntheticParams(**SMALL, pedestrians=0, cyclists=0).digest() == DIGEST_SMALL
    generate(SyntheticParams(**SMALL, pedestrians=0, cyclists=0), tmp_path / "small")
    assert _tree_sha1(tmp_path / "small") == TREE_SHA1_SMALL
    assert SyntheticParams(**SMALL, pedestrians=1).digest() != DIGEST_SMALL


def test_people_draw_from_their_own_generators():
    plain, busy = build_street(SyntheticParams(**SMALL)), build_street(SyntheticParams(**SMALL, pedestrians=3, cyclists=1))
    assert len(busy.groups) > len(plain.groups)
    for a, b in zip(plain.groups, busy.groups):
        assert a.name == b.name and np.array_equal(a.lo, b.lo) and np.array_equal(a.albedo, b.albedo)
        assert (a.poses is None and b.poses is None) or np.array_equal(a.poses, b.poses)
    assert np.array_equal(plain.log_from_street, busy.log_from_street)
    # one more pedestrian leaves the others as they were
    fewer = build_street(SyntheticParams(**SMALL, pedestrians=2)).people
    assert [f.height for f in fewer] == [f.height for f in busy.people[:2]]
    assert np.array_equal(fewer[1].root, busy.people[1].root)
    heights = [f.height for f in build_street(SyntheticParams(**{**PEOPLE, "num_frames": 1, "pedestrians": 6})).people]
    assert 1.5 <= min(heights) and max(heights) <= 1.95 and max(heights) - min(heights) > 0.1


def test_instances_have_drivestudio_classes_and_node_types(people_root, loaded):
    info = json.loads((people_root / "instances" / "instances_info.json").read_text())
    classes = [rec["class_name"] for rec in info.values()]
    assert classes == ["Vehicle"] + ["Pedestrian"] * 4 + ["Cyclist"] * 2
    frames = json.loads((people_root / "instances" / "frame_instances.json").read_text())
    assert all(sorted(v) == list(range(7)) for v in frames.values())
    nodes = {t.id: (t.class_name, t.node_type, t.moving) for t in loaded.instances}
    assert nodes["ped_0"] == ("Pedestrian", SMPL, True) and nodes["cyc_1"] == ("Cyclist", DEFORMABLE, True)
    meta = json.loads((people_root / "gt" / "meta.json").read_text())
    assert meta["params"]["pedestrians"] == 4 and "gt/people.json" in meta["people"]


def _box_rects(loaded, view, classes=("Pedestrian", "Cyclist")):
    """Pixel-centre rectangles covering each person's box projection in `view` (1 px slack)."""
    w2c = rigid_inverse(view.camera_to_world.double().numpy())
    out = []
    for t in loaded.instances:
        if t.class_name not in classes:
            continue
        pose = t.pose_at(view.frame_idx).double().numpy()
        half = t.box_size[0].double().numpy() / 2
        corners = box_corners(-half[None], half[None])[0] @ pose[:3, :3].T + pose[:3, 3]
        cam = corners @ w2c[:3, :3].T + w2c[:3, 3]
        if (cam[:, 2] <= 0.05).any():
            if (cam[:, 2] > 0.05).any():
                out.append((-np.inf, np.inf, -np.inf, np.inf))    # straddles the camera plane: anywhere
            continue
        u, v = project_points(cam, view.K.double().numpy())
        out.append((u.min() - 1, u.max() + 1, v.min() - 1, v.max() + 1))
    return out


def test_human_masks_lie_in_the_boxes_and_in_the_all_mask(people_root, loaded):
    seen = set()
    for view in loaded.views:
        name = f"{view.frame_idx:03d}_{view.cam_name}.png"
        human = _mask(people_root / "dynamic_masks" / "human" / name)
        vehicle = _mask(people_root / "dynamic_masks" / "vehicle" / name)
        every = view.dynamic_mask.numpy()
        assert np.array_equal(every, human | vehicle) and not (human & vehicle).any()
        rows, cols = np.nonzero(human)
        inside = np.zeros(len(rows), bool)
        for u0, u1, v0, v1 in _box_rects(loaded, view):
            inside |= (cols + 0.5 >= u0) & (cols + 0.5 <= u1) & (rows + 0.5 >= v0) & (rows + 0.5 <= v1)
        assert inside.all(), f"{name}: human pixels outside every person's box"
        if human.any():
            seen.add(view.frame_idx)
    assert seen == set(loaded.frames)             # people in view at every frame
    # and each figure, its box centre in front of a camera and inside its image, in most frames
    for track in (t for t in loaded.instances if t.class_name in ("Pedestrian", "Cyclist")):
        shown = set()
        for view in loaded.views:
            w2c = rigid_inverse(view.camera_to_world.double().numpy())
            centre = w2c[:3, :3] @ track.pose_at(view.frame_idx).double().numpy()[:3, 3] + w2c[:3, 3]
            u, v = project_points(centre[None], view.K.double().numpy())
            if centre[2] > 0.5 and 0 <= u[0] < view.width and 0 <= v[0] < view.height:
                shown.add(view.frame_idx)
        assert len(shown) >= 0.75 * len(loaded.frames), track.id
    truth = json.loads((people_root / PEOPLE_FILE).read_text())
    assert [f["class_name"] for f in truth["figures"]] == ["Pedestrian"] * 4 + ["Cyclist"] * 2


def test_pieces_stay_in_their_instance_box_and_limbs_swing(people_root):
    info = json.loads((people_root / "instances" / "instances_info.json").read_text())
    truth = json.loads((people_root / PEOPLE_FILE).read_text())
    for fig in truth["figures"]:
        rec = info[str(fig["instance"])]
        assert rec["id"] == fig["id"]
        ann = rec["frame_annotations"]
        for t in range(PEOPLE["num_frames"]):
            to_box = rigid_inverse(np.array(ann["obj_to_world"][t]))
            half = np.array(ann["box_size"][t]) / 2
            for piece in fig["pieces"].values():
                lo, hi = (np.array(x, float) for x in zip(*piece["boxes"].values()))
                corners = box_corners(lo, hi).reshape(-1, 3)
                pose = to_box @ np.array(piece["piece_to_world"][t])
                local = corners @ pose[:3, :3].T + pose[:3, 3]
                assert (np.abs(local) <= half + 1e-6).all(), (fig["id"], t)
        # articulation: a thigh and a shin turn against the root between frames, by the recorded angles
        root = [np.array(m) for m in fig["root_to_world"]]
        for piece in ("thigh_left", "shin_right"):
            rel = [rigid_inverse(r) @ np.array(m) for r, m in zip(root, fig["pieces"][piece]["piece_to_world"])]
            pitch = np.array([np.arctan2(m[0, 2], m[0, 0]) for m in rel])
            assert np.ptp(pitch) > 0.15, (fig["id"], piece, pitch)
        hip = np.array(fig["joints_rad"]["hip_left"])
        thigh = [rigid_inverse(r) @ np.array(m) for r, m in zip(root, fig["pieces"]["thigh_left"]["piece_to_world"])]
        np.testing.assert_allclose([np.arctan2(m[0, 2], m[0, 0]) for m in thigh], hip, atol=1e-9)


def test_lidar_hits_people_with_their_class_and_motion(loaded):
    lidar = loaded.lidar
    tracks = {c: [t for t in loaded.instances if t.class_name == c] for c in ("Pedestrian", "Cyclist")}
    for cls, tracks_of in tracks.items():
        sel = np.nonzero(lidar.flow_class.numpy() == FLOW_CLASS[cls])[0]
        assert len(sel) > 20, cls
        inside = np.zeros(len(sel), bool)
        for f in np.unique(lidar.frame_idx.numpy()[sel]):
            at = sel[lidar.frame_idx.numpy()[sel] == f]
            hit = np.zeros(len(at), bool)
            for t in tracks_of:
                hit |= t.contains(int(f), lidar.points[at], 0.01).numpy()
            inside[np.isin(sel, at)] = hit
        assert inside.all(), cls
        speed = lidar.flow[sel].norm(dim=1).numpy()
        assert speed.max() < 12.0 and np.median(speed) > 0.8, (cls, np.median(speed))


@pytest.mark.parametrize("key, value", [("pedestrians", -1), ("cyclists", -2), ("pedestrians", 1.5),
                                        ("cyclists", True), ("pedestrians", "many")])
def test_bad_people_counts_name_the_key(key, value):
    with pytest.raises(ValueError, match=rf"scene\.{key}: expected a whole number >= 0 \("):
        SyntheticParams(**{key: value})
    with pytest.raises(SceneFormatError, match=rf"scene\.{key}: expected a whole number >= 0"):
        synthetic_params({"type": "synthetic", key: value})


def test_bad_people_counts_make_one_error_with_the_other_keys():
    with pytest.raises(ValueError) as err:
        SyntheticParams(pedestrians=-1, cyclists=-1, vignetting=2)
    message = str(err.value)
    assert "scene.pedestrians: expected" in message and "scene.cyclists: expected" in message
    assert "scene.vignetting: expected" in message


def _train_config(root, out, *extra):
    from hydra import compose, initialize_config_dir
    from tests.trainers.tiny_run import REPO, TINY_TRAINING
    scene = ["scene=processed", f"scene.path={root}", "scene.dataset=waymo", "scene.test_every=0",
             "scene.max_init_points=400", "scene.moving_threshold=0.1"]
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("omnire_sugar_quick", overrides=[*scene, f"output_dir={out}", *TINY_TRAINING, *extra])


def test_a_street_with_people_trains_with_both_trainers(tmp_path):
    from models.trainers.scene_graph import RIGID_KEY, MultiTrainer
    from models.trainers.single import SingleTrainer
    people_root = tmp_path / "scene"
    generate(SyntheticParams(**{**SMALL, "num_frames": 3, "pedestrians": 2, "cyclists": 1}), people_root)
    single = SingleTrainer(_train_config(people_root, tmp_path / "single"), output_dir=tmp_path / "single")
    single.train(num_steps=2)
    assert single.step == 2
    multi = MultiTrainer(_train_config(people_root, tmp_path / "multi", "trainer=MultiTrainer", "loss.mask_dynamic=false",
                                       "model.deformable.enabled=false"),
                         output_dir=tmp_path / "multi")
    assert [t.class_name for t in multi.rigid_tracks] == ["Vehicle"] and RIGID_KEY in multi.models
    # with deformable nodes off, people have no node: their pixels are out of its loss, the car's are in
    people_pixels = car_pixels = 0
    for i, view in enumerate(multi._views):
        name = f"{view.frame_idx:03d}_{view.cam_name}.png"
        human = _mask(people_root / "dynamic_masks" / "human" / name)
        car = _mask(people_root / "dynamic_masks" / "vehicle" / name)
        keep = multi.loss_mask(view, i)
        keep = np.ones_like(human) if keep is None else keep.cpu().numpy()
        assert not (keep & human).any()
        people_pixels += int(human.sum()); car_pixels += int((keep & car).sum())
        assert single.loss_mask(view, i) is not None       # SingleTrainer masks every moving pixel
    assert people_pixels > 0 and car_pixels > 0
    multi.train(num_steps=2)
    assert multi.step == 2
