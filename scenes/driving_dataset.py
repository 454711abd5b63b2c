"""A driving scene in memory: views (image, camera, masks, depths), LiDAR, instance tracks.

World = the ego frame of the first loaded frame (drivestudio's alignment), for every dataset:
    camera_to_world = world_from_log @ camera_to_log(t, cam)
where the dataset's format (scenes/sources.py) says how a camera reaches the log world (camera -> ego
-> ego_pose, or a per-frame camera -> world file) and whether its axes need the Waymo -> OpenCV change.
Cameras are OpenCV (x right, y down, z forward); K is at the loaded resolution with pixel centres
at +0.5. Everything is read and checked in `DrivingScene.load`, before any training starts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.cameras import Camera

from .geometry import project_points, rigid_inverse, transform_points
from .processed_layout import (LayoutIndex, SceneFormatError, index_layout, read_depth, read_image, read_lidar,
                               read_mask)
from .dataset_format import NODE_TYPES
from .undistort import has_distortion, undistort_image, undistort_mask

logger = logging.getLogger("scenes")


@dataclass(eq=False)
class SparseDepth:
    """A mostly empty depth map held as its filled pixels: flat indices (row * width + col) and z."""

    index: torch.Tensor            # int64 [M]
    z: torch.Tensor                # float32 [M]
    width: int
    height: int

    @classmethod
    def from_dense(cls, depth: np.ndarray) -> "SparseDepth":
        flat = depth.reshape(-1)
        idx = np.flatnonzero(flat)
        return cls(torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(flat[idx].astype(np.float32)),
                   depth.shape[1], depth.shape[0])

    def to(self, device) -> "SparseDepth":
        return SparseDepth(self.index.to(device), self.z.to(device), self.width, self.height)

    def dense(self) -> torch.Tensor:
        out = torch.zeros(self.height * self.width, dtype=torch.float32, device=self.z.device)
        out[self.index] = self.z
        return out.view(self.height, self.width)


@dataclass(eq=False)
class DepthFile:
    """A ground-truth depth map read from its file when asked for (not held in memory)."""

    path: Path
    stored_size: tuple           # (W, H) of the file
    size: tuple                  # (w, h) loaded

    def load(self) -> torch.Tensor:
        return torch.from_numpy(_downscale_depth(read_depth(self.path, self.stored_size), self.size).copy())


@dataclass(eq=False)  # tensors: compare by identity
class View:
    """One image of the scene. Held compactly (a 960x640 view is ~3 MB, not ~13 MB): the pixels as
    uint8, the LiDAR depth as its filled pixels, the ground-truth depth as its file; `image`,
    `lidar_depth` and `gt_depth` give the float maps on demand (the same values as before)."""

    pixels: torch.Tensor           # uint8 [H, W, 3], as stored
    K: torch.Tensor                # float32 [3, 3]
    camera_to_world: torch.Tensor  # float32 [4, 4], OpenCV axes
    width: int
    height: int
    sky_mask: torch.Tensor         # bool [H, W]
    dynamic_mask: torch.Tensor     # bool [H, W]
    lidar: SparseDepth             # camera z of the nearest LiDAR return per pixel
    gt_depth_file: DepthFile | None  # camera z, inf for sky (synthetic scenes only)
    frame_idx: int                 # frame number of the files (ego_pose/{frame_idx:03d}.txt)
    cam_name: str
    time: float                    # frame time normalised to [0, 1] over the loaded frames
    image_path: Path | None = None
    human_mask: torch.Tensor | None = None   # bool [H, W]: pedestrians and cyclists; None where none is seen

    @property
    def image(self) -> torch.Tensor:
        """float32 [H, W, 3] in [0, 1], on the pixels' device."""
        return self.pixels.float() / 255.0

    @property
    def lidar_depth(self) -> torch.Tensor:
        """float32 [H, W], camera z of the nearest LiDAR return, 0 where none."""
        return self.lidar.dense()

    @property
    def gt_depth(self) -> torch.Tensor | None:
        """float32 [H, W] camera z, inf for sky; read from its file (None where the scene has none)."""
        return None if self.gt_depth_file is None else self.gt_depth_file.load()

    def on(self, device) -> "View":
        """A copy with its tensors on `device` (the dataset's own stay on the CPU)."""
        return replace(self, pixels=self.pixels.to(device), K=self.K.to(device),
                       camera_to_world=self.camera_to_world.to(device), sky_mask=self.sky_mask.to(device),
                       dynamic_mask=self.dynamic_mask.to(device), lidar=self.lidar.to(device),
                       human_mask=None if self.human_mask is None else self.human_mask.to(device))

    @property
    def camera(self) -> Camera:
        """The view's pinhole camera (pose, K, size; viewmat = its rigid inverse)."""
        return Camera(self.camera_to_world, self.K, self.width, self.height)


@dataclass(eq=False)  # tensors: compare by identity
class InstanceTrack:
    """A rigid instance: per annotated frame, object -> world (box centre, x forward, z up) and size."""

    id: str
    class_name: str
    frame_idx: np.ndarray          # [F] int, absolute frame numbers
    obj_to_world: torch.Tensor     # float32 [F, 4, 4] in the scene world
    box_size: torch.Tensor         # float32 [F, 3] l, w, h
    moving: bool
    node_type: str | None = None   # RigidNodes / SMPLNodes / DeformableNodes by the class map; None: no node
    key: str | None = None         # its instances_info.json key (humanpose/smpl.pkl's instance id)

    def pose_at(self, frame: int) -> torch.Tensor | None:
        hit = np.nonzero(self.frame_idx == frame)[0]
        return None if len(hit) == 0 else self.obj_to_world[int(hit[0])]

    def contains(self, frame: int, points: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
        """bool [N]: which world points lie inside the box at `frame` (expanded by margin metres)."""
        hit = np.nonzero(self.frame_idx == frame)[0]
        if len(hit) == 0:
            return torch.zeros(len(points), dtype=torch.bool)
        k = int(hit[0])
        local = transform_points(rigid_inverse(self.obj_to_world[k].double()), points.double())
        half = self.box_size[k].double() / 2 + margin
        return (local.abs() <= half).all(dim=1)


@dataclass(eq=False)  # tensors: compare by identity
class LidarPoints:
    origins: torch.Tensor      # float32 [M, 3] world
    points: torch.Tensor       # float32 [M, 3] world
    frame_idx: torch.Tensor    # int64 [M]
    time: torch.Tensor         # float32 [M] normalised frame time
    flow: torch.Tensor         # float32 [M, 3] scene flow of the hit surface, world axes (m/s)
    flow_class: torch.Tensor   # float32 [M]
    ground: torch.Tensor       # float32 [M]
    intensity: torch.Tensor    # float32 [M]


@dataclass
class LoadOptions:
    cameras: list | None = None
    start_frame: int = 0
    end_frame: int | None = None      # exclusive; None = all
    downscale: float = 1.0
    test_every: int = 0               # 0: no test views; k >= 2: frames start + k//2 + i*k are test frames
    max_init_points: int = 30000
    load_gt: bool = True
    moving_threshold: float = 1.0     # metres a track's centre must travel to count as moving
    seed: int = 0
    dataset: str = "auto"             # a name in scenes.sources.available(), or auto-detect
    undistort: bool | None = None     # None: the dataset's drivestudio default (Waymo: on)
    class_map: dict = field(default_factory=dict)  # instance class -> node type, over the dataset's own map


def _resize(arr: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize(size, resample))


def _downscale_mask(mask: np.ndarray, size) -> np.ndarray:
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    return _resize((mask * 255).astype(np.uint8), size, Image.BOX) > 127


def _downscale_depth(depth: np.ndarray, size) -> np.ndarray:
    """Nearest sample to each new pixel centre (depths must not be averaged across edges or inf)."""
    H, W = depth.shape
    w, h = size
    if (W, H) == (w, h):
        return depth
    cols = np.minimum(((np.arange(w) + 0.5) * W / w).astype(int), W - 1)
    rows = np.minimum(((np.arange(h) + 0.5) * H / h).astype(int), H - 1)
    return depth[rows[:, None], cols[None, :]]


def project_depth(points: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest camera z per pixel of the points that project inside; 0 where none."""
    cam = transform_points(world_to_cam, points)
    z = cam[:, 2]
    front = z > 1e-3
    cam, z = cam[front], z[front]
    u, v = (np.floor(c).astype(np.int64) for c in project_points(cam, K))
    ok = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    depth = np.full(height * width, np.inf)
    np.minimum.at(depth, v[ok] * width + u[ok], z[ok])
    depth[~np.isfinite(depth)] = 0.0
    return depth.reshape(height, width).astype(np.float32)


def colour_points_from_views(points: np.ndarray, frames: np.ndarray, views, select: np.ndarray | None = None
                             ) -> np.ndarray:
    """RGB [M, 3] of world points from the first view of their own frame that sees them (in front,
    inside the image, not hidden behind that pixel's nearest LiDAR return); -1 where no view does.
    ``select`` (bool [M]) limits which points are coloured."""
    rgb = np.full((len(points), 3), -1.0)
    for v in views:
        todo = (frames == v.frame_idx) & (rgb[:, 0] < 0)
        if select is not None:
            todo &= select
        sel = np.nonzero(todo)[0]
        if len(sel) == 0:
            continue
        w2c = rigid_inverse(v.camera_to_world.double().cpu().numpy())
        cam = transform_points(w2c, points[sel])
        z = cam[:, 2]
        u, r = (np.floor(c) for c in project_points(cam, v.K.double().cpu().numpy()))
        ok = (z > 1e-3) & (u >= 0) & (u < v.width) & (r >= 0) & (r < v.height)
        ui, ri = u[ok].astype(int), r[ok].astype(int)
        nearest = v.lidar_depth.cpu().numpy()[ri, ui]
        visible = z[ok] <= nearest * 1.01 + 1e-3       # not hidden behind another return
        rgb[sel[ok][visible]] = v.image.cpu().numpy()[ri[visible], ui[visible]]
    return rgb


def _class_map(fmt, overrides):
    """class name -> node type: the dataset's map (drivestudio's OBJECT_CLASS_NODE_MAPPING), then the
    config's scene.class_map entries over it (a value of null/none removes a class)."""
    table = dict(fmt.class_nodes)
    for name, node in dict(overrides or {}).items():
        if node in (None, "none", "None", ""):
            table.pop(str(name), None)
            continue
        if node not in NODE_TYPES:
            raise SceneFormatError(f"scene.class_map[{name!r}]: expected one of {list(NODE_TYPES)} or null; "
                                   f"found {node!r}")
        table[str(name)] = node
    return table.get


def _lidar_columns(raw: np.ndarray, layout, path, dataset: str) -> dict:
    """The columns the loader uses, by the dataset's layout; what a dataset does not store is zero
    (ray origins: the sensor at the origin of the file's frame, as drivestudio assumes)."""
    n = len(raw)
    xyz = [layout.col(c) for c in ("x", "y", "z")]
    point = raw[:, xyz].astype(np.float64)
    if layout.col("origin_x") is not None:
        origin = raw[:, [layout.col(c) for c in ("origin_x", "origin_y", "origin_z")]].astype(np.float64)
        # Waymo's ray origins are the sensors on the car; far-off origins mean the file is not
        # laid out as this dataset's (a silent misreading would train on garbage).
        far = np.linalg.norm(origin, axis=1) > 10.0
        if n and far.mean() > 0.01:
            raise SceneFormatError(f"{path}: expected {dataset} LiDAR rows ({layout.describe()}) with ray origins on "
                                   f"the vehicle; found {int(far.sum())} of {n} origins more than 10 m away - is this "
                                   "scene from another dataset? (set scene.dataset)")
    else:
        origin = np.zeros_like(point)
    flow = np.zeros_like(point)
    if layout.col("flow_x") is not None:
        flow = raw[:, [layout.col(c) for c in ("flow_x", "flow_y", "flow_z")]].astype(np.float64)
    extra = np.zeros((n, 3), np.float32)
    for j, name in enumerate(("flow_class", "ground", "intensity")):
        if layout.col(name) is not None:
            extra[:, j] = raw[:, layout.col(name)]
    return {"origin": origin, "point": point, "flow": flow, "extra": extra}


class DrivingScene:
    """Views, LiDAR and tracks of one scene, in the world of the first loaded ego frame."""

    def __init__(self, root: Path, views: list[View], test_frames: set, lidar: LidarPoints,
                 instances: list[InstanceTrack], world_from_log: np.ndarray, index: LayoutIndex,
                 options: LoadOptions):
        self.root = Path(root)
        self.views = views
        self.train_views = [v for v in views if v.frame_idx not in test_frames]
        self.test_views = [v for v in views if v.frame_idx in test_frames]
        self.lidar = lidar
        self.instances = instances
        self.world_from_log = world_from_log
        self.options = options
        self.cameras = list(index.cameras)
        self.frames = sorted({v.frame_idx for v in views})
        self.gt_mesh_path: Path | None = index.gt_mesh if options.load_gt else None
        self.gt_vehicle_mesh_paths: dict = dict(index.gt_vehicle_meshes) if options.load_gt else {}
        self.dataset = index.dataset.name
        self.dataset_title = index.dataset.title
        self.warnings = list(index.warnings)
        # The GT static mesh is stored in the ego frame of frame 0; this maps it into the scene world.
        first_ego = index.ego_poses[0] if index.ego_poses is not None else np.eye(4)
        self.gt_mesh_to_world = torch.tensor(world_from_log @ first_ego, dtype=torch.float32)
        positions = torch.stack([v.camera_to_world[:3, 3] for v in views])
        self.scene_center = positions.mean(dim=0)
        # gsplat's "scene scale": 1.1 x the largest camera distance from the centre of the cameras.
        self.scene_radius = float(max(1.1 * (positions - self.scene_center).norm(dim=1).max(), 1.0))
        self._init_cache = None

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def moving_instances(self) -> list[InstanceTrack]:
        return [t for t in self.instances if t.moving]

    def load_gt_mesh(self):
        """The static GT mesh (trimesh) in the scene world, or None."""
        if self.gt_mesh_path is None:
            return None
        import trimesh
        mesh = trimesh.load(self.gt_mesh_path, process=False)
        mesh.apply_transform(self.gt_mesh_to_world.double().numpy())
        return mesh

    def static_lidar_mask(self, margin: float = 0.1) -> torch.Tensor:
        """bool [M]: LiDAR points not inside any moving instance's box at their frame."""
        keep = torch.ones(len(self.lidar.points), dtype=torch.bool)
        for track in self.moving_instances:
            for f in np.unique(self.lidar.frame_idx.numpy()):
                sel = torch.nonzero(self.lidar.frame_idx == int(f)).squeeze(1)
                inside = track.contains(int(f), self.lidar.points[sel], margin)
                keep[sel[inside]] = False
        return keep

    def init_points(self, max_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Static LiDAR points seen by a training camera, coloured from it: (xyz [N,3], rgb [N,3]) float32."""
        max_points = self.options.max_init_points if max_points is None else int(max_points)
        if self._init_cache is None:
            static = self.static_lidar_mask()
            pts = self.lidar.points.numpy().astype(np.float64)
            fidx = self.lidar.frame_idx.numpy()
            rgb = colour_points_from_views(pts, fidx, self.train_views, select=static.numpy())
            keep = np.nonzero(rgb[:, 0] >= 0)[0]
            self._init_cache = (pts[keep].astype(np.float32), rgb[keep].astype(np.float32))
        xyz, rgb = self._init_cache
        if len(xyz) > max_points:
            choice = np.random.default_rng(self.options.seed).choice(len(xyz), max_points, replace=False)
            choice.sort()
            xyz, rgb = xyz[choice], rgb[choice]
        return torch.from_numpy(xyz.copy()), torch.from_numpy(rgb.copy())

    def aabb(self) -> torch.Tensor:
        """[2, 3] bounds of the static LiDAR points (1st and 99th percentiles)."""
        pts = self.lidar.points[self.static_lidar_mask()]
        return torch.stack([torch.quantile(pts, 0.01, dim=0), torch.quantile(pts, 0.99, dim=0)])

    # ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, root: Path, options: LoadOptions | None = None, index: LayoutIndex | None = None) -> "DrivingScene":
        options = options or LoadOptions()
        if index is None:
            index = index_layout(Path(root), options.cameras, options.dataset)
        fmt = index.dataset
        undistort = fmt.undistort if options.undistort is None else bool(options.undistort)
        node_of = _class_map(fmt, options.class_map)
        T = index.num_frames
        start = int(options.start_frame)
        end = T if options.end_frame in (None, -1) else int(options.end_frame)
        if not (0 <= start < end <= T):
            raise SceneFormatError(f"{root}: expected 0 <= start_frame < end_frame <= {T} (frames in {fmt.poses}/); "
                                   f"found start_frame={start}, end_frame={end}")
        if options.test_every == 1 or options.test_every < 0:
            raise SceneFormatError(f"scene.test_every: expected 0 (no test views) or >= 2; found {options.test_every}")
        if options.downscale <= 0:
            raise SceneFormatError(f"scene.downscale: expected a positive factor; found {options.downscale}")
        frames = list(range(start, end))
        span = max(end - 1 - start, 1)
        times = {t: (t - start) / span for t in frames}
        test_frames = set()
        if options.test_every >= 2:
            test_frames = {t for t in frames if (t - start) % options.test_every == options.test_every // 2}
        world_from_log = index.world_from_log(start)

        # LiDAR first: its depth maps go into the views. Each frame's points stay float64 until the
        # views are built (the depth maps are projected from them); what is kept is float32, converted
        # frame by frame (200 frames of Waymo-sized sweeps are ~10M points).
        origins, points, counts, extra, flows = [], [], [], [], []
        for t in frames:
            cols = _lidar_columns(read_lidar(index.lidar_path(t), fmt.lidar, fmt.name), fmt.lidar,
                                  index.lidar_path(t), fmt.name)
            to_world = world_from_log @ index.lidar_to_log(t)
            origins.append((cols["origin"] @ to_world[:3, :3].T + to_world[:3, 3]).astype(np.float32))
            points.append(cols["point"] @ to_world[:3, :3].T + to_world[:3, 3])
            counts.append(len(cols["point"]))
            flows.append((cols["flow"] @ to_world[:3, :3].T).astype(np.float32))
            extra.append(cols["extra"])
        fidx_np = np.repeat(np.asarray(frames, np.int64), counts)
        extra_np = np.concatenate(extra)
        del extra
        lidar = LidarPoints(
            origins=torch.from_numpy(np.concatenate(origins)),
            points=torch.from_numpy(np.concatenate([p.astype(np.float32) for p in points])),
            frame_idx=torch.from_numpy(fidx_np),
            time=torch.from_numpy(((fidx_np - start) / span).astype(np.float32)),
            flow=torch.from_numpy(np.concatenate(flows)),
            flow_class=torch.from_numpy(extra_np[:, 0].copy()),
            ground=torch.from_numpy(extra_np[:, 1].copy()),
            intensity=torch.from_numpy(extra_np[:, 2].copy()),
        )
        del extra_np, origins, flows
        per_frame_points = dict(zip(frames, points))

        views = []
        sizes = {}
        warned = set()
        for t in frames:
            for cam in index.cameras:
                path = index.images[(t, cam)]
                img = read_image(path)
                H0, W0 = img.shape[:2]
                if cam in sizes and sizes[cam] != (W0, H0):
                    raise SceneFormatError(f"{path}: expected {sizes[cam][0]}x{sizes[cam][1]} like the other images "
                                           f"of camera {cam}; found {W0}x{H0}")
                sizes[cam] = (W0, H0)
                w = max(int(round(W0 / options.downscale)), 1)
                h = max(int(round(H0 / options.downscale)), 1)
                fx, fy, cx, cy = index.intrinsics[cam][:4]
                dist = index.intrinsics[cam][4:9]
                K0 = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
                sx, sy = w / W0, h / H0
                K = np.array([[fx * sx, 0, cx * sx], [0, fy * sy, cy * sy], [0, 0, 1.0]])
                c2w = world_from_log @ index.camera_to_log(t, cam)
                lens = undistort and has_distortion(dist)
                if lens:   # at the stored resolution, where the coefficients' K holds
                    img = undistort_image(img, K0, dist)
                elif has_distortion(dist) and cam not in warned:
                    warned.add(cam)
                    logger.warning("camera %s: intrinsics/%s.txt has distortion coefficients %s but scene.undistort "
                                   "is off; the images are used as pinhole images", cam, cam, np.round(dist, 5).tolist())
                if (w, h) != (W0, H0):
                    img = _resize(img, (w, h), Image.BOX)

                def mask(files):
                    if files is None:
                        return np.zeros((h, w), bool)
                    m = read_mask(files[(t, cam)], (W0, H0))
                    return _downscale_mask(undistort_mask(m, K0, dist) if lens else m, (w, h))

                sky = mask(index.sky_masks)
                dyn = mask(index.dynamic_masks)
                human = mask(index.human_masks) if index.human_masks is not None else None
                human = torch.from_numpy(human.copy()) if human is not None and human.any() else None
                gt = None
                if options.load_gt and index.gt_depth is not None:
                    gt = DepthFile(index.gt_depth[(t, cam)], (W0, H0), (w, h))
                    read_depth(gt.path, gt.stored_size, check_only=True)   # checked now, read when asked for
                lidar_depth = project_depth(per_frame_points[t], K, rigid_inverse(c2w), w, h)
                views.append(View(
                    pixels=torch.from_numpy(np.require(img, np.uint8, ["C", "W"])),
                    K=torch.tensor(K, dtype=torch.float32),
                    camera_to_world=torch.tensor(c2w, dtype=torch.float32),
                    width=w, height=h,
                    sky_mask=torch.from_numpy(sky.copy()),
                    dynamic_mask=torch.from_numpy(dyn.copy()),
                    lidar=SparseDepth.from_dense(lidar_depth),
                    gt_depth_file=gt, frame_idx=t, cam_name=cam, time=times[t], image_path=path,
                    human_mask=human,
                ))

        instances = []
        for rec in index.tracks:
            sel = (rec.frame_idx >= start) & (rec.frame_idx < end)
            if not sel.any():
                continue
            o2w = np.einsum("ij,fjk->fik", world_from_log, rec.obj_to_world[sel])
            centres = o2w[:, :3, 3]
            moving = bool(np.linalg.norm(centres - centres[0], axis=1).max() > options.moving_threshold)
            instances.append(InstanceTrack(
                id=rec.id, class_name=rec.class_name, frame_idx=rec.frame_idx[sel],
                obj_to_world=torch.tensor(o2w, dtype=torch.float32),
                box_size=torch.tensor(rec.box_size[sel], dtype=torch.float32), moving=moving,
                node_type=node_of(rec.class_name), key=getattr(rec, "key", None)))
        unmapped = sorted({t.class_name for t in instances if t.node_type is None})
        if unmapped:
            logger.info("instance classes without a node type in the %s class map: %s", fmt.name, ", ".join(unmapped))
        return cls(root, views, test_frames, lidar, instances, world_from_log, index, options)
