"""Reading drivestudio's processed scene layout, with every check done when the scene is opened.

One folder per scene:
  images/{t:03d}_{cam}.jpg|png       ego_pose/{t:03d}.txt (4x4 ego -> world)
  extrinsics/{cam}.txt (4x4 camera -> ego, Waymo axes x fwd, y left, z up)
  intrinsics/{cam}.txt (fx fy cx cy k1 k2 p1 p2 k3)
  lidar/{t:03d}.bin (float32 N x 14, ego frame)
  sky_masks/{t:03d}_{cam}.png, dynamic_masks/all/{t:03d}_{cam}.png          (optional)
  instances/instances_info.json, instances/frame_instances.json              (optional)
  gt/static_mesh.ply, gt/vehicles/<id>.ply, gt/depth/{t:03d}_{cam}.npy        (synthetic scenes only)
Anything wrong raises SceneFormatError naming the file and what was expected.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

LIDAR_COLUMNS = 14
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
REQUIRED_DIRS = ("images", "ego_pose", "extrinsics", "intrinsics", "lidar")


class SceneFormatError(ValueError):
    """A scene folder does not have the expected layout or contents."""


def _fail(path, expected: str, found: str | None = None):
    msg = f"{path}: expected {expected}"
    if found is not None:
        msg += f"; found {found}"
    raise SceneFormatError(msg)


def read_matrix(path: Path, shape=(4, 4)) -> np.ndarray:
    """A whitespace-separated text matrix of the given shape, finite, rigid bottom row for 4x4."""
    what = f"a {shape[0]}x{shape[1]} matrix of numbers"
    if not path.is_file():
        _fail(path, what, "no such file")
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except Exception as e:  # numpy raises ValueError for text, others for encoding problems
        _fail(path, what, f"unparsable text ({e})")
    if m.shape != shape:
        _fail(path, what, f"shape {m.shape[0]}x{m.shape[1]}")
    if not np.isfinite(m).all():
        _fail(path, what + " with finite values", "NaN or inf")
    if shape == (4, 4):
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
            _fail(path, "a rigid 4x4 transform with last row 0 0 0 1", f"last row {m[3].tolist()}")
        r = m[:3, :3]
        if not np.allclose(r.T @ r, np.eye(3), atol=1e-3):
            _fail(path, "a rigid 4x4 transform (orthonormal rotation block)", "a non-orthonormal 3x3 block")
    return m


def read_intrinsics(path: Path) -> np.ndarray:
    """fx fy cx cy k1 k2 p1 p2 k3 (drivestudio writes one value per line)."""
    what = "9 numbers: fx fy cx cy k1 k2 p1 p2 k3"
    if not path.is_file():
        _fail(path, what, "no such file")
    try:
        v = np.loadtxt(path, dtype=np.float64).reshape(-1)
    except Exception as e:
        _fail(path, what, f"unparsable text ({e})")
    if v.size != 9:
        _fail(path, what, f"{v.size} numbers")
    if not np.isfinite(v).all() or v[0] <= 0 or v[1] <= 0:
        _fail(path, what + " with fx, fy > 0", f"{v[:4].tolist()}")
    return v


def read_json(path: Path):
    if not path.is_file():
        _fail(path, "a JSON file", "no such file")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _fail(path, "valid JSON", f"a parse error ({e})")


def read_image(path: Path) -> np.ndarray:
    """uint8 [H, W, 3]."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        _fail(path, "a readable JPEG or PNG image", f"{type(e).__name__}: {e}")


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """bool [H, W] (pixels > 127), checked against the image size (W, H)."""
    try:
        with Image.open(path) as im:
            m = np.asarray(im.convert("L")) > 127
    except Exception as e:
        _fail(path, "a readable PNG mask", f"{type(e).__name__}: {e}")
    if (m.shape[1], m.shape[0]) != tuple(size):
        _fail(path, f"a mask of the image's size {size[0]}x{size[1]}", f"{m.shape[1]}x{m.shape[0]}")
    return m


def read_lidar(path: Path) -> np.ndarray:
    if not path.is_file():
        _fail(path, f"a float32 N x {LIDAR_COLUMNS} LiDAR file", "no such file")
    n = path.stat().st_size
    if n % (4 * LIDAR_COLUMNS):
        _fail(path, f"a float32 N x {LIDAR_COLUMNS} LiDAR file (size a multiple of {4 * LIDAR_COLUMNS} bytes)",
              f"{n} bytes")
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, LIDAR_COLUMNS)
    if not np.isfinite(pts[:, :6]).all():
        _fail(path, "finite LiDAR origins and points", "NaN or inf")
    return pts


def read_depth(path: Path, size: tuple[int, int]) -> np.ndarray:
    try:
        d = np.load(path)
    except Exception as e:
        _fail(path, "a .npy float depth map", f"{type(e).__name__}: {e}")
    if d.ndim != 2 or (d.shape[1], d.shape[0]) != tuple(size):
        _fail(path, f"a depth map of the image's size {size[0]}x{size[1]}", f"shape {d.shape}")
    return d.astype(np.float32)


@dataclass
class TrackRecord:
    id: str
    class_name: str
    frame_idx: np.ndarray       # [F] int
    obj_to_world: np.ndarray    # [F, 4, 4] in the log world (as stored)
    box_size: np.ndarray        # [F, 3] l, w, h


def read_instances(folder: Path) -> tuple[list[TrackRecord], dict]:
    info_path = folder / "instances_info.json"
    frames_path = folder / "frame_instances.json"
    info = read_json(info_path)
    frames = read_json(frames_path)
    if not isinstance(info, dict):
        _fail(info_path, "an object mapping instance ids to records", type(info).__name__)
    if not isinstance(frames, dict):
        _fail(frames_path, "an object mapping frame indices to lists of instance ids", type(frames).__name__)
    tracks = []
    for key, rec in info.items():
        where = f"{info_path} [instance {key}]"
        if not isinstance(rec, dict) or "frame_annotations" not in rec:
            _fail(where, "a record with 'id', 'class_name' and 'frame_annotations'")
        ann = rec["frame_annotations"]
        if not isinstance(ann, dict) or not all(k in ann for k in ("frame_idx", "obj_to_world", "box_size")):
            _fail(where, "'frame_annotations' with 'frame_idx', 'obj_to_world' and 'box_size'")
        try:
            fidx = np.asarray(ann["frame_idx"], dtype=np.int64).reshape(-1)
            o2w = np.asarray(ann["obj_to_world"], dtype=np.float64)
            size = np.asarray(ann["box_size"], dtype=np.float64)
        except (TypeError, ValueError) as e:
            _fail(where, "numeric frame_idx, obj_to_world and box_size", str(e))
        n = len(fidx)
        if o2w.shape != (n, 4, 4):
            _fail(where, f"obj_to_world: {n} 4x4 matrices (one per frame_idx)", f"shape {list(o2w.shape)}")
        if size.shape != (n, 3):
            _fail(where, f"box_size: {n} triples [l, w, h]", f"shape {list(size.shape)}")
        if not (np.isfinite(o2w).all() and np.isfinite(size).all()):
            _fail(where, "finite obj_to_world and box_size", "NaN or inf")
        tracks.append(TrackRecord(id=str(rec.get("id", key)), class_name=str(rec.get("class_name", "Vehicle")),
                                  frame_idx=fidx, obj_to_world=o2w, box_size=size))
    return tracks, frames


@dataclass
class LayoutIndex:
    """What a scene folder holds, validated: frames, cameras, file paths, matrices."""

    root: Path
    num_frames: int
    cameras: list[str]
    ego_poses: np.ndarray                      # [T, 4, 4] ego -> log world
    extrinsics: dict                           # cam -> [4, 4]
    intrinsics: dict                           # cam -> [9]
    images: dict                               # (t, cam) -> Path
    sky_masks: dict | None = None
    dynamic_masks: dict | None = None
    gt_depth: dict | None = None
    tracks: list = field(default_factory=list)
    frame_instances: dict = field(default_factory=dict)
    gt_mesh: Path | None = None
    gt_vehicle_meshes: dict = field(default_factory=dict)

    def lidar_path(self, t: int) -> Path:
        return self.root / "lidar" / f"{t:03d}.bin"


_FRAME_FILE = re.compile(r"^(\d+)\.txt$")
_VIEW_FILE = re.compile(r"^(\d+)_([^.]+)\.(\w+)$")


def _frames_in(folder: Path, pattern=_FRAME_FILE) -> dict:
    out = {}
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def _views_in(folder: Path, exts) -> dict:
    out = {}
    for p in folder.iterdir():
        m = _VIEW_FILE.match(p.name)
        if m and ("." + m.group(3).lower()) in exts:
            out[(int(m.group(1)), m.group(2))] = p
    return out


def _check_complete(folder: Path, found: dict, num_frames: int, cameras, what: str):
    for cam in cameras:
        have = sorted(t for (t, c) in found if c == cam)
        missing = sorted(set(range(num_frames)) - set(have))
        if missing:
            shown = ", ".join(f"{t:03d}_{cam}" for t in missing[:5]) + (" ..." if len(missing) > 5 else "")
            _fail(folder, f"{num_frames} {what} for camera {cam} (one per ego_pose/ frame)",
                  f"{len([t for t in have if t < num_frames])}; missing {shown}")


def index_layout(root: Path, cameras=None) -> LayoutIndex:
    """Validate the folder structure and read all small files (matrices, JSON). Images are not decoded."""
    root = Path(root)
    if not root.is_dir():
        _fail(root, "a processed scene folder", "no such directory")
    for d in REQUIRED_DIRS:
        if not (root / d).is_dir():
            _fail(root / d, f"a folder (a processed scene has {', '.join(REQUIRED_DIRS)})", "it is missing")

    poses = _frames_in(root / "ego_pose")
    if not poses:
        _fail(root / "ego_pose", "files 000.txt, 001.txt, ... (4x4 ego -> world)", "none")
    T = max(poses) + 1
    missing = sorted(set(range(T)) - set(poses))
    if missing:
        _fail(root / "ego_pose", f"consecutive frames 000..{T - 1:03d}",
              "gaps at " + ", ".join(f"{t:03d}.txt" for t in missing[:5]))
    ego = np.stack([read_matrix(poses[t]) for t in range(T)])

    ext_files = {p.stem: p for p in (root / "extrinsics").glob("*.txt")}
    if cameras is None:
        cameras = sorted(ext_files, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
        if not cameras:
            _fail(root / "extrinsics", "one {cam}.txt per camera", "none")
    cameras = [str(c) for c in cameras]
    extr = {c: read_matrix(root / "extrinsics" / f"{c}.txt") for c in cameras}
    intr = {c: read_intrinsics(root / "intrinsics" / f"{c}.txt") for c in cameras}

    images = _views_in(root / "images", IMAGE_EXTS)
    _check_complete(root / "images", images, T, cameras, "images")
    lidar = _frames_in(root / "lidar", re.compile(r"^(\d+)\.bin$"))
    missing = sorted(set(range(T)) - set(lidar))
    if missing:
        _fail(root / "lidar", f"{T} LiDAR files (one per ego_pose/ frame)",
              f"{len(lidar)}; missing " + ", ".join(f"{t:03d}.bin" for t in missing[:5]))
    for t in range(T):
        size = lidar[t].stat().st_size
        if size % (4 * LIDAR_COLUMNS):
            _fail(lidar[t], f"a float32 N x {LIDAR_COLUMNS} LiDAR file (size a multiple of {4 * LIDAR_COLUMNS} bytes)",
                  f"{size} bytes")

    def optional_views(folder: Path, exts, what):
        if not folder.is_dir():
            return None
        found = _views_in(folder, exts)
        _check_complete(folder, found, T, cameras, what)
        return found

    index = LayoutIndex(root=root, num_frames=T, cameras=cameras, ego_poses=ego, extrinsics=extr,
                        intrinsics=intr, images=images)
    index.sky_masks = optional_views(root / "sky_masks", (".png",), "sky masks")
    index.dynamic_masks = optional_views(root / "dynamic_masks" / "all", (".png",), "dynamic masks")
    index.gt_depth = optional_views(root / "gt" / "depth", (".npy",), "depth maps")
    if (root / "instances").is_dir():
        index.tracks, index.frame_instances = read_instances(root / "instances")
    if (root / "gt" / "static_mesh.ply").is_file():
        index.gt_mesh = root / "gt" / "static_mesh.ply"
    if (root / "gt" / "vehicles").is_dir():
        index.gt_vehicle_meshes = {p.stem: p for p in sorted((root / "gt" / "vehicles").glob("*.ply"))}
    return index
