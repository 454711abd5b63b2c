"""Gaussians in the compact formats today's splat viewers read, each written by a maintained library:

  SPZ   Niantic's compressed splat format (version 3: gzip, 24-bit fixed-point positions with 12
        fractional bits, 8-bit colours, log-scales, opacities and SH, smallest-three quaternions),
        written and read by ``gsply``.
  glTF  a binary glTF (.glb) whose one POINTS primitive carries Khronos' ``KHR_gaussian_splatting``
        attributes (float32: POSITION, KHR_gaussian_splatting:ROTATION xyzw unit quaternions,
        :SCALE linear, :OPACITY in [0, 1], :SH_DEGREE_l_COEF_n for every band the model has, with
        n = m + l, as INRIA's and gsplat's SH order), built and read by ``pygltflib``.

Both formats fix their axes: SPZ stores right-up-back (OpenGL) coordinates and glTF is y-up, so the
Gaussians handed to these writers are already in x right, y up, z back (``Y_UP_FROM_WORLD``).
Parameters are raw, as the models hold them: log scales, logit opacities, wxyz quaternions,
``sh0 [N, 1, 3]`` and ``shN [N, K, 3]``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from models.atomic_write import atomic_write


def write_gaussians_ply(path: Union[str, Path], params: Dict[str, Tensor],
                        extra: Optional[Dict[str, np.ndarray]] = None, comments: Sequence[str] = (),
                        pad_to_degree3: bool = True) -> Path:
    """INRIA's 3DGS PLY (binary little endian, float32 properties only): x y z nx ny nz f_dc_0..2
    f_rest_* (channel-major; with ``pad_to_degree3``, 45 of them, the bands a lower-degree model
    lacks written as 0, as INRIA's readers expect; without, the model's own 3·(K−1)) opacity
    (logit) scale_0..2 (log) rot_0..3 (wxyz); ``extra`` float columns are appended after INRIA's."""
    from plyfile import PlyData, PlyElement

    n = int(params["means"].shape[0])
    shN = params["shN"].detach().cpu().float()
    if pad_to_degree3 and shN.shape[1] < 15:  # INRIA's readers (SIBR, its load_ply) take degree 3: higher bands are zero, same colours
        shN = torch.cat([shN, torch.zeros(n, 15 - shN.shape[1], 3)], dim=1)
    f_rest = shN.transpose(1, 2).reshape(n, -1).numpy()
    columns: List[tuple] = [("x", params["means"][:, 0]), ("y", params["means"][:, 1]), ("z", params["means"][:, 2]),
                            ("nx", torch.zeros(n)), ("ny", torch.zeros(n)), ("nz", torch.zeros(n))]
    columns += [(f"f_dc_{i}", params["sh0"].reshape(n, 3)[:, i]) for i in range(3)]
    columns += [(f"f_rest_{i}", f_rest[:, i]) for i in range(f_rest.shape[1])]
    columns += [("opacity", params["opacities"].reshape(n))]
    columns += [(f"scale_{i}", params["scales"][:, i]) for i in range(3)]
    columns += [(f"rot_{i}", params["quats"][:, i]) for i in range(4)]
    for name, values in (extra or {}).items():
        columns.append((name, np.asarray(values)))
    arr = np.empty(n, dtype=[(name, "<f4") for name, _ in columns])
    for name, values in columns:
        arr[name] = (values.detach().cpu().numpy() if isinstance(values, Tensor) else values).astype(np.float32)
    ply = PlyData([PlyElement.describe(arr, "vertex")], byte_order="<", comments=list(comments))
    return atomic_write(path, ply.write)


# right-up-back = a half turn about x of the viewer axes (right-down-forward, models.exports)
UP_FROM_DOWN = torch.diag(torch.tensor([1.0, -1.0, -1.0]))

KHR = "KHR_gaussian_splatting"


def _numpy(params: Dict[str, Tensor]) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().float().numpy() for k, v in params.items()}


def _degree(shN: np.ndarray) -> int:
    degree = int(round(math.sqrt(shN.shape[1] + 1))) - 1
    if (degree + 1) ** 2 - 1 != shN.shape[1] or degree > 3:
        raise ValueError(f"shN has {shN.shape[1]} bands per channel: expected 0, 3, 8 or 15")
    return degree


def write_spz(path: Union[str, Path], params: Dict[str, Tensor]) -> Path:
    """Niantic's SPZ (version 3) of raw Gaussian parameters that are in right-up-back axes."""
    import gsply

    p = _numpy(params)
    n = len(p["means"])
    data = gsply.GSData.from_arrays(p["means"], p["scales"], p["quats"], p["opacities"].reshape(n),
                                    p["sh0"].reshape(n, 3), p["shN"] if p["shN"].shape[1] else None,
                                    format="ply", sh_degree=_degree(p["shN"]))

    def write(f) -> None:  # gsply writes to a path: write beside, then hand the bytes on
        tmp = Path(f.name).with_suffix(".gsply.spz")
        try:
            gsply.write_spz(tmp, data, version=3)
            f.write(tmp.read_bytes())
        finally:
            tmp.unlink(missing_ok=True)

    return atomic_write(path, write)


def gltf_attributes(params: Dict[str, Tensor]) -> Dict[str, np.ndarray]:
    """{attribute semantic: float32 array} of KHR_gaussian_splatting for raw parameters."""
    p = _numpy(params)
    n = len(p["means"])
    q = p["quats"] / np.linalg.norm(p["quats"], axis=1, keepdims=True)
    out = {"POSITION": p["means"],
           f"{KHR}:ROTATION": np.ascontiguousarray(q[:, [1, 2, 3, 0]]),  # wxyz -> glTF's xyzw
           f"{KHR}:SCALE": np.exp(p["scales"]),
           f"{KHR}:OPACITY": 1.0 / (1.0 + np.exp(-p["opacities"].reshape(n))),
           f"{KHR}:SH_DEGREE_0_COEF_0": p["sh0"].reshape(n, 3)}
    k = 0
    for degree in range(1, _degree(p["shN"]) + 1):
        for coef in range(2 * degree + 1):
            out[f"{KHR}:SH_DEGREE_{degree}_COEF_{coef}"] = p["shN"][:, k]
            k += 1
    return {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in out.items()}


def write_gltf(path: Union[str, Path], params: Dict[str, Tensor]) -> Path:
    """A binary glTF (.glb) with one KHR_gaussian_splatting primitive (ellipse kernel, sRGB BT.709
    display-referred colours, as trained) of raw Gaussian parameters that are in y-up axes."""
    import pygltflib as gl

    attributes = gltf_attributes(params)
    blob = bytearray()
    views, accessors, semantics = [], [], {}
    for name, array in attributes.items():
        count = len(array)
        kind = {1: gl.SCALAR, 3: gl.VEC3, 4: gl.VEC4}[1 if array.ndim == 1 else array.shape[1]]
        views.append(gl.BufferView(buffer=0, byteOffset=len(blob), byteLength=array.nbytes, target=gl.ARRAY_BUFFER))
        accessor = gl.Accessor(bufferView=len(views) - 1, componentType=gl.FLOAT, count=count, type=kind)
        if name == "POSITION":  # glTF requires its bounds
            accessor.min, accessor.max = array.min(0).tolist(), array.max(0).tolist()
        accessors.append(accessor)
        semantics[name] = len(accessors) - 1
        blob += array.tobytes()  # float32 arrays keep every view 4-byte aligned
    primitive = gl.Primitive(attributes=gl.Attributes(**semantics), mode=gl.POINTS,  # custom semantics as keywords
                             extensions={KHR: {"kernel": "ellipse", "colorSpace": "srgb_rec709_display"}})
    gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator="omnire-sugar models/splat_files.py"),
                    scene=0, scenes=[gl.Scene(nodes=[0])], nodes=[gl.Node(mesh=0, name="gaussians")],
                    meshes=[gl.Mesh(primitives=[primitive], name="gaussians")],
                    buffers=[gl.Buffer(byteLength=len(blob))], bufferViews=views, accessors=accessors,
                    extensionsUsed=[KHR])
    gltf.set_binary_blob(bytes(blob))
    return atomic_write(path, lambda f: f.write(b"".join(gltf.save_to_bytes())))


def read_gltf_attributes(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """{semantic: array} of the first primitive of a .glb written by write_gltf (through pygltflib)."""
    import pygltflib as gl

    gltf = gl.GLTF2().load_binary(str(path))
    blob = gltf.binary_blob()
    primitive = gltf.meshes[0].primitives[0]
    width = {gl.SCALAR: 1, gl.VEC3: 3, gl.VEC4: 4}
    out = {}
    for name, index in vars(primitive.attributes).items():
        if index is None:
            continue
        acc = gltf.accessors[index]
        view = gltf.bufferViews[acc.bufferView]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        array = np.frombuffer(blob, dtype="<f4", count=acc.count * width[acc.type], offset=start)
        out[name] = (array.reshape(acc.count, -1) if width[acc.type] > 1 else array).copy()
    return out
