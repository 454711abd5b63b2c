"""SPZ and glTF (KHR_gaussian_splatting) exports read back: the SPZ by gsply and by a decoder of
Niantic's layout written here from the format's description, the glTF by pygltflib and by reading
the GLB container's JSON with the standard library; each within the format's quantisation."""
from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from models.exports import VIEWER_FROM_WORLD, Y_UP_FROM_WORLD, export_scene
from models.rendering.sh import eval_sh
from models.splat_files import KHR, UP_FROM_DOWN, read_gltf_attributes, write_gltf, write_spz
from tests.exports.test_exports import trainer  # noqa: F401  (the module's perturbed MultiTrainer)


def gaussians(n: int, degree: int, seed: int = 0):
    """Raw parameters inside every format's range (SPZ: |sh0| < 3.3, |shN| < 1, log-scale in [-10, 5.9])."""
    g = torch.Generator().manual_seed(seed)
    return {"means": 20 * torch.randn(n, 3, generator=g), "scales": -4 + torch.randn(n, 3, generator=g),
            "quats": torch.randn(n, 4, generator=g), "opacities": 2 * torch.randn(n, generator=g),
            "sh0": torch.randn(n, 1, 3, generator=g).clamp(-3, 3),
            "shN": (0.3 * torch.randn(n, (degree + 1) ** 2 - 1, 3, generator=g)).clamp(-0.95, 0.95)}


def same_rotation(q_wxyz_a: np.ndarray, q_wxyz_b: np.ndarray) -> np.ndarray:
    """|<a, b>| of unit quaternions: 1 when they are the same rotation (q and -q are)."""
    a = q_wxyz_a / np.linalg.norm(q_wxyz_a, axis=1, keepdims=True)
    b = q_wxyz_b / np.linalg.norm(q_wxyz_b, axis=1, keepdims=True)
    return np.abs((a * b).sum(1))


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_spz_reads_back_within_its_quantisation(tmp_path, degree):
    import gsply

    p = gaussians(300, degree)
    write_spz(tmp_path / "g.spz", p)
    raw = gzip.decompress((tmp_path / "g.spz").read_bytes())
    magic, version, n, sh_degree, fractional_bits, flags, _ = struct.unpack("<IIIBBBB", raw[:16])
    assert (magic, version, n, sh_degree, fractional_bits, flags) == (0x5053474E, 3, 300, degree, 12, 0)
    # Niantic's layout, decoded here: positions (24-bit signed fixed point), alphas, colours
    pos = np.frombuffer(raw, np.uint8, 9 * n, 16).reshape(n, 3, 3).astype(np.int32)
    fixed = pos[..., 0] | (pos[..., 1] << 8) | (pos[..., 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    alpha = np.frombuffer(raw, np.uint8, n, 16 + 9 * n) / 255.0
    colour = (np.frombuffer(raw, np.uint8, 3 * n, 16 + 10 * n).reshape(n, 3) / 255.0 - 0.5) / 0.15
    want = {k: v.numpy() for k, v in p.items()}
    assert np.abs(fixed / 4096.0 - want["means"]).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(alpha - 1 / (1 + np.exp(-want["opacities"]))).max() <= 0.5 / 255 + 1e-6
    assert np.abs(colour - want["sh0"][:, 0]).max() <= 0.5 / (0.15 * 255) + 1e-6
    # and gsply's reader, every attribute
    d = gsply.read_spz(tmp_path / "g.spz")
    assert np.abs(d.means - want["means"]).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(d.scales - want["scales"]).max() <= 0.5 / 16 + 1e-5
    assert same_rotation(d.quats, want["quats"]).min() > 0.998  # smallest-three, 9 bits a component
    assert np.abs(1 / (1 + np.exp(-d.opacities)) - 1 / (1 + np.exp(-want["opacities"]))).max() <= 0.5 / 255 + 1e-5
    assert np.abs(d.sh0.reshape(-1, 3) - want["sh0"][:, 0]).max() <= 0.5 / (0.15 * 255) + 1e-5
    if degree:
        assert d.shN.shape == want["shN"].shape
        assert np.abs(d.shN - want["shN"]).max() <= 0.5 / 128 + 1e-6
    else:
        assert d.shN is None or np.asarray(d.shN).size == 0


def glb_json(path) -> dict:
    """The JSON chunk of a GLB, read with the standard library (glTF 2.0's container layout)."""
    data = path.read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert (magic, version, length) == (b"glTF", 2, len(data))
    chunk_length, chunk_type = struct.unpack("<I4s", data[12:20])
    assert chunk_type == b"JSON"
    return json.loads(data[20:20 + chunk_length])


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_gltf_follows_khr_gaussian_splatting_and_reads_back(tmp_path, degree):
    p = gaussians(200, degree, seed=1)
    write_gltf(tmp_path / "g.glb", p)
    doc = glb_json(tmp_path / "g.glb")
    assert KHR in doc["extensionsUsed"]
    prim = doc["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0  # POINTS
    assert prim["extensions"][KHR] == {"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}
    sh = [f"{KHR}:SH_DEGREE_{l}_COEF_{n}" for l in range(degree + 1) for n in range(2 * l + 1)]
    assert list(prim["attributes"]) == ["POSITION", f"{KHR}:ROTATION", f"{KHR}:SCALE", f"{KHR}:OPACITY", *sh]
    types = {"POSITION": "VEC3", f"{KHR}:ROTATION": "VEC4", f"{KHR}:SCALE": "VEC3", f"{KHR}:OPACITY": "SCALAR"}
    for name, index in prim["attributes"].items():
        acc = doc["accessors"][index]
        assert acc["componentType"] == 5126 and acc["count"] == 200 and acc["type"] == types.get(name, "VEC3")
    assert doc["nodes"][doc["scenes"][doc["scene"]]["nodes"][0]]["mesh"] == 0
    got = read_gltf_attributes(tmp_path / "g.glb")
    want = {k: v.numpy() for k, v in p.items()}
    pos = doc["accessors"][prim["attributes"]["POSITION"]]
    assert np.allclose(pos["min"], want["means"].min(0)) and np.allclose(pos["max"], want["means"].max(0))
    assert np.array_equal(got["POSITION"], want["means"])
    q = got[f"{KHR}:ROTATION"]  # xyzw, unit
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-6)
    assert same_rotation(q[:, [3, 0, 1, 2]], want["quats"]).min() > 1 - 1e-6
    assert np.allclose(got[f"{KHR}:SCALE"], np.exp(want["scales"]), rtol=1e-6)  # linear
    assert np.allclose(got[f"{KHR}:OPACITY"], 1 / (1 + np.exp(-want["opacities"])), atol=1e-7)  # in [0, 1]
    coeffs = np.concatenate([want["sh0"], want["shN"]], 1)
    for k, name in enumerate(sh):  # SH_DEGREE_l_COEF_n is band l's m = n - l, INRIA's order
        assert np.array_equal(got[name], coeffs[:, k]), name


def test_export_writes_spz_and_glb_y_up(trainer, tmp_path):  # noqa: F811
    """gaussians.spz / .glb of a scene are its Gaussians in x right, y up, z back: positions moved by
    Y_UP_FROM_WORLD, and colour seen from a world direction d equals the file's colour from the
    turned direction (SH bands rotated with the scene)."""
    written = export_scene(trainer.gaussian_scene, trainer.cameras, tmp_path, step=trainer.step,
                           formats="ply,spz,gltf")
    assert {"gaussians", "gaussians_spz", "gaussians_gltf"} <= set(written)
    info = json.loads((tmp_path / "export_info.json").read_text())
    assert info["formats"] == ["ply", "spz", "gltf"]
    assert np.allclose(np.array(info["y_up_from_world"])[:3, :3], Y_UP_FROM_WORLD)
    # y up: the world's up (z) is the file's +y; the viewer axes' down (+y) is the file's -y
    assert torch.equal(Y_UP_FROM_WORLD @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(UP_FROM_DOWN @ VIEWER_FROM_WORLD, Y_UP_FROM_WORLD)
    model = trainer.model
    world = {k: model.params[k].detach().float() for k in ("means", "sh0", "shN")}
    got = read_gltf_attributes(tmp_path / "gaussians.glb")
    assert torch.allclose(torch.as_tensor(got["POSITION"]), world["means"] @ Y_UP_FROM_WORLD.T, atol=1e-5)
    names = [n for n in got if ":SH_DEGREE_" in n]
    file_sh = torch.stack([torch.as_tensor(got[n]) for n in names], 1)
    dirs = torch.nn.functional.normalize(torch.randn(len(file_sh), 3, generator=torch.Generator().manual_seed(2)), dim=1)
    colours = torch.cat([world["sh0"], world["shN"]], 1)
    want = eval_sh(model.sh_degree, dirs, colours)
    assert torch.allclose(eval_sh(model.sh_degree, dirs @ Y_UP_FROM_WORLD.T, file_sh), want, atol=1e-4)
    import gsply

    d = gsply.read_spz(tmp_path / "gaussians.spz")
    assert np.abs(d.means - got["POSITION"]).max() <= 0.5 / 4096 + 1e-5
    assert len(d.means) == model.num_gaussians


def test_export_command_rejects_an_unknown_format(tmp_path, capsys):
    from omnire_cli.export import main

    assert main([str(tmp_path / "no_run"), "--format", "ply,obj"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --format obj: expected") and len(err.splitlines()) == 1


def test_export_command_writes_the_formats_asked_for(trainer, tmp_path):  # noqa: F811
    from omnire_cli.export import main

    run = tmp_path / "run"
    trainer.save_state_dict(run / "checkpoints" / "step_000015.pt")
    assert main([str(run), "--format", "spz", "--out", str(tmp_path / "spz_only")]) == 0
    assert sorted(p.name for p in (tmp_path / "spz_only").iterdir()) == ["cameras.json", "export_info.json",
                                                                          "gaussians.spz"]
