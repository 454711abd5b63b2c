import math

import numpy as np
import pytest
import torch

from models.gaussians.vanilla import SH_C0, VanillaGaussians, create_optimizers


def _points(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g)


def test_from_points_parameters_and_activations():
    xyz, rgb = _points()
    m = VanillaGaussians.from_points(xyz, rgb, sh_degree=3, init_opacity=0.1)
    assert m.num_gaussians == 50 and m.sh_degree == 3 and m.active_sh_degree == 0
    assert set(m.params) == {"means", "scales", "quats", "opacities", "sh0", "shN"}
    assert m.params["sh0"].shape == (50, 1, 3) and m.params["shN"].shape == (50, 15, 3)
    g = m.get_gaussians()
    assert torch.allclose(g["opacities"], torch.full((50,), 0.1))
    assert torch.allclose(g["quats"].norm(dim=-1), torch.ones(50))
    assert g["colors"].shape == (50, 16, 3)
    assert torch.allclose(g["colors"][:, 0] * SH_C0 + 0.5, rgb, atol=1e-6)
    # scale = mean distance to the 3 nearest neighbours (brute force reference)
    d = torch.cdist(xyz.double(), xyz.double())
    d.fill_diagonal_(float("inf"))
    ref = d.topk(3, largest=False).values.mean(-1).float()
    assert torch.allclose(g["scales"], ref[:, None].expand(-1, 3), rtol=1e-5)


def test_duplicate_points_give_finite_log_scales():
    xyz = torch.zeros(10, 3)
    xyz[5:] = 1.0
    m = VanillaGaussians.from_points(xyz, torch.rand(10, 3))
    assert torch.isfinite(m.params["scales"]).all()
    assert (m.get_gaussians()["scales"] > 0).all()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="xyz"):
        VanillaGaussians.from_points(torch.zeros(5, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="init_opacity"):
        VanillaGaussians.from_points(*_points(), init_opacity=1.5)


def test_ply_round_trip_and_layout(tmp_path):
    from plyfile import PlyData
    xyz, rgb = _points(30)
    m = VanillaGaussians.from_points(xyz, rgb, sh_degree=2)
    with torch.no_grad():
        for p in m.params.values():
            p.add_(torch.randn_like(p) * 0.1)
    path = m.export_ply(tmp_path / "out" / "g.ply")
    v = PlyData.read(str(path))["vertex"]
    names = [p.name for p in v.properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert len([n for n in names if n.startswith("f_rest_")]) == 24
    # channel-major f_rest: f_rest_0..7 are the red coefficients, f_rest_8 the first green one
    shN = m.params["shN"].detach()
    assert np.allclose(v["f_rest_0"], shN[:, 0, 0].numpy()) and np.allclose(v["f_rest_7"], shN[:, 7, 0].numpy())
    assert np.allclose(v["f_rest_8"], shN[:, 0, 1].numpy())
    assert np.allclose(v["opacity"], m.params["opacities"].detach().numpy())  # logit, as 3DGS
    assert np.allclose(v["scale_1"], m.params["scales"][:, 1].detach().numpy())  # log scale
    back = VanillaGaussians.load_ply(path)
    assert back.sh_degree == 2
    for k in m.params:
        assert torch.equal(back.params[k], m.params[k].detach()), k


def test_load_ply_rejects_foreign_files(tmp_path):
    from plyfile import PlyData, PlyElement
    arr = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    p = tmp_path / "pc.ply"
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(p))
    with pytest.raises(ValueError, match="missing vertex properties"):
        VanillaGaussians.load_ply(p)


def test_create_optimizers_learning_rates():
    m = VanillaGaussians.from_points(*_points())
    opts = create_optimizers(m.params, scene_scale=10.0)
    assert set(opts) == set(m.params)
    lr = {k: o.param_groups[0]["lr"] for k, o in opts.items()}
    assert math.isclose(lr["means"], 1.6e-3) and math.isclose(lr["shN"], 2.5e-3 / 20)
    assert math.isclose(lr["opacities"], 5e-2) and math.isclose(lr["quats"], 1e-3)
    for k, o in opts.items():
        assert o.param_groups[0]["params"][0] is m.params[k] and o.defaults["eps"] == 1e-15
    opts = create_optimizers(m.params, {"sh0": 1e-2})
    assert opts["sh0"].param_groups[0]["lr"] == 1e-2
