"""Brown-Conrady lens distortion (OpenCV's five-coefficient model k1 k2 p1 p2 k3) and undistortion.

drivestudio undistorts with cv2.undistort(image, K, dist): the output is a pinhole image with the same
K, whose pixel (u, v) takes the input's value at the distorted position of (u, v) (bilinear, black
outside). That is a closed-form forward map followed by a remap, done here with numpy and
scipy.ndimage.map_coordinates (scipy is already a dependency; OpenCV would add ~60 MB for one call).
Pixel centres sit at +0.5 in K, as everywhere in this project.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates


def has_distortion(dist) -> bool:
    return bool(np.any(np.abs(np.asarray(dist, dtype=np.float64)) > 0))


def distort_normalized(x: np.ndarray, y: np.ndarray, dist) -> tuple:
    """Undistorted normalised image coordinates -> distorted ones."""
    k1, k2, p1, p2, k3 = (float(v) for v in dist)
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def undistort_normalized(xd: np.ndarray, yd: np.ndarray, dist, iterations: int = 50) -> tuple:
    """Distorted normalised coordinates -> undistorted ones (fixed-point iteration, as cv2.undistortPoints)."""
    k1, k2, p1, p2, k3 = (float(v) for v in dist)
    x, y = np.array(xd, dtype=np.float64), np.array(yd, dtype=np.float64)
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return x, y


def _remap(arr: np.ndarray, rows: np.ndarray, cols: np.ndarray, order: int) -> np.ndarray:
    """Sample arr [H, W] or [H, W, C] at array coordinates (rows, cols); 0 outside."""
    if arr.ndim == 2:
        return map_coordinates(arr, [rows, cols], order=order, mode="constant", cval=0.0, prefilter=False)
    return np.stack([map_coordinates(arr[..., c], [rows, cols], order=order, mode="constant", cval=0.0,
                                     prefilter=False) for c in range(arr.shape[2])], axis=-1)


def source_coordinates(K: np.ndarray, dist, width: int, height: int) -> tuple:
    """For each pixel of the undistorted image: the (row, col) array coordinates in the distorted one."""
    u = np.arange(width) + 0.5
    v = np.arange(height) + 0.5
    uu, vv = np.meshgrid(u, v)
    x = (uu - K[0, 2]) / K[0, 0]
    y = (vv - K[1, 2]) / K[1, 1]
    xd, yd = distort_normalized(x, y, dist)
    return K[1, 1] * yd + K[1, 2] - 0.5, K[0, 0] * xd + K[0, 2] - 0.5


def undistort_image(image: np.ndarray, K: np.ndarray, dist) -> np.ndarray:
    """uint8 or float image [H, W(, C)] taken through the distortion -> the pinhole image with the same K."""
    if not has_distortion(dist):
        return image
    rows, cols = source_coordinates(K, dist, image.shape[1], image.shape[0])
    out = _remap(image.astype(np.float64), rows, cols, order=1)
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype)


def undistort_mask(mask: np.ndarray, K: np.ndarray, dist) -> np.ndarray:
    """bool [H, W]: bilinear coverage of the distorted mask, kept where at least half covered."""
    if not has_distortion(dist):
        return mask
    rows, cols = source_coordinates(K, dist, mask.shape[1], mask.shape[0])
    return _remap(mask.astype(np.float64), rows, cols, order=1) >= 0.5


def distort_image(image: np.ndarray, K: np.ndarray, dist, order: int = 1) -> np.ndarray:
    """The inverse of undistort_image: what a camera with this distortion records of a pinhole image
    (used to write test scenes; the inverse map is solved by iteration)."""
    h, w = image.shape[:2]
    uu, vv = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = undistort_normalized((uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], dist)
    rows, cols = K[1, 1] * y + K[1, 2] - 0.5, K[0, 0] * x + K[0, 2] - 0.5
    out = _remap(image.astype(np.float64), rows, cols, order=order)
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if image.dtype == bool:
        return out >= 0.5
    return out.astype(image.dtype)
