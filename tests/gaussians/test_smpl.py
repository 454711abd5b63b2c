"""SMPL body model (file reader, LBS), SMPLNodes (skinned Gaussians, pose refinement, densification
ops), drivestudio's humanpose/smpl.pkl and the synthetic walker model against people.json's truth."""
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from models.gaussians.rigid import INSTANCE_KEY
from models.gaussians.smpl_body import (BodyModelArrays, BodyModelError, SMPLBody, blend_transforms,
                                        forward_kinematics, pose_blend, read_body_model, regress_joints,
                                        rodrigues, shape_blend, write_body_model)
from models.gaussians.smpl_nodes import BARY_KEY, FACE_KEY, SMPL_KEY, SMPLNodes, SMPLPoseRefinement
from models.gaussians.vanilla import create_optimizers
from models.rendering.projection import quat_to_rotmat
from models.rendering.sh import sh_basis
from scenes.people import pedestrian, people_truth
from scenes.smpl_format import SMPLFileError, humanpose_record, read_humanpose, write_humanpose
from scenes.smpl_synthetic import JOINTS, JOINT_BOX, pedestrian_smpl, synthetic_body_model
from scenes.synthetic import STREET_LAYOUT


def _rz(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


def _chain_model() -> BodyModelArrays:
    """Two joints on the x axis: joint 0 at the origin (vertex 0), joint 1 at (1, 0, 0) (vertex 1);
    vertex 2 at (2, 0, 0) half on each joint, vertex 3 at (2, 0, 0) on joint 1."""
    v = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 0, 0.0]])
    w = np.array([[1, 0], [0, 1], [0.5, 0.5], [0, 1.0]])
    J_reg = np.array([[1, 0, 0, 0], [0, 1, 0, 0.0]])
    shapedirs = np.zeros((4, 3, 2))
    shapedirs[:, 2, 0] = 1.0                       # beta 0 lifts everything along z
    posedirs = np.zeros((4, 3, 9))
    posedirs[3, 2, 0] = 1.0                        # vertex 3's z follows (R_1 - I)[0, 0]
    return BodyModelArrays(v, shapedirs, posedirs, J_reg, w, np.array([-1, 0]), np.array([[0, 1, 2], [1, 2, 3]]))


# ---------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,sparse", [("model.pkl", True), ("model.pkl", False), ("model.npz", False)])
def test_body_model_file_round_trip(tmp_path, name, sparse):
    model = synthetic_body_model().arrays
    path = write_body_model(tmp_path / name, model, sparse_regressor=sparse)
    back = read_body_model(path)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "parents", "faces"):
        np.testing.assert_array_equal(getattr(back, key), getattr(model, key), err_msg=key)
    if name.endswith(".pkl"):      # SMPL's layout: kintree_table with uint32's largest value as the root's parent
        with open(path, "rb") as fh:
            raw = pickle.load(fh, encoding="latin1")
        assert raw["kintree_table"][0, 0] == 4294967295 and raw["f"].dtype == np.uint32


def _write_dict(path, data):
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    return path


def _layout_dict(model):
    return {"v_template": model.v_template, "shapedirs": model.shapedirs, "posedirs": model.posedirs,
            "J_regressor": model.J_regressor, "weights": model.weights,
            "kintree_table": np.stack([np.where(model.parents < 0, 4294967295, model.parents),
                                       np.arange(len(model.parents))]), "f": model.faces}


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("posedirs"), "missing key 'posedirs'"),
    (lambda d: d.update(posedirs=np.zeros((4, 3, 7))), "key 'posedirs' has shape [4, 3, 7], expected [4, 3, 9]"),
    (lambda d: d.update(weights=np.zeros((4, 3))), "key 'weights' has shape [4, 3], expected [4, 2]"),
    (lambda d: d.update(f=np.array([[0, 1, 9]])), "key 'f' indexes vertices outside [0, 4)"),
    (lambda d: d.update(kintree_table=np.array([[5, 7], [0, 1]])), "joint 1's parent 7 is not an earlier joint"),
    (lambda d: d.update(v_template=np.full((4, 3), np.nan)), "key 'v_template' holds non-finite values"),
    (lambda d: d.update(J_regressor="dense"), "key 'J_regressor' is not a numeric array"),
])
def test_malformed_body_model_is_one_clear_error(tmp_path, change, message):
    data = _layout_dict(_chain_model())
    change(data)
    path = _write_dict(tmp_path / "bad.pkl", data)
    with pytest.raises(BodyModelError) as err:
        read_body_model(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_or_unreadable_body_model_file(tmp_path):
    with pytest.raises(BodyModelError, match="not found.*licensed"):
        read_body_model(tmp_path / "SMPL_NEUTRAL.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(BodyModelError, match="junk.pkl: not a readable pickle"):
        read_body_model(tmp_path / "junk.pkl")
    _write_dict(tmp_path / "list.pkl", [1, 2])
    with pytest.raises(BodyModelError, match="expected a dict of SMPL's keys"):
        read_body_model(tmp_path / "list.pkl")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_a_pickle_that_runs_code(tmp_path):
    marker = tmp_path / "ran"
    data = _layout_dict(_chain_model())
    data["payload"] = _RunsCode(marker)
    path = _write_dict(tmp_path / "evil.pkl", data)
    with pytest.raises(BodyModelError, match=r"evil.pkl: refusing to load (posix|os|nt)\.system"):
        read_body_model(path)
    assert not marker.exists()
    # eval through builtins, and chumpy (SMPL v1.0.0) with its hint
    (tmp_path / "eval.pkl").write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(BodyModelError, match="refusing to load builtins.eval"):
        read_body_model(tmp_path / "eval.pkl")
    (tmp_path / "ch.pkl").write_bytes(b"cchumpy.ch\nCh\n)R.")
    with pytest.raises(BodyModelError, match="chumpy.*v1.1.0"):
        read_body_model(tmp_path / "ch.pkl")
    # a torch storage inside a humanpose file goes through torch's weights-only loader; other torch globals do not
    (tmp_path / "s").mkdir()
    (tmp_path / "s/humanpose").mkdir()
    (tmp_path / "s/humanpose/smpl.pkl").write_bytes(b"ctorch\nload\n(S'x'\ntR.")
    with pytest.raises(SMPLFileError, match="refusing to load torch.load"):
        read_humanpose(tmp_path / "s")


# ---------------------------------------------------------------------------------------------
# LBS
# ---------------------------------------------------------------------------------------------
def test_rodrigues_matches_known_rotations():
    R = rodrigues(torch.tensor([[0, 0, math.pi / 2], [0.0, 0, 0]], dtype=torch.float64))
    np.testing.assert_allclose(R[0].numpy(), _rz(90), atol=1e-12)
    np.testing.assert_allclose(R[1].numpy(), np.eye(3), atol=0)
    from scipy.spatial.transform import Rotation
    aa = torch.randn(20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    aa[:3] *= 1e-5                                 # the series branch
    np.testing.assert_allclose(rodrigues(aa).numpy(), Rotation.from_rotvec(aa.numpy()).as_matrix(), atol=1e-12)


def test_lbs_against_hand_computation():
    body = SMPLBody(_chain_model(), dtype=torch.float64)
    R = torch.tensor(np.stack([_rz(90), _rz(90)]))[None]
    out = body(torch.zeros(1, 2, dtype=torch.float64), R, torch.tensor([[1.0, 2, 3]], dtype=torch.float64))
    # joint 0 at the origin: the root stays at transl; joint 1 = Rz90·(1,0,0) + transl
    np.testing.assert_allclose(out.joints[0].numpy(), [[1, 2, 3], [1, 3, 3]], atol=1e-12)
    # vertex 3: joint 1 + Rz180·(1,0,0), its z lowered by the pose blend shape (R_1 - I)[0,0] = -1
    # vertex 2: half of joint 0's transform (Rz90·(2,0,0) + t = (1,4,3)), half joint 1's ((0,3,3))
    np.testing.assert_allclose(out.vertices[0].numpy(), [[1, 2, 3], [1, 3, 3], [0.5, 3.5, 3], [0, 3, 2]], atol=1e-12)
    np.testing.assert_allclose(out.skin_transforms[0, 1, :3, :3].numpy(), _rz(180), atol=1e-12)
    np.testing.assert_allclose(out.vertex_transforms[0, 3].numpy(), out.skin_transforms[0, 1].numpy(), atol=0)
    # shape: beta 0 lifts vertices and (regressed) joints by 0.5; no pose, no translation
    rest = body(torch.tensor([[0.5, 0.0]], dtype=torch.float64), torch.eye(3, dtype=torch.float64).repeat(1, 2, 1, 1))
    np.testing.assert_allclose(rest.vertices[0].numpy(), _chain_model().v_template + [0, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(rest.joints[0].numpy(), [[0, 0, 0.5], [1, 0, 0.5]], atol=1e-12)


def test_lbs_gradcheck_pose_and_canonical_vertices():
    m = _chain_model()
    m.weights = np.array([[1, 0], [0.3, 0.7], [0.5, 0.5], [0.1, 0.9]])
    body = SMPLBody(m, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)

    def lbs(aa, v_template):
        v = shape_blend(v_template, body.shapedirs, torch.tensor([[0.2, 0.0]], dtype=torch.float64))
        J = regress_joints(body.J_regressor, v)
        R = rodrigues(aa)
        _, A = forward_kinematics(R, J, body.parents)
        T = blend_transforms(body.weights, A)
        vp = v + pose_blend(body.posedirs, R)
        return torch.einsum("nvab,nvb->nva", T[..., :3, :3], vp) + T[..., :3, 3]

    aa = (torch.randn(1, 2, 3, dtype=torch.float64, generator=g)).requires_grad_()
    vt = (body.v_template + 0.1 * torch.randn(4, 3, dtype=torch.float64, generator=g)).requires_grad_()
    assert torch.autograd.gradcheck(lbs, (aa, vt))
    assert torch.autograd.gradcheck(lbs, (torch.zeros(1, 2, 3, dtype=torch.float64, requires_grad=True), vt))


# ---------------------------------------------------------------------------------------------
# SMPLNodes
# ---------------------------------------------------------------------------------------------
def _walkers(n=2, T=5):
    figs = [pedestrian(7, i, T, 10.0, STREET_LAYOUT) for i in range(n)]
    return figs, people_truth(figs, np.eye(4), 0)["figures"]


def _nodes(dtype=torch.float32, per_instance=300, sh_degree=1):
    figs, recs = _walkers()
    params = [pedestrian_smpl(r) for r in recs]
    body = SMPLBody(synthetic_body_model().arrays, dtype=dtype)
    betas = torch.tensor(np.stack([p.betas for p in params]), dtype=torch.float32)
    nodes = SMPLNodes.from_body(body, betas, per_instance=per_instance, sh_degree=sh_degree, seed=3)
    with torch.no_grad():
        nodes.params["shN"].normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    return nodes, params, recs


def _frame_inputs(params, t, dtype):
    """rotmats [I, J, 3, 3] at frame t (joint 0 the walker's world orientation) and instance frames
    at each walker's root joint (pelvis), unturned."""
    rot = torch.tensor(np.stack([p.rotmats[t] for p in params]), dtype=dtype)
    inst = torch.eye(4, dtype=dtype).repeat(len(params), 1, 1)
    inst[:, :3, 3] = torch.tensor(np.stack([p.pelvis[t] for p in params]), dtype=dtype)
    return rot, inst


def test_smpl_nodes_follow_the_body_surface_rigidly():
    nodes, params, recs = _nodes(torch.float64)
    nodes = nodes.double()
    assert SMPL_KEY == "SMPLNodes" and nodes.num_gaussians == 600
    ids, faces, bary = nodes.instance_ids, nodes.faces, nodes.params[BARY_KEY]
    assert not any(nodes.params[k].requires_grad for k in (INSTANCE_KEY, FACE_KEY, BARY_KEY))
    t = 3
    rot, inst = _frame_inputs(params, t, torch.float64)
    present = torch.tensor([1.0, 0.0])
    out = nodes.world_gaussians(rot, inst, present)
    # the surface point each Gaussian was drawn at, posed by the body model itself
    for i, p in enumerate(params):
        lbs = nodes.body(torch.tensor(p.betas)[None], torch.tensor(p.rotmats[t:t + 1]), torch.tensor(p.transl[t:t + 1]))
        sel = ids == i
        want = torch.einsum("nk,nkc->nc", bary[sel], lbs.vertices[0][nodes.body.faces[faces[sel]]])
        torch.testing.assert_close(out["means"][sel], want, atol=1e-6, rtol=0)   # canonical means are float32
        # rigid weights: each Gaussian turns with its joint (quaternion and SH)
        w = nodes.skin_weights()[sel]
        torch.testing.assert_close(w.max(1).values, torch.ones(len(w), dtype=w.dtype), atol=1e-6, rtol=0)
        Rj = lbs.skin_transforms[0, w.argmax(1), :3, :3]
        torch.testing.assert_close(quat_to_rotmat(out["quats"][sel]),
                                   Rj @ quat_to_rotmat(nodes.get_gaussians()["quats"][sel]), atol=1e-6, rtol=0)
        d = torch.nn.functional.normalize(torch.randn(3, dtype=torch.float64), dim=0)
        world_col = torch.einsum("k,nkc->nc", sh_basis(1, d[None])[0], out["colors"][sel])
        canon_dir = torch.einsum("nji,j->ni", Rj, d)       # Rᵀ·d per Gaussian
        canon_col = torch.einsum("nk,nkc->nc", sh_basis(1, canon_dir), nodes.get_gaussians()["colors"][sel])
        torch.testing.assert_close(world_col, canon_col, atol=1e-6, rtol=0)   # weights of float32 bary
    assert torch.all(out["opacities"][ids == 1] == 0) and torch.all(out["opacities"][ids == 0] > 0)
    torch.testing.assert_close(out["scales"], nodes.get_gaussians()["scales"])


def test_smpl_nodes_gradients_reach_canonical_params_and_pose_residual():
    nodes, params, _ = _nodes()
    refine = SMPLPoseRefinement(num_instances=2, num_frames=5, num_joints=len(JOINTS))
    rot, inst = _frame_inputs(params, 2, torch.float32)
    out = nodes.world_gaussians(refine(2, rot), inst, torch.ones(2))
    loss = out["means"].square().sum() + out["colors"][:, 1:].sum() + (out["quats"] * torch.arange(4.0)).sum()
    loss.backward()
    for k in ("means", "quats", "shN"):
        assert nodes.params[k].grad is not None and nodes.params[k].grad.abs().sum() > 0, k
    g = refine.residual.grad
    assert g[:, 2].abs().sum() > 0 and g[:, [0, 1, 3, 4]].abs().sum() == 0   # only the rendered frame
    # state / load
    with torch.no_grad():
        refine.residual.add_(0.01)
    other = SMPLPoseRefinement(2, 5, len(JOINTS))
    other.load(refine.state())
    torch.testing.assert_close(other.residual, refine.residual)
    with pytest.raises(ValueError, match=r"residual of shape \(2, 4, 10, 3\), expected \(2, 5, 10, 3\)"):
        other.load({"residual": torch.zeros(2, 4, 10, 3)})
    # a zero residual is the identity
    torch.testing.assert_close(SMPLPoseRefinement(2, 5, len(JOINTS))(1, rot), rot)


def test_smpl_nodes_world_gaussians_gradcheck_canonical_means():
    nodes, params, _ = _nodes(torch.float64, per_instance=4, sh_degree=0)
    nodes = nodes.double()
    rot, inst = _frame_inputs(params, 1, torch.float64)

    class Wrap(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, rot):
            return self.m.world_gaussians(rot, inst, torch.ones(2, dtype=torch.float64))["means"]

    wrap = Wrap(nodes)
    means0 = nodes.params["means"].detach().clone().requires_grad_()
    aa = torch.zeros(2, 1, 3, dtype=torch.float64, requires_grad=True)

    def f(means, aa):
        R = torch.cat([rodrigues(aa) @ rot[:, :1], rot[:, 1:]], 1)
        return torch.func.functional_call(wrap, {"m.params.means": means}, (R,))

    assert torch.autograd.gradcheck(f, (means0, aa))


def test_strategy_ops_keep_bindings_with_their_gaussians():
    from gsplat.strategy import ops
    nodes, params, _ = _nodes(per_instance=50)
    trainable = {k: v for k, v in nodes.params.items() if v.requires_grad}
    opts = create_optimizers(trainable)
    state = {"grad2d": torch.zeros(nodes.num_gaussians), "count": torch.zeros(nodes.num_gaussians)}
    rot, inst = _frame_inputs(params, 0, torch.float32)
    before = nodes.world_gaussians(rot, inst, torch.ones(2))["means"].detach()
    binding = {k: nodes.params[k].detach().clone() for k in (INSTANCE_KEY, FACE_KEY, BARY_KEY)}
    dup = torch.zeros(100, dtype=torch.bool)
    dup[[3, 60, 99]] = True
    ops.duplicate(nodes.params, opts, state, dup)
    assert nodes.num_gaussians == 103
    for k, v in binding.items():
        torch.testing.assert_close(nodes.params[k][:100], v)
        torch.testing.assert_close(nodes.params[k][100:], v[dup])
        assert not nodes.params[k].requires_grad
    after = nodes.world_gaussians(rot, inst, torch.ones(2))["means"].detach()
    torch.testing.assert_close(after[100:], before[dup])          # the copies sit where their originals do
    gone = torch.zeros(103, dtype=torch.bool)
    gone[[0, 60, 101]] = True
    ops.remove(nodes.params, opts, state, gone)
    keep_old = torch.cat([before, before[dup]])[~gone]
    torch.testing.assert_close(nodes.world_gaussians(rot, inst, torch.ones(2))["means"].detach(), keep_old)
    assert nodes.params[INSTANCE_KEY].shape == (100,) and nodes.params[BARY_KEY].shape == (100, 3)
    # split: two Gaussians near each chosen one, in its canonical neighbourhood, on the same triangle
    binding = {k: nodes.params[k].detach().clone() for k in (INSTANCE_KEY, FACE_KEY, BARY_KEY)}
    chosen = torch.zeros(100, dtype=torch.bool)
    chosen[[5, 70]] = True
    ops.split(nodes.params, opts, state, chosen)
    assert nodes.num_gaussians == 102
    for k, v in binding.items():
        torch.testing.assert_close(nodes.params[k][:98], v[~chosen])
        torch.testing.assert_close(nodes.params[k][98:], v[chosen].repeat(2, *[1] * (v.dim() - 1)))
    for o in opts.values():
        assert o.param_groups[0]["params"][0] is nodes.params[o.param_groups[0]["name"]]


def test_smpl_nodes_init_covers_each_body_with_flat_gaussians():
    nodes, _, _ = _nodes(per_instance=400)
    assert torch.bincount(nodes.instance_ids).tolist() == [400, 400]
    s = torch.exp(nodes.params["scales"])
    tri = nodes.body.rest(nodes.betas)[0][nodes.instance_ids[:, None], nodes.body.faces[nodes.faces]]
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * cross.norm(dim=-1)
    # in-plane scale sqrt(area / Gaussians in the triangle): between sqrt(area / 400) and sqrt(area)
    assert torch.allclose(s[:, 0], s[:, 1]) and torch.allclose(s[:, 2], 0.1 * s[:, 0])
    assert (s[:, 0] <= area.sqrt() * 1.0001).all() and (s[:, 0] >= (area / 400).sqrt() * 0.9999).all()
    # each Gaussian's normal axis is its triangle's normal
    n = torch.nn.functional.normalize(cross, dim=-1)
    axis = quat_to_rotmat(nodes.get_gaussians()["quats"])[:, :, 2]
    torch.testing.assert_close(axis, n, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="smpl_face"):
        p = {k: v.detach() for k, v in nodes.params.items() if k != FACE_KEY}
        SMPLNodes(p, nodes.body, nodes.betas, sh_degree=1)


# ---------------------------------------------------------------------------------------------
# the synthetic walker model and people.json
# ---------------------------------------------------------------------------------------------
def test_synthetic_model_reproduces_people_json_poses(tmp_path):
    sb = synthetic_body_model()
    body = SMPLBody(read_body_model(write_body_model(tmp_path / "walker.pkl", sb.arrays, True)), torch.float64)
    _, recs = _walkers(n=4, T=8)
    worst_corner = worst_joint = 0.0
    for rec in recs:
        p = pedestrian_smpl(rec)
        T = len(p.valid)
        out = body(torch.tensor(p.betas)[None].expand(T, -1), torch.tensor(p.rotmats), torch.tensor(p.transl))
        np.testing.assert_allclose(rodrigues(torch.tensor(p.axis_angle)).numpy(), p.rotmats, atol=1e-12)
        for piece, part, sl in sb.layout:
            lo, hi = map(np.array, rec["pieces"][piece]["boxes"][part])
            c = np.array([[hi[a] if b >> a & 1 else lo[a] for a in range(3)] for b in range(8)])
            P = np.array(rec["pieces"][piece]["piece_to_world"])
            want = np.einsum("tij,bj->tbi", P[:, :3, :3], c) + P[:, None, :3, 3]
            worst_corner = max(worst_corner, np.abs(out.vertices[:, sl].numpy() - want).max())
        for j, name in enumerate(JOINTS):       # a limb's joint is its piece's origin
            piece = JOINT_BOX[name][0]
            if piece != "body":
                P = np.array(rec["pieces"][piece]["piece_to_world"])
                worst_joint = max(worst_joint, np.abs(out.joints[:, j].numpy() - P[:, :3, 3]).max())
                np.testing.assert_allclose(out.joint_transforms[:, j, :3, :3].numpy(), P[:, :3, :3], atol=1e-9)
        np.testing.assert_allclose(out.joints[:, 0].numpy(), p.pelvis, atol=1e-9)
    assert worst_corner < 1e-4 and worst_joint < 1e-4


def test_humanpose_file_round_trip_and_camera_frames(tmp_path):
    _, recs = _walkers(n=1, T=4)
    p = pedestrian_smpl(recs[0])
    cam = np.tile(np.eye(4), (4, 1, 1))
    cam[:, :3, :3] = _rz(30)                         # camera 0 turned 30 degrees about z at every frame
    orient_cam = np.einsum("ji,tjk->tik", _rz(30), p.rotmats[:, 0])   # world orientation in camera 0's frame
    valid = np.array([True, True, False, True])
    write_humanpose(tmp_path, {7: humanpose_record(orient_cam, p.rotmats[:, 1:], np.tile(p.betas, (4, 1)), valid,
                                                   selected_cam=np.where(valid, 0, -1), transl=p.pelvis),
                               9: humanpose_record(p.rotmats[:, 0], p.rotmats[:, 1:], np.tile(p.betas, (4, 1)),
                                                   valid)})
    tracks = read_humanpose(tmp_path)
    assert sorted(tracks) == [7, 9]
    R = tracks[7].rotmats({0: cam})
    np.testing.assert_allclose(R[valid], p.rotmats[valid], atol=1e-6)
    np.testing.assert_allclose(R[2, 0], np.eye(3))                 # no parameters at frame 2
    np.testing.assert_allclose(tracks[9].rotmats()[valid], p.rotmats[valid], atol=1e-6)
    np.testing.assert_allclose(tracks[7].transl, p.pelvis, atol=1e-5)
    np.testing.assert_allclose(tracks[7].mean_betas(), p.betas, atol=1e-6)
    with pytest.raises(SMPLFileError, match="selected_cam_idx 0 is not one of the cameras"):
        tracks[7].world_orient({1: cam})


@pytest.mark.parametrize("change,message", [
    (lambda d: d[7]["smpl"].pop("betas"), "instance 7: missing ['betas']"),
    (lambda d: d[7]["smpl"].update(body_pose=torch.zeros(4, 9, 2)), "instance 7: body_pose has shape [4, 9, 2]"),
    (lambda d: d[7]["smpl"].update(global_orient=torch.zeros(3, 1, 3, 3)), "global_orient has 3 frames, expected 4"),
    (lambda d: d[7].update(selected_cam_idx=torch.tensor([0, -1, 0, 0])), "a valid frame has selected_cam_idx -1"),
    (lambda d: d.update({"ped": d[7]}), "instance key 'ped' is not an instance id"),
])
def test_malformed_humanpose_file_is_one_clear_error(tmp_path, change, message):
    T = 4
    data = {7: humanpose_record(np.tile(np.eye(3), (T, 1, 1)), np.tile(np.eye(3), (T, 9, 1, 1)), np.zeros((T, 10)),
                                np.ones(T, bool), selected_cam=np.zeros(T, int))}
    change(data)
    path = tmp_path / "humanpose" / "smpl.pkl"
    path.parent.mkdir()
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(SMPLFileError) as err:
        read_humanpose(tmp_path)
    assert str(path) in str(err.value) and message in str(err.value)
    with pytest.raises(SMPLFileError, match="not found"):
        read_humanpose(tmp_path / "elsewhere")


def test_people_humanpose_file_poses_the_walker_model_as_people_json(tmp_path):
    """write_people_humanpose (camera-frame orientations, as drivestudio writes them) -> read_humanpose ->
    stack_humanposes -> LBS of the walker model at the stacked root: people.json's pieces."""
    from scenes.geometry import OPENCV_TO_DATASET, make_pose, rot_z
    from scenes.smpl_format import stack_humanposes
    from scenes.smpl_synthetic import write_people_humanpose, write_walker_model
    T = 5
    figs = [pedestrian(11, i, T, 10.0, STREET_LAYOUT) for i in range(3)]
    log_from_street = make_pose(rot_z(0.7), (120.0, -40.0, 3.0))
    truth = people_truth(figs, log_from_street, first_key=4)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt/people.json").write_text(__import__("json").dumps(truth))
    (tmp_path / "extrinsics").mkdir()
    (tmp_path / "ego_pose").mkdir()
    extr = make_pose(rot_z(0.3), (1.5, 0.1, 2.0))
    np.savetxt(tmp_path / "extrinsics/0.txt", extr)
    ego = [log_from_street @ make_pose(rot_z(0.05 * t), (10.0 + t, 0.5, 0.0)) for t in range(T)]
    for t in range(T):
        np.savetxt(tmp_path / f"ego_pose/{t:03d}.txt", ego[t])
    write_people_humanpose(tmp_path)
    tracks = read_humanpose(tmp_path)
    assert sorted(tracks) == [4, 5, 6] and all(tr.orient_frame == "camera" for tr in tracks.values())
    c2w = {0: np.stack([e @ extr @ OPENCV_TO_DATASET for e in ego])}
    poses = stack_humanposes(tracks, [6, 4], cam_to_world=c2w)
    assert poses.rotmats.shape == (T, 2, len(JOINTS), 3, 3) and poses.valid.all() and poses.root.shape == (T, 2, 3)
    body = SMPLBody(read_body_model(write_walker_model(tmp_path / "walker.npz")), torch.float64)
    sb = synthetic_body_model()
    for k, inst in enumerate([6, 4]):
        rec = truth["figures"][inst - 4]
        J0 = body.rest(poses.betas[k:k + 1].double())[1][0, 0]
        out = body(poses.betas[k:k + 1].double().expand(T, -1), poses.rotmats[:, k].double(),
                   poses.root[:, k].double() - J0)
        for piece, part, sl in sb.layout:
            lo, hi = map(np.array, rec["pieces"][piece]["boxes"][part])
            c = np.array([[hi[a] if b >> a & 1 else lo[a] for a in range(3)] for b in range(8)])
            P = np.array(rec["pieces"][piece]["piece_to_world"])
            want = np.einsum("tij,bj->tbi", P[:, :3, :3], c) + P[:, None, :3, 3]
            np.testing.assert_allclose(out.vertices[:, sl].numpy(), want, atol=1e-4)   # float32 in the file
    # the scene's world (first ego frame): cameras given in it, the file's root turned by world_from_log
    W = np.linalg.inv(ego[0])
    scene = stack_humanposes(tracks, [6, 4], cam_to_world={0: W @ c2w[0]}, world_from_log=W)
    Wt = torch.tensor(W, dtype=torch.float32)
    torch.testing.assert_close(scene.rotmats[:, :, 0], Wt[:3, :3] @ poses.rotmats[:, :, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(scene.rotmats[:, :, 1:], poses.rotmats[:, :, 1:])
    torch.testing.assert_close(scene.root, poses.root @ Wt[:3, :3].T + Wt[:3, 3], atol=1e-4, rtol=0)
    later = stack_humanposes(tracks, [6, 4], cam_to_world={0: c2w[0][2:4]}, start=2, end=4)
    torch.testing.assert_close(later.rotmats, poses.rotmats[2:4])
    torch.testing.assert_close(later.root, poses.root[2:4])
    with pytest.raises(SMPLFileError, match=r"frames \[3, 9\) outside its 5 frames"):
        stack_humanposes(tracks, [6], cam_to_world=c2w, start=3, end=9)
    with pytest.raises(SMPLFileError, match=r"no parameters for instances \[9\]"):
        stack_humanposes(tracks, [4, 9], cam_to_world=c2w)


def test_frame_pose_places_the_stacked_parameters_as_world_gaussians_expects():
    from scenes.smpl_format import HumanPoses
    from models.gaussians.smpl_nodes import frame_pose
    nodes, params, _ = _nodes()
    T = len(params[0].valid)
    poses = HumanPoses([0, 1], torch.tensor(np.stack([p.rotmats for p in params], 1), dtype=torch.float32),
                       torch.ones(T, 2, dtype=torch.bool), nodes.betas,
                       torch.tensor(np.stack([p.pelvis for p in params], 1), dtype=torch.float32))
    poses.valid[2, 1] = False
    rot, inst, present = frame_pose(poses, 2)
    want_rot, want_inst = _frame_inputs(params, 2, torch.float32)
    torch.testing.assert_close(rot, want_rot)
    torch.testing.assert_close(inst, want_inst)
    assert present.tolist() == [True, False]
    refine = SMPLPoseRefinement(2, T, len(JOINTS))
    with torch.no_grad():
        refine.residual[0, 2, 4] = torch.tensor([0.0, 0.3, 0.0])
    rot_r, _, _ = frame_pose(poses, 2, refine)
    torch.testing.assert_close(rot_r[0, 4], rodrigues(torch.tensor([0.0, 0.3, 0.0])) @ want_rot[0, 4])
    no_root = HumanPoses(poses.instances, poses.rotmats, poses.valid, poses.betas, None)
    with pytest.raises(ValueError, match="pass box_to_world"):
        frame_pose(no_root, 0)
    boxes = torch.eye(4).repeat(2, 1, 1)
    boxes[:, :3, 3] = torch.tensor([[1.0, 2, 3], [4, 5, 6]])
    torch.testing.assert_close(frame_pose(no_root, 0, box_to_world=boxes)[1], boxes)
