"""Reading drivestudio's processed scene layout, with every check done when the scene is opened.

One folder per scene; what the files mean depends on the dataset (scenes/sources.py and the
per-dataset modules scenes/waymo.py, nuscenes.py, ...):
  images/{t:03d}_{cam}.jpg|png
  ego_pose/{t:03d}.txt (4x4 ego -> world)  or, for nuScenes, lidar_pose/{t:03d}.txt (4x4 LiDAR -> world)
  extrinsics/{cam}.txt (4x4 camera -> ego)  or  extrinsics/{t:03d}_{cam}.txt (4x4 camera -> world per frame)
  intrinsics/{cam}.txt (fx fy cx cy k1 k2 p1 p2 k3)
  lidar/{t:03d}.bin (float32, the dataset's columns and frame)
  sky_masks/{t:03d}_{cam}.png, fine_dynamic_masks/all/ or dynamic_masks/all/{t:03d}_{cam}.png, and its
  human/ beside all/ (pedestrians and cyclists: evaluation's human-pixel PSNR)  (optional;
      an empty folder, as drivestudio creates before masks are extracted, counts as absent)
  instances/instances_info.json, instances/frame_instances.json              (optional)
  gt/static_mesh.ply, gt/vehicles/<id>.ply, gt/depth/{t:03d}_{cam}.npy        (synthetic scenes only)
Anything wrong raises SceneFormatError naming the file and what was expected.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .geometry import OPENCV_TO_DATASET, rigid_inverse
from .dataset_format import DatasetFormat
from .errors import SceneFormatError
from .sources import detect_format, get_format

logger = logging.getLogger("scenes")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


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


def lidar_size_error(path: Path, layout, dataset: str, size: int):
    _fail(path, f"a {dataset} LiDAR file: {layout.describe()}, so a size that is a multiple of "
                f"{4 * layout.width} bytes", f"{size} bytes ({size / 4:g} float32 values, not a whole number of "
                f"{layout.width}-column rows)")


def read_lidar(path: Path, layout=None, dataset: str = "waymo") -> np.ndarray:
    """float32 [N, columns] as the dataset's layout says; a size that does not fit is an error, never a
    reinterpretation."""
    if layout is None:
        layout = get_format("waymo").lidar
    if not path.is_file():
        _fail(path, f"a {dataset} LiDAR file: {layout.describe()}", "no such file")
    n = path.stat().st_size
    if n % (4 * layout.width):
        lidar_size_error(path, layout, dataset, n)
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, layout.width)
    xyz = [layout.col(c) for c in ("origin_x", "origin_y", "origin_z", "x", "y", "z") if layout.col(c) is not None]
    if not np.isfinite(pts[:, xyz]).all():
        _fail(path, "finite LiDAR origins and points", "NaN or inf")
    return pts


def read_depth(path: Path, size: tuple[int, int], check_only: bool = False) -> np.ndarray | None:
    """float32 [H, W] of a .npy depth map checked against the image size (W, H); `check_only`: read
    the file's header (memory-mapped), check it and return None."""
    try:
        d = np.load(path, mmap_mode="r" if check_only else None)
    except Exception as e:
        _fail(path, "a .npy float depth map", f"{type(e).__name__}: {e}")
    if d.ndim != 2 or (d.shape[1], d.shape[0]) != tuple(size):
        _fail(path, f"a depth map of the image's size {size[0]}x{size[1]}", f"shape {d.shape}")
    return None if check_only else d.astype(np.float32)


@dataclass
class TrackRecord:
    id: str
    class_name: str
    frame_idx: np.ndarray       # [F] int
    obj_to_world: np.ndarray    # [F, 4, 4] in the log world (as stored)
    box_size: np.ndarray        # [F, 3] l, w, h
    key: str | None = None      # its instances_info.json key (humanpose/smpl.pkl's instance id)


def read_instances(folder: Path, num_frames: int | None = None) -> tuple[list[TrackRecord], dict]:
    """instances_info.json and frame_instances.json as drivestudio writes them: instances keyed "0".."N-1"
    (the simplified ids; "id" holds the source's own), frame keys "0".."T-1" with lists of integer
    instance keys."""
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
        if num_frames is not None and n and (fidx.min() < 0 or fidx.max() >= num_frames):
            _fail(where, f"frame_idx within 0..{num_frames - 1} (the scene's frames)",
                  f"{int(fidx.min())}..{int(fidx.max())}")
        tracks.append(TrackRecord(id=str(rec.get("id", key)), class_name=str(rec.get("class_name", "Vehicle")),
                                  frame_idx=fidx, obj_to_world=o2w, box_size=size, key=str(key)))
    keys = {str(k) for k in info}
    for frame, ids in frames.items():
        if not str(frame).lstrip("-").isdigit() or not isinstance(ids, list):
            _fail(frames_path, "frame indices mapping to lists of instance ids", f"{frame!r}: {ids!r}")
        bad = [i for i in ids if isinstance(i, bool) or str(i) not in keys]
        if bad:
            _fail(frames_path, f"instance ids of instances_info.json (0..{len(keys) - 1}) at frame {frame}",
                  f"{bad[:3]}")
    return tracks, frames


@dataclass
class LayoutIndex:
    """What a scene folder holds, validated: dataset, frames, cameras, file paths, matrices."""

    root: Path
    dataset: DatasetFormat
    num_frames: int
    cameras: list[str]
    ego_poses: np.ndarray | None               # [T, 4, 4] ego -> log world (ego_pose/), where written
    lidar_poses: np.ndarray | None             # [T, 4, 4] LiDAR sensor -> log world (lidar_pose/), where written
    extrinsics: dict                           # cam -> [4, 4] camera -> ego as stored (per-camera datasets)
    intrinsics: dict                           # cam -> [9] fx fy cx cy k1 k2 p1 p2 k3
    images: dict                               # (t, cam) -> Path
    frame_extrinsics: dict = field(default_factory=dict)  # (t, cam) -> [4, 4] camera -> log world as stored
    sky_masks: dict | None = None
    dynamic_masks: dict | None = None
    dynamic_mask_dir: Path | None = None       # fine_dynamic_masks/all or dynamic_masks/all
    human_masks: dict | None = None            # <the dynamic masks' folder>/human: pedestrians and cyclists
    gt_depth: dict | None = None
    tracks: list = field(default_factory=list)
    frame_instances: dict = field(default_factory=dict)
    gt_mesh: Path | None = None
    gt_vehicle_meshes: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def lidar_path(self, t: int) -> Path:
        return self.root / "lidar" / f"{t:03d}.bin"

    def camera_to_log(self, t: int, cam: str) -> np.ndarray:
        """OpenCV camera (x right, y down, z forward) -> log world at frame t."""
        axes = OPENCV_TO_DATASET if self.dataset.camera_axes == "waymo" else np.eye(4)
        if self.dataset.extrinsics == "camera_to_world":
            return self.frame_extrinsics[(t, cam)] @ axes
        return self.ego_poses[t] @ self.extrinsics[cam] @ axes

    def lidar_to_log(self, t: int) -> np.ndarray:
        """The frame of lidar/{t}.bin's points -> log world."""
        return self.lidar_poses[t] if self.dataset.lidar.frame == "lidar_pose" else self.ego_poses[t]

    def world_from_log(self, start: int) -> np.ndarray:
        """Log world -> scene world: the ego frame at `start` (drivestudio's alignment), or for nuScenes,
        which writes no ego poses, camera 0 at `start` with its axes turned to x forward, y left, z up."""
        if self.dataset.world == "first_front_camera":
            return OPENCV_TO_DATASET @ rigid_inverse(self.frame_extrinsics[(start, "0")])
        return rigid_inverse(self.ego_poses[start])


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


def _check_complete(folder: Path, found: dict, num_frames: int, cameras, what: str, per: str = "ego_pose/"):
    for cam in cameras:
        have = sorted(t for (t, c) in found if c == cam)
        missing = sorted(set(range(num_frames)) - set(have))
        if missing:
            shown = ", ".join(f"{t:03d}_{cam}" for t in missing[:5]) + (" ..." if len(missing) > 5 else "")
            _fail(folder, f"{num_frames} {what} for camera {cam} (one per {per} frame)",
                  f"{len([t for t in have if t < num_frames])}; missing {shown}")


def _read_poses(folder: Path, what: str) -> np.ndarray:
    poses = _frames_in(folder)
    if not poses:
        _fail(folder, f"files 000.txt, 001.txt, ... ({what})", "none")
    T = max(poses) + 1
    missing = sorted(set(range(T)) - set(poses))
    if missing:
        _fail(folder, f"consecutive frames 000..{T - 1:03d}",
              "gaps at " + ", ".join(f"{t:03d}.txt" for t in missing[:5]))
    return np.stack([read_matrix(poses[t]) for t in range(T)])


def _sort_cameras(names):
    return sorted(names, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))


def resolve_format(root: Path, dataset="auto") -> tuple:
    """(DatasetFormat, how it was chosen) for scene.dataset = name or 'auto'."""
    if dataset in (None, "", "auto"):
        name, why = detect_format(root)
        return get_format(name), f"detected {name} ({why})"
    return get_format(dataset), "set by scene.dataset"


def index_layout(root: Path, cameras=None, dataset="auto") -> LayoutIndex:
    """Validate the folder structure and read all small files (matrices, JSON). Images are not decoded."""
    root = Path(root)
    if not root.is_dir():
        _fail(root, "a processed scene folder", "no such directory")
    for d in ("images", "extrinsics", "intrinsics", "lidar"):   # every dataset has these
        if not (root / d).is_dir():
            _fail(root / d, "a folder (a processed scene has images, extrinsics, intrinsics, lidar and ego_pose or "
                            "lidar_pose)", "it is missing")
    fmt, how = resolve_format(root, dataset)
    logger.info("%s: %s scene, %s", root, fmt.title, how)
    required = ("images", fmt.poses, "extrinsics", "intrinsics", "lidar")
    for d in required:
        if not (root / d).is_dir():
            _fail(root / d, f"a folder (a processed {fmt.name} scene has {', '.join(required)})", "it is missing")

    pose_what = "4x4 ego -> world" if fmt.poses == "ego_pose" else "4x4 LiDAR -> world"
    poses = _read_poses(root / fmt.poses, pose_what)
    T = len(poses)
    per = f"{fmt.poses}/"

    ext_names = sorted(p.name for p in (root / "extrinsics").glob("*.txt"))
    per_frame = [n for n in ext_names if _VIEW_FILE.match(n)]
    if fmt.extrinsics == "camera_to_ego" and per_frame:
        _fail(root / "extrinsics" / per_frame[0], f"per-camera camera -> ego files {{cam}}.txt, as {fmt.title} writes",
              "a per-frame camera -> world file, which nuScenes and PandaSet write (set scene.dataset)")
    if fmt.extrinsics == "camera_to_world" and len(per_frame) < len(ext_names):
        odd = [n for n in ext_names if n not in per_frame][0]
        _fail(root / "extrinsics" / odd, f"per-frame camera -> world files {{t:03d}}_{{cam}}.txt, as {fmt.title} "
              "writes", "a per-camera file, which Waymo, Argoverse 2, KITTI and nuPlan write (set scene.dataset)")

    if cameras is None:   # every camera with extrinsics
        if fmt.extrinsics == "camera_to_ego":
            cameras = _sort_cameras(n[:-4] for n in ext_names)
        else:
            cameras = _sort_cameras({_VIEW_FILE.match(n).group(2) for n in per_frame})
        if not cameras:
            _fail(root / "extrinsics", "{cam}.txt per camera" if fmt.extrinsics == "camera_to_ego"
                  else "{t:03d}_{cam}.txt per frame and camera", "none")
    cameras = [str(c) for c in cameras]
    known = {str(c) for c in fmt.cameras}
    for c in cameras:
        if c not in known:
            _fail(root, f"cameras of {fmt.title}: " + ", ".join(f"{k} {n}" for k, n in fmt.cameras.items()),
                  f"camera {c!r}")
    intr = {c: read_intrinsics(root / "intrinsics" / f"{c}.txt") for c in cameras}
    extr, frame_extr = {}, {}
    if fmt.extrinsics == "camera_to_ego":
        extr = {c: read_matrix(root / "extrinsics" / f"{c}.txt") for c in cameras}
    else:
        need = list(cameras) + (["0"] if fmt.world == "first_front_camera" and "0" not in cameras else [])
        found = _views_in(root / "extrinsics", (".txt",))
        _check_complete(root / "extrinsics", found, T, need, "per-frame camera -> world extrinsics", per)
        frame_extr = {(t, c): read_matrix(found[(t, c)]) for t in range(T) for c in need}

    images = _views_in(root / "images", IMAGE_EXTS)
    _check_complete(root / "images", images, T, cameras, "images", per)
    lidar = _frames_in(root / "lidar", re.compile(r"^(\d+)\.bin$"))
    missing = sorted(set(range(T)) - set(lidar))
    if missing:
        _fail(root / "lidar", f"{T} LiDAR files (one per {per} frame)",
              f"{len(lidar)}; missing " + ", ".join(f"{t:03d}.bin" for t in missing[:5]))
    for t in range(T):
        size = lidar[t].stat().st_size
        if size % (4 * fmt.lidar.width):
            lidar_size_error(lidar[t], fmt.lidar, fmt.name, size)

    empty = []

    def optional_views(folder: Path, exts, what):
        if not folder.is_dir():
            return None
        found = _views_in(folder, exts)
        if not found:
            empty.append(folder)
            return None
        _check_complete(folder, found, T, cameras, what, per)
        return found

    index = LayoutIndex(root=root, dataset=fmt, num_frames=T, cameras=cameras,
                        ego_poses=poses if fmt.poses == "ego_pose" else None,
                        lidar_poses=poses if fmt.poses == "lidar_pose" else None,
                        extrinsics=extr, intrinsics=intr, images=images, frame_extrinsics=frame_extr)
    index.sky_masks = optional_views(root / "sky_masks", (".png",), "sky masks")
    # drivestudio prefers fine_dynamic_masks/ (extracted by segmentation) over the box masks.
    for sub in ("fine_dynamic_masks", "dynamic_masks"):
        found = optional_views(root / sub / "all", (".png",), "dynamic masks")
        if found is not None:
            index.dynamic_masks, index.dynamic_mask_dir = found, root / sub / "all"
            index.human_masks = optional_views(root / sub / "human", (".png",), "human masks")
            break
    index.gt_depth = optional_views(root / "gt" / "depth", (".npy",), "depth maps")
    if empty:
        index.warnings.append("empty mask folder(s) treated as absent: " + ", ".join(str(f) for f in empty))
        logger.warning("%s", index.warnings[-1])
    if index.dynamic_mask_dir is not None:
        logger.info("%s: dynamic masks from %s", root, index.dynamic_mask_dir.relative_to(root))
    if (root / "instances").is_dir() and (root / "instances" / "instances_info.json").exists():
        index.tracks, index.frame_instances = read_instances(root / "instances", T)
    if (root / "gt" / "static_mesh.ply").is_file():
        index.gt_mesh = root / "gt" / "static_mesh.ply"
    if (root / "gt" / "vehicles").is_dir():
        index.gt_vehicle_meshes = {p.stem: p for p in sorted((root / "gt" / "vehicles").glob("*.ply"))}
    return index
