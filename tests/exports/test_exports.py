"""Exports read back with an independent reader (plyfile, INRIA's field list) and checked against
the trainer: the composed scene graph, the cameras, the axes, the background, mesh normals."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from plyfile import PlyData

from models.exports import INRIA_FIELDS, VIEWER_FROM_WORLD, export_scene
from models.gaussians.vanilla import VanillaGaussians
from models.rendering import rasterization
from models.trainers.scene_graph import RIGID_KEY, MultiTrainer
from models.trainers.single import MODEL_KEY
from tests.trainers.tiny_run import REPO, tiny_config

MULTI = ["trainer=MultiTrainer", "loss.mask_dynamic=false"]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """A MultiTrainer on the tiny street whose parameters are perturbed (seeded) so that every
    exported column, the SH bands included, carries something to get wrong."""
    root = tmp_path_factory.mktemp("exports")
    t = MultiTrainer(tiny_config(root / "scene", root / "run", *MULTI), output_dir=None)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in t.models.values():
            n = m.num_gaussians
            m.params["shN"].copy_(0.3 * torch.randn(m.params["shN"].shape, generator=g))
            m.params["quats"].copy_(torch.randn(n, 4, generator=g))
            m.params["scales"].add_(0.3 * torch.randn(n, 3, generator=g))
            m.params["opacities"].copy_(2.0 + torch.randn(n, generator=g))
        t.background.copy_(torch.tensor([0.4, -0.2, 1.1]))
    t.step = 15  # the end of the tiny schedule, past every SH interval
    return t


def export_trained(trainer, folder, **kwargs):
    """The exports of a trainer's scene (its GaussianScene and cameras), as at the end of training."""
    return export_scene(trainer.gaussian_scene, trainer.cameras, folder, step=trainer.step, **kwargs)


@pytest.fixture(scope="module")
def exported(trainer, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    frame = trainer.dataset.frames[-1]
    written = export_trained(trainer, out, axes="viewer", frame=frame)
    return out, frame, written


def read_vertices(path):
    ply = PlyData.read(str(path))
    v = ply["vertex"]
    return ply, v, [p.name for p in v.properties]


def activated(v, inverse_axes: torch.Tensor):
    """INRIA's reading of a vertex block (as its GaussianModel.load_ply), moved back by the axes."""
    col = lambda n: torch.as_tensor(np.asarray(v[n], dtype=np.float32))  # noqa: E731
    means = torch.stack([col("x"), col("y"), col("z")], 1)
    quats = torch.stack([col(f"rot_{i}") for i in range(4)], 1)
    quats = quats / quats.norm(dim=1, keepdim=True)
    rest = torch.stack([col(f"f_rest_{i}") for i in range(45)], 1).reshape(-1, 3, 15).transpose(1, 2)
    sh = torch.cat([torch.stack([col(f"f_dc_{i}") for i in range(3)], 1)[:, None], rest], 1)
    return {"means": means @ inverse_axes.T, "quats": quats, "scales": torch.exp(torch.stack(
        [col(f"scale_{i}") for i in range(3)], 1)), "opacities": torch.sigmoid(col("opacity")), "colors": sh}


def render(gs, c2w, K, w, h):
    degree = int(round(gs["colors"].shape[1] ** 0.5)) - 1
    colors, alphas, _ = rasterization(gs["means"], gs["quats"], gs["scales"], gs["opacities"], gs["colors"],
                                      torch.linalg.inv(c2w)[None], K[None], w, h, sh_degree=degree, backend="torch")
    return colors[0], alphas[0, ..., 0]


def test_gaussians_ply_is_inria_layout_float_only(trainer, exported):
    out, _, _ = exported
    ply, v, names = read_vertices(out / "gaussians.ply")
    assert names == INRIA_FIELDS
    assert all(p.val_dtype in ("f4", "float32", "float") for p in v.properties), [p.val_dtype for p in v.properties]
    assert ply.byte_order == "<" and not ply.text
    means = torch.stack([torch.as_tensor(np.asarray(v[c])) for c in "xyz"], 1)
    # the axes are a signed permutation: mapping back is exact
    assert torch.equal(means @ VIEWER_FROM_WORLD, trainer.model.params["means"].detach())
    assert len(v) == trainer.model.num_gaussians


def test_rotated_export_renders_like_the_trainer_from_cameras_json(trainer, exported):
    """Rendering the exported Gaussians with a camera of cameras.json (both in the viewer axes)
    gives the trainer's own render of that view: means, quaternions and SH bands turned together."""
    out, _, _ = exported
    cams = json.loads((out / "cameras.json").read_text())
    _, v, _ = read_vertices(out / "gaussians.ply")
    gs = activated(v, torch.eye(3))  # stay in the export axes
    views = list(trainer.dataset.train_views) + list(trainer.dataset.test_views)
    bg = trainer.model.get_gaussians()
    for cam, view in zip(cams, views):
        c2w = torch.eye(4)
        c2w[:3, :3], c2w[:3, 3] = torch.tensor(cam["rotation"]), torch.tensor(cam["position"])
        K = view.K.clone()
        assert (cam["fx"], cam["fy"]) == pytest.approx((float(K[0, 0]), float(K[1, 1])))
        got, got_a = render(gs, c2w, K, cam["width"], cam["height"])
        want, want_a = render({k: t.detach() for k, t in bg.items()}, view.camera_to_world, K, view.width, view.height)
        assert got_a.max() > 0.3, "the exported camera sees nothing"
        assert (got - want).abs().max() < 2e-3 and (got_a - want_a).abs().max() < 2e-3


def test_cameras_json_is_inria_layout_and_upright(trainer, exported):
    out, _, _ = exported
    cams = json.loads((out / "cameras.json").read_text())
    scene = trainer.dataset
    assert len(cams) == len(scene.train_views) + len(scene.test_views)
    for i, cam in enumerate(cams):
        assert list(cam) == ["id", "img_name", "width", "height", "position", "rotation", "fy", "fx"]
        assert cam["id"] == i and isinstance(cam["img_name"], str) and cam["img_name"]
        R = np.array(cam["rotation"])
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-6) and np.isclose(np.linalg.det(R), 1.0)
        # upright: the camera's up (-y of an OpenCV camera) is the export's -y, as y-down viewers expect
        up = R @ np.array([0.0, -1.0, 0.0])
        assert up[1] < -0.9, f"camera {i} is not upright in the export axes: its up is {up}"
    info = json.loads((out / "export_info.json").read_text())
    assert info["cameras"]["test_ids"] == list(range(len(scene.train_views), len(cams)))
    assert info["axes"] == "viewer" and np.allclose(np.array(info["export_from_world"])[:3, :3], VIEWER_FROM_WORLD)


def test_background_colour_is_exported(trainer, exported):
    info = json.loads((exported[0] / "export_info.json").read_text())
    assert info["background_rgb"] == pytest.approx(torch.sigmoid(trainer.background.detach()).tolist())
    assert info["background_rgb"] != pytest.approx([0.5, 0.5, 0.5], abs=0.05)


def test_rigid_nodes_float_properties_and_track_names(trainer, exported):
    out, _, _ = exported
    _, v, names = read_vertices(out / "rigid_nodes.ply")
    nodes = trainer.models[RIGID_KEY]
    assert names == INRIA_FIELDS + ["instance_id"]
    assert all(p.val_dtype in ("f4", "float32", "float") for p in v.properties)
    assert np.array_equal(np.asarray(v["instance_id"]), nodes.instance_ids.numpy().astype(np.float32))
    side = json.loads((out / "rigid_nodes.json").read_text())
    assert [i["track"] for i in side["instances"]] == [t.id for t in trainer.rigid_tracks]
    track = trainer.rigid_tracks[0]
    f = int(track.frame_idx[0])
    pose = np.array(side["instances"][0]["obj_to_export"][str(f)])
    A = np.eye(4)
    A[:3, :3] = VIEWER_FROM_WORLD.numpy()
    assert np.allclose(pose, A @ track.pose_at(f).numpy(), atol=1e-6)


def test_scene_frame_matches_compose_gaussians(trainer, exported):
    """scene_frame_K.ply, read by plyfile and moved back to the world, is compose_gaussians at frame K
    (instances absent at K left out rather than written transparent)."""
    out, frame, _ = exported
    _, v, names = read_vertices(out / f"scene_frame_{frame:03d}.ply")
    assert names == INRIA_FIELDS
    got = activated(v, VIEWER_FROM_WORLD.T)
    view = next(v for v in trainer.dataset.views if v.frame_idx == frame)
    gs, slices = trainer.compose_gaussians(view)
    gs = {k: t.detach() for k, t in gs.items()}
    _, present = trainer.instance_poses(frame)
    ids = trainer.models[RIGID_KEY].instance_ids
    keep = torch.ones(len(gs["means"]), dtype=torch.bool)
    keep[slices[RIGID_KEY]] = present[ids]
    assert int(present.sum()) >= 1 and len(got["means"]) == int(keep.sum())
    want = {k: t[keep] for k, t in gs.items()}
    assert torch.allclose(got["means"], want["means"], atol=1e-4)
    assert torch.allclose(got["scales"], want["scales"], rtol=1e-5)
    assert torch.allclose(got["opacities"], want["opacities"], atol=1e-6)
    from models.losses import quat_to_rotmat
    # orientation, through the viewer axes and back: R_world = Aᵀ · R_export
    R_got = VIEWER_FROM_WORLD.T @ quat_to_rotmat(got["quats"])
    assert torch.allclose(R_got, quat_to_rotmat(want["quats"]), atol=1e-4)
    # colour from any world direction d equals the export's colour from A·d
    from models.rendering.sh import eval_sh
    dirs = torch.nn.functional.normalize(torch.randn(len(got["means"]), 3, generator=torch.Generator().manual_seed(1)), dim=1)
    c_want = eval_sh(trainer.model.sh_degree, dirs, want["colors"])  # the export pads to degree 3 with zeros
    c_got = eval_sh(3, dirs @ VIEWER_FROM_WORLD.T, got["colors"])
    assert torch.allclose(c_got, c_want, atol=1e-4)
    # the car is where the track puts it at frame K
    track = trainer.rigid_tracks[0]
    rig = got["means"][int(slices[MODEL_KEY].stop):]
    assert track.contains(frame, rig, margin=0.5).float().mean() > 0.95


def test_world_axes_keep_the_training_world(trainer, tmp_path):
    export_trained(trainer, tmp_path, axes="world")
    m = VanillaGaussians.load_ply(tmp_path / "gaussians.ply")
    for k in ("means", "quats", "sh0", "scales", "opacities"):
        assert torch.equal(m.params[k], trainer.model.params[k].detach()), k
    K = trainer.model.params["shN"].shape[1]
    assert torch.equal(m.params["shN"][:, :K], trainer.model.params["shN"].detach())
    assert not m.params["shN"][:, K:].any()  # bands the model lacks: zero
    with pytest.raises(ValueError, match="axes='up'"):
        export_trained(trainer, tmp_path, axes="up")


def test_unknown_frame_is_one_clear_error(trainer, tmp_path):
    with pytest.raises(ValueError, match="--frame 999: the scene has frames"):
        export_trained(trainer, tmp_path, frame=999)
    assert not (tmp_path / "gaussians.ply").exists()


def test_export_tool_on_a_checkpoint(trainer, tmp_path):
    run = tmp_path / "run"
    trainer.save_state_dict(run / "checkpoints" / "step_000015.pt")
    frame = trainer.dataset.frames[1]
    r = subprocess.run([sys.executable, "tools/export.py", str(run), "--frame", str(frame)], cwd=REPO,
                       capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                                                            "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in (run / "exports").iterdir())
    assert files == sorted(["gaussians.ply", "cameras.json", "rigid_nodes.ply", "rigid_nodes.json",
                            f"scene_frame_{frame:03d}.ply", "export_info.json", "supersplat_settings.json",
                            # the command's default formats: ply, spz, gltf
                            "gaussians.spz", "gaussians.glb", f"scene_frame_{frame:03d}.spz",
                            f"scene_frame_{frame:03d}.glb"])
    bad = subprocess.run([sys.executable, "tools/export.py", str(run), "--frame", "999"], cwd=REPO,
                         capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and bad.stderr.startswith("error: --frame 999") and len(bad.stderr.splitlines()) == 1


def test_meshes_carry_vertex_normals(tmp_path):
    import trimesh

    from models.mesh.run_io import save_mesh
    mesh = trimesh.creation.icosphere(subdivisions=2)
    path = save_mesh(mesh, tmp_path / "m.ply")
    _, v, names = read_vertices(path)
    assert {"nx", "ny", "nz"} <= set(names)
    normals = np.stack([np.asarray(v[c]) for c in ("nx", "ny", "nz")], 1)
    radial = np.asarray(mesh.vertices) / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    assert (np.sum(normals * radial, 1) > 0.95).all()  # outward, unit, per vertex


def test_supersplat_settings_open_at_the_first_training_camera(trainer, exported):
    out, _, _ = exported
    settings = json.loads((out / "supersplat_settings.json").read_text())
    cam = json.loads((out / "cameras.json").read_text())[0]
    initial = settings["cameras"][0]["initial"]
    roll = np.diag([-1.0, -1.0, 1.0])  # SuperSplat draws file point (x, y, z) at (-x, -y, z)
    assert np.allclose(initial["position"], roll @ np.array(cam["position"]), atol=1e-6)
    forward = np.array(initial["target"]) - np.array(initial["position"])
    assert np.allclose(forward / np.linalg.norm(forward), roll @ np.array(cam["rotation"])[:, 2], atol=1e-6)
    # upright in SuperSplat's y-up world: the camera's up (-y of the OpenCV camera) points to +y there
    assert (roll @ np.array(cam["rotation"]) @ np.array([0.0, -1.0, 0.0]))[1] > 0.9
    # the viewer reads fov as horizontal on a landscape canvas (the tiny views are 48 x 32)
    assert cam["width"] > cam["height"]
    assert initial["fov"] == pytest.approx(np.degrees(2 * np.arctan(0.5 * cam["width"] / cam["fx"])))
    assert settings["background"]["color"] == pytest.approx(torch.sigmoid(trainer.background.detach()).tolist())
