"""A contact sheet of a scene: per view, the image, sky and dynamic masks, GT depth and LiDAR depth."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .driving_dataset import DrivingScene

COLUMNS = ("image", "sky mask", "dynamic mask", "gt depth", "lidar depth")


def _depth_rgb(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """Inverse depth through matplotlib's turbo map; black where there is no value (0 or inf)."""
    from matplotlib import colormaps
    valid = np.isfinite(depth) & (depth > 0)
    inv = np.zeros_like(depth, dtype=np.float64)
    inv[valid] = (1.0 / depth[valid] - 1.0 / far) / (1.0 / near - 1.0 / far)
    rgb = colormaps["turbo"](np.clip(inv, 0, 1))[..., :3]
    rgb[~valid] = 0.0
    return rgb


def _mask_rgb(mask: np.ndarray, image: np.ndarray, colour) -> np.ndarray:
    out = image * 0.35
    out[mask] = colour
    return out


def contact_sheet(scene: DrivingScene, frames=None, cameras=None, scale: int = 2) -> Image.Image:
    frames = scene.frames[:: max(len(scene.frames) // 4, 1)] if frames is None else list(frames)
    cameras = scene.cameras if cameras is None else [str(c) for c in cameras]
    views = [v for v in scene.views if v.frame_idx in frames and v.cam_name in cameras]
    if not views:
        raise ValueError(f"no views for frames {frames} and cameras {cameras}; the scene has frames "
                         f"{scene.frames} and cameras {scene.cameras}")
    W = max(v.width for v in views) * scale
    H = max(v.height for v in views) * scale
    label_h, pad = 14, 2
    sheet = Image.new("RGB", (len(COLUMNS) * (W + pad) + 90, len(views) * (H + pad) + label_h), "white")
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(COLUMNS):
        draw.text((90 + c * (W + pad) + 2, 1), name, fill="black")
    for r, v in enumerate(views):
        img = v.image.numpy().astype(np.float64)
        lidar = v.lidar_depth.numpy()
        finite = lidar[lidar > 0]
        near = max(float(np.percentile(finite, 1)) if len(finite) else 1.0, 0.5)
        far = max(float(np.percentile(finite, 99)) if len(finite) else 100.0, near * 2)
        gt = v.gt_depth.numpy() if v.gt_depth is not None else np.zeros_like(lidar)
        tiles = [img, _mask_rgb(v.sky_mask.numpy(), img, (0.3, 0.6, 1.0)),
                 _mask_rgb(v.dynamic_mask.numpy(), img, (1.0, 0.3, 0.1)),
                 _depth_rgb(gt, near, far), _depth_rgb(lidar, near, far)]
        y = label_h + r * (H + pad)
        tag = f"{v.frame_idx:03d}_{v.cam_name}" + (" test" if any(v is t for t in scene.test_views) else "")
        draw.text((2, y + H // 2 - 5), tag, fill="black")
        for c, tile in enumerate(tiles):
            t = Image.fromarray(np.round(np.clip(tile, 0, 1) * 255).astype(np.uint8))
            t = t.resize((v.width * scale, v.height * scale), Image.NEAREST)
            sheet.paste(t, (90 + c * (W + pad), y))
    return sheet
