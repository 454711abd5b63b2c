"""A body model in SMPL's file layout, read safely, and its linear blend skinning (LBS) in torch.

The SMPL model file is licensed and never ships with the project: a user points a run at their own
copy. What is read is SMPL's own layout (the official ``.pkl`` of SMPL v1.1.0 or an ``.npz`` with the
same keys):

    v_template    [V, 3]             rest (T-pose) vertices of the mean shape
    shapedirs     [V, 3, B]          shape blend shapes (betas)
    posedirs      [V, 3, (J-1)*9]    pose blend shapes, driven by (R_j - I) of joints 1.. (row-major)
    J_regressor   [J, V]             joints from vertices (dense, or scipy sparse in the .pkl)
    weights       [V, J]             skinning weights
    kintree_table [2, J]             row 0 the parent's id, row 1 the joint's id (root's parent any)
    f             [F, 3]             triangles

A ``.pkl`` is read with a restricted unpickler (`safe_pickle_load`): only numpy arrays and dtypes,
scipy.sparse matrices and a few inert builtins can be rebuilt, so a file cannot run code when it is
opened. (SMPL v1.0.0's files hold chumpy objects: they are refused with a note to use v1.1.0 or .npz.)

LBS as SMPL defines it, for a batch of N bodies:
    v_shaped = v_template + shapedirs · betas                   (shape_blend)
    J        = J_regressor · v_shaped                           (regress_joints)
    R_j      = rodrigues(pose_j)                                (rotation per joint, parent frame)
    v_posed  = v_shaped + posedirs · vec(R_1.. - I)             (pose_blend)
    G_j      = G_parent(j) · [R_j | J_j - J_parent(j)]          (forward_kinematics; G_0 = [R_0 | J_0])
    A_j      = G_j · [I | -J_j]                                 (skinning transform of joint j)
    T_v      = Σ_j weights[v, j] · A_j;  v' = T_v · v_posed + transl
"""
from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

BODY_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class BodyModelError(ValueError):
    """A body-model file that cannot be used: the message names the file and what was expected."""


# ---------------------------------------------------------------------------------------------
# restricted unpickling
# ---------------------------------------------------------------------------------------------
_NUMPY_MODULES = {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric"}
_NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}
_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}
# builtins that build plain values and nothing else (no eval / getattr / __import__ / apply)
_INERT_BUILTINS = {"object", "set", "frozenset", "list", "dict", "tuple", "slice", "complex", "bytearray",
                   "int", "float", "str", "bool", "bytes", "range"}


def _safe_torch_storage_from_bytes(b: bytes):
    """torch.storage._load_from_bytes with torch.load's own restricted loader (weights_only)."""
    return torch.load(io.BytesIO(b), weights_only=True)


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global that SafeUnpickler does not rebuild."""


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that rebuilds only numpy arrays / dtypes / scalars, scipy.sparse matrices, inert
    builtins and (``allow_torch``) torch tensors, whose storages go through torch's weights-only
    loader; any other global (os.system, builtins.eval, chumpy's Ch, ...) raises UnpicklingError."""

    def __init__(self, file, allow_torch: bool = False, **kwargs):
        super().__init__(file, **kwargs)
        self.allow_torch = allow_torch

    def find_class(self, module: str, name: str):
        if module in _NUMPY_MODULES and name in _NUMPY_NAMES:
            return super().find_class(module, name)
        if module.startswith("scipy.sparse") and name in _SPARSE_NAMES:
            import scipy.sparse
            return getattr(scipy.sparse, name)
        if module in ("builtins", "__builtin__") and name in _INERT_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
                              ("copyreg", "__newobj__"), ("_codecs", "encode"),
                              ("collections", "OrderedDict")}:
            return super().find_class(module, name)
        if self.allow_torch:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return super().find_class(module, name)
            if (module, name) == ("torch.storage", "_load_from_bytes"):
                return _safe_torch_storage_from_bytes
            if module == "torch" and name in {"FloatStorage", "DoubleStorage", "LongStorage", "IntStorage",
                                              "BoolStorage", "HalfStorage", "ByteStorage", "float32",
                                              "float64", "int64", "int32", "bool", "Size"}:
                return super().find_class(module, name)
        hint = (" (a chumpy object: SMPL v1.0.0 files need chumpy; use SMPL v1.1.0's .pkl or an .npz of the "
                "same keys)") if module.startswith("chumpy") else ""
        raise RefusedGlobal(f"refusing to load {module}.{name}: only numpy arrays, scipy.sparse "
                                     f"matrices and plain values may be in this file{hint}")


def safe_pickle_load(path: Union[str, Path], allow_torch: bool = False):
    """Unpickle ``path`` with `SafeUnpickler` (latin1 for Python 2 pickles such as SMPL's)."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            return SafeUnpickler(fh, allow_torch=allow_torch, encoding="latin1").load()
        except RefusedGlobal as e:
            raise BodyModelError(f"{path}: {e}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError) as e:
            raise BodyModelError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------
@dataclass
class BodyModelArrays:
    """A body model as float64 / int64 numpy arrays (J_regressor dense), with its kinematic tree as
    ``parents`` (index of each joint's parent, -1 for the root; parents come before children)."""

    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    faces: np.ndarray
    source: str = ""

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.weights.shape[1])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])


def _dense(x):
    if hasattr(x, "toarray"):          # scipy.sparse
        return x.toarray()
    return np.asarray(x)


def _array(path, data, key, ndim, dtype=np.float64):
    if key not in data:
        raise BodyModelError(f"{path}: missing key {key!r} (SMPL's layout: {', '.join(BODY_KEYS)})")
    try:
        a = _dense(data[key])
        if a.dtype == object:
            raise TypeError("object array")
        a = a.astype(dtype)
    except (TypeError, ValueError) as e:
        raise BodyModelError(f"{path}: key {key!r} is not a numeric array ({e})") from None
    if a.ndim != ndim:
        raise BodyModelError(f"{path}: key {key!r} has shape {a.shape}, expected {ndim} dimensions")
    return a


def _parents_from_kintree(path, kintree: np.ndarray) -> np.ndarray:
    if kintree.shape[0] != 2:
        raise BodyModelError(f"{path}: key 'kintree_table' has shape {kintree.shape}, expected [2, J]")
    J = kintree.shape[1]
    ids = [int(i) for i in kintree[1]]
    col = {j: c for c, j in enumerate(ids)}
    if len(col) != J:
        raise BodyModelError(f"{path}: key 'kintree_table': joint ids in row 1 are not distinct")
    parents = np.full(J, -1, dtype=np.int64)
    for c in range(1, J):
        p = int(kintree[0, c])
        if p not in col or col[p] >= c:
            raise BodyModelError(f"{path}: key 'kintree_table': joint {ids[c]}'s parent {p} is not an earlier "
                                 f"joint (expected the tree in SMPL's order, parents before children)")
        parents[c] = col[p]
    return parents


def body_model_from_dict(data: dict, source: str = "<dict>") -> BodyModelArrays:
    """Check and convert SMPL-layout arrays (a dict as read from the file)."""
    path = source
    v = _array(path, data, "v_template", 2)
    V = v.shape[0]
    if v.shape[1] != 3:
        raise BodyModelError(f"{path}: key 'v_template' has shape {v.shape}, expected [V, 3]")
    # SMPL writes the root's parent as uint32's largest value: int64 holds it
    kintree = _array(path, data, "kintree_table", 2, np.int64)
    parents = _parents_from_kintree(path, kintree)
    J = len(parents)
    shapedirs = _array(path, data, "shapedirs", 3)
    posedirs = _array(path, data, "posedirs", 3)
    J_reg = _array(path, data, "J_regressor", 2)
    weights = _array(path, data, "weights", 2)
    faces = _array(path, data, "f", 2, np.int64)
    expect = {"shapedirs": (shapedirs, (V, 3, None)), "posedirs": (posedirs, (V, 3, (J - 1) * 9)),
              "J_regressor": (J_reg, (J, V)), "weights": (weights, (V, J)), "f": (faces, (None, 3))}
    for key, (a, shape) in expect.items():
        if any(s is not None and a.shape[i] != s for i, s in enumerate(shape)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise BodyModelError(f"{path}: key {key!r} has shape {list(a.shape)}, expected {want} "
                                 f"(V={V} vertices of v_template, J={J} joints of kintree_table)")
    if faces.size and (faces.min() < 0 or faces.max() >= V):
        raise BodyModelError(f"{path}: key 'f' indexes vertices outside [0, {V})")
    for key, a in (("v_template", v), ("shapedirs", shapedirs), ("posedirs", posedirs),
                   ("J_regressor", J_reg), ("weights", weights)):
        if not np.isfinite(a).all():
            raise BodyModelError(f"{path}: key {key!r} holds non-finite values")
    return BodyModelArrays(v, shapedirs, posedirs, J_reg, weights, parents, faces, source=str(source))


def read_body_model(path: Union[str, Path]) -> BodyModelArrays:
    """Read a body model in SMPL's layout from a ``.pkl`` (restricted unpickling) or ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise BodyModelError(f"{path}: body-model file not found (SMPL's .pkl or .npz; it is licensed and "
                             f"not shipped: download it from smpl.is.tue.mpg.de)")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise BodyModelError(f"{path}: not a readable .npz of plain arrays ({e})") from None
    else:
        data = safe_pickle_load(path)
    if not isinstance(data, dict):
        raise BodyModelError(f"{path}: expected a dict of SMPL's keys, got {type(data).__name__}")
    return body_model_from_dict(data, source=str(path))


def write_body_model(path: Union[str, Path], model: BodyModelArrays, sparse_regressor: bool = False) -> Path:
    """Write ``model`` in SMPL's layout (``.npz``, or ``.pkl`` of numpy arrays with protocol 2 as
    SMPL's own files; ``sparse_regressor`` stores J_regressor as scipy's csc_matrix, as SMPL does)."""
    path = Path(path)
    kintree = np.stack([np.where(model.parents < 0, 4294967295, model.parents),
                        np.arange(model.num_joints)]).astype(np.int64)
    data = {"v_template": model.v_template, "shapedirs": model.shapedirs, "posedirs": model.posedirs,
            "J_regressor": model.J_regressor, "weights": model.weights, "kintree_table": kintree,
            "f": model.faces.astype(np.uint32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, **data)
    else:
        if sparse_regressor:
            import scipy.sparse
            data["J_regressor"] = scipy.sparse.csc_matrix(model.J_regressor)
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    return path


# ---------------------------------------------------------------------------------------------
# the maths (torch, differentiable; batched over a leading N)
# ---------------------------------------------------------------------------------------------
def rodrigues(axis_angle: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of axis-angle vectors ``[..., 3]`` (exp of the skew matrix);
    a Taylor series near zero keeps the value and gradient finite there."""
    aa = axis_angle
    t2 = (aa * aa).sum(-1)
    small = t2 < 1e-6
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_safe)
    a = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - torch.cos(t)) / t2_safe)
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(K.shape)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def shape_blend(v_template: Tensor, shapedirs: Tensor, betas: Tensor) -> Tensor:
    """``[N, V, 3]`` rest vertices of shapes ``betas [N, B']`` (the first B' blend shapes)."""
    B = betas.shape[-1]
    return v_template + torch.einsum("vcb,nb->nvc", shapedirs[..., :B], betas)


def regress_joints(J_regressor: Tensor, vertices: Tensor) -> Tensor:
    """``[N, J, 3]`` joints of ``vertices [N, V, 3]``."""
    return torch.einsum("jv,nvc->njc", J_regressor, vertices)


def pose_features(rotmats: Tensor) -> Tensor:
    """``[N, (J-1)*9]``: (R_j - I) of joints 1.. flattened row-major (what posedirs multiply)."""
    eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
    return (rotmats[:, 1:] - eye).reshape(rotmats.shape[0], -1)


def pose_blend(posedirs: Tensor, rotmats: Tensor) -> Tensor:
    """``[N, V, 3]`` pose-corrective offsets of poses ``rotmats [N, J, 3, 3]``."""
    return torch.einsum("vcp,np->nvc", posedirs, pose_features(rotmats))


def _rigid(R: Tensor, t: Tensor) -> Tensor:
    top = torch.cat([R, t[..., :, None]], -1)
    bottom = torch.zeros(*R.shape[:-2], 1, 4, dtype=R.dtype, device=R.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], -2)


def forward_kinematics(rotmats: Tensor, joints: Tensor, parents: Sequence[int]):
    """Posed joint transforms ``G [N, J, 4, 4]`` (joint frame -> model) and skinning transforms
    ``A [N, J, 4, 4]`` (rest model -> posed model: G with the rest joint taken out), for local
    rotations ``rotmats [N, J, 3, 3]`` (each in its parent's frame) and rest ``joints [N, J, 3]``."""
    parents = [int(p) for p in parents]
    rel_parts = [joints[:, 0]] + [joints[:, j] - joints[:, parents[j]] for j in range(1, len(parents))]
    local = _rigid(rotmats, torch.stack(rel_parts, 1))
    G: List[Tensor] = []
    for j, p in enumerate(parents):
        G.append(local[:, j] if p < 0 else G[p] @ local[:, j])
    G_t = torch.stack(G, 1)
    # A_j = G_j · [I | -J_j]: rotation of G_j, translation t_j - R_j · J_j
    t = G_t[..., :3, 3] - torch.einsum("njab,njb->nja", G_t[..., :3, :3], joints)
    A = _rigid(G_t[..., :3, :3], t)
    return G_t, A


def blend_transforms(weights: Tensor, A: Tensor) -> Tensor:
    """``[N, V, 4, 4]`` per-vertex skinning transforms Σ_j weights[v, j] · A[n, j] (weights [V, J])."""
    return torch.einsum("vj,njab->nvab", weights, A)


@dataclass
class LBSOutput:
    vertices: Tensor            # [N, V, 3] posed (and translated)
    joints: Tensor              # [N, J, 3] posed joint positions
    joint_transforms: Tensor    # [N, J, 4, 4] joint frame -> world (G, translated)
    skin_transforms: Tensor     # [N, J, 4, 4] rest -> world per joint (A, translated)
    vertex_transforms: Tensor   # [N, V, 4, 4] rest (+ pose offsets) -> world per vertex
    shaped: Tensor              # [N, V, 3] rest vertices of the shape (pose zero)
    rest_joints: Tensor         # [N, J, 3]
    pose_offsets: Tensor        # [N, V, 3]


class SMPLBody(nn.Module):
    """A body model's arrays as buffers, and LBS of batches of bodies."""

    def __init__(self, arrays: BodyModelArrays, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.source = arrays.source
        self.parents = [int(p) for p in arrays.parents]
        for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
            self.register_buffer(name, torch.as_tensor(getattr(arrays, name), dtype=dtype), persistent=False)
        self.register_buffer("faces", torch.as_tensor(arrays.faces, dtype=torch.long), persistent=False)

    @classmethod
    def from_file(cls, path: Union[str, Path], dtype: torch.dtype = torch.float32) -> "SMPLBody":
        return cls(read_body_model(path), dtype)

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    def rest(self, betas: Tensor):
        """(rest vertices [N, V, 3], rest joints [N, J, 3]) of shapes ``betas [N, B']``."""
        v = shape_blend(self.v_template, self.shapedirs, betas)
        return v, regress_joints(self.J_regressor, v)

    def forward(self, betas: Tensor, rotmats: Tensor, transl: Optional[Tensor] = None) -> LBSOutput:
        """LBS of ``N`` bodies: ``betas [N, B']``, ``rotmats [N, J, 3, 3]`` (joint 0 the global
        orientation; `rodrigues` turns SMPL's axis-angles into these), ``transl [N, 3]`` (SMPL's: added
        after posing; the root joint then sits at R_0-independent J_0 + transl)."""
        v_shaped, J = self.rest(betas)
        offsets = pose_blend(self.posedirs, rotmats)
        G, A = forward_kinematics(rotmats, J, self.parents)
        if transl is not None:
            shift = torch.zeros_like(G)
            shift[..., :3, 3] = transl[:, None, :]
            G, A = G + shift, A + shift
        T = blend_transforms(self.weights, A)
        v = v_shaped + offsets
        verts = torch.einsum("nvab,nvb->nva", T[..., :3, :3], v) + T[..., :3, 3]
        return LBSOutput(verts, G[..., :3, 3], G, A, T, v_shaped, J, offsets)


def body_state(body: "SMPLBody") -> dict:
    """The body model's arrays as CPU tensors (what a checkpoint keeps, so that an opened run poses
    its SMPL nodes without the body-model file: the checkpoint then holds the licensed arrays)."""
    out = {name: getattr(body, name).detach().cpu().clone()
           for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "faces")}
    out["parents"] = torch.tensor(body.parents, dtype=torch.long)
    return out


def body_from_state(state) -> "SMPLBody":
    """The inverse of `body_state` (checked as a file's arrays are)."""
    data = {k: torch.as_tensor(state[k]).numpy() for k in ("v_template", "shapedirs", "posedirs", "J_regressor",
                                                           "weights")}
    parents = torch.as_tensor(state["parents"]).numpy().astype(np.int64)
    data["kintree_table"] = np.stack([np.where(parents < 0, 4294967295, parents), np.arange(len(parents))])
    data["f"] = torch.as_tensor(state["faces"]).numpy()
    return SMPLBody(body_model_from_dict(data, source="checkpoint"))

