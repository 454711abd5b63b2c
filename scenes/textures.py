"""Procedural materials: colour as a function of the surface point, in metres.

Textures carry mid-frequency detail (bricks, windows, lane dashes, paving joints, leaves) so that
photometric optimisation has something to fit, and are functions of the surface point only, so
they are the same from every view (no view-dependent effects besides Lambertian shading).
"""
from __future__ import annotations

import numpy as np

# Material ids (people's, SKIN..BIKE, only in streets with pedestrians or cyclists: scenes/people.py)
GROUND, SIDEWALK, FACADE, ROOF, CAR_BODY, CAR_CABIN, WHEEL, TRUNK, LEAVES, POLE, SKIN, CLOTH, BIKE = range(13)

# LiDAR reflectivity per material (intensity channel)
REFLECTIVITY = np.array([0.12, 0.25, 0.30, 0.20, 0.45, 0.08, 0.05, 0.20, 0.15, 0.55, 0.18, 0.22, 0.40])

SUN = np.array([0.35, 0.55, 0.76])
SUN = SUN / np.linalg.norm(SUN)


def hash01(ix, iy, seed=0) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice point."""
    h = (np.asarray(ix, np.int64) * 374761393 + np.asarray(iy, np.int64) * 668265263
         + int(seed) * 2246822519) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float64) / float(1 << 24)


def value_noise(x, y, seed=0) -> np.ndarray:
    """Smooth value noise with unit lattice spacing, in [0, 1)."""
    x0 = np.floor(x); y0 = np.floor(y)
    fx = x - x0; fy = y - y0
    fx = fx * fx * (3 - 2 * fx); fy = fy * fy * (3 - 2 * fy)
    ix = x0.astype(np.int64); iy = y0.astype(np.int64)
    a = hash01(ix, iy, seed); b = hash01(ix + 1, iy, seed)
    c = hash01(ix, iy + 1, seed); d = hash01(ix + 1, iy + 1, seed)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def fbm(x, y, seed=0, octaves=3) -> np.ndarray:
    total = np.zeros_like(np.asarray(x, np.float64)); amp = 0.5; norm = 0.0
    for o in range(octaves):
        total = total + amp * value_noise(x * 2 ** o, y * 2 ** o, seed + 17 * o)
        norm += amp; amp *= 0.5
    return total / norm


def _mix(a, b, w):
    w = np.asarray(w, np.float64)[..., None]
    return a * (1 - w) + b * w


def ground(p: np.ndarray, road_half: float, lane_half: float, crosswalk_x: float) -> np.ndarray:
    x, y = p[:, 0], p[:, 1]
    n = fbm(x * 1.5, y * 1.5, 3)
    asphalt = np.stack([0.30 + 0.10 * n, 0.30 + 0.10 * n, 0.32 + 0.10 * n], -1)
    grass = np.stack([0.25 + 0.12 * n, 0.38 + 0.15 * n, 0.16 + 0.08 * n], -1)
    ay = np.abs(y)
    col = np.where((ay <= road_half)[:, None], asphalt, grass)
    parking = (ay > lane_half) & (ay <= road_half)
    col = np.where(parking[:, None], col * 1.12, col)
    paint = np.zeros(len(x), bool)
    paint |= (ay < 0.08) & (np.mod(x, 6.0) < 3.0)                 # centre dashes
    paint |= np.abs(ay - lane_half) < 0.08                          # lane edge lines
    paint |= (np.abs(x - crosswalk_x) < 2.0) & (np.mod(y, 1.0) < 0.5) & (ay < lane_half)  # zebra
    white = np.array([0.92, 0.92, 0.88])
    return np.where(paint[:, None], white, col)


def sidewalk(p: np.ndarray, face_axis: np.ndarray) -> np.ndarray:
    x, y = p[:, 0], p[:, 1]
    n = fbm(x * 2.0, y * 2.0, 5)
    base = 0.58 + 0.10 * n
    joint = (np.mod(x, 1.0) < 0.05) | (np.mod(y, 1.0) < 0.05)
    base = np.where(joint, base * 0.7, base)
    col = np.stack([base, base * 0.98, base * 0.94], -1)
    curb = face_axis != 2
    return np.where(curb[:, None], np.array([0.72, 0.72, 0.70]), col)


def facade(u: np.ndarray, v: np.ndarray, albedo: np.ndarray, param: np.ndarray) -> np.ndarray:
    """u: horizontal coordinate along the wall, v: height above ground (m)."""
    variant = np.floor(param * 4).astype(int) % 4
    spacing = 2.6 + 0.8 * np.mod(param * 7.3, 1.0)
    # Wall: bricks (variants 0, 1) or plaster panels (2, 3)
    row = np.floor(v / 0.3)
    shift = np.where(np.mod(row, 2) == 0, 0.0, 0.3)
    brick_i = np.floor((u + shift) / 0.6)
    jitter = hash01(brick_i.astype(np.int64), row.astype(np.int64), 11) - 0.5
    mortar = (np.mod(v, 0.3) < 0.04) | (np.mod(u + shift, 0.6) < 0.04)
    brick = albedo * (1.0 + 0.25 * jitter)[:, None]
    brick = np.where(mortar[:, None], np.array([0.78, 0.76, 0.72]), brick)
    wall = brick
    pl = variant >= 2
    if pl.any():
        plaster = albedo[pl] * (0.88 + 0.2 * fbm(u[pl] * 0.8, v[pl] * 0.8, 9, octaves=2))[:, None]
        band = np.mod(v[pl], 3.2) < 0.12                                   # floor bands
        wall[pl] = np.where(band[:, None], albedo[pl] * 0.75, plaster)
    # Windows on upper floors, shop fronts on the ground floor
    floor_v = np.mod(v, 3.2)
    col_u = np.mod(u, spacing)
    upper = v >= 3.2
    win = upper & (floor_v > 0.9) & (floor_v < 2.5) & (col_u > 0.5 * spacing - 0.6) & (col_u < 0.5 * spacing + 0.6)
    frame = upper & (floor_v > 0.8) & (floor_v < 2.6) & (col_u > 0.5 * spacing - 0.7) & (col_u < 0.5 * spacing + 0.7)
    frame &= ~win
    cell = hash01(np.floor(u / spacing).astype(np.int64), np.floor(v / 3.2).astype(np.int64), 23)
    glass = np.stack([0.18 + 0.25 * cell, 0.24 + 0.25 * cell, 0.32 + 0.2 * cell], -1)
    glass = glass * (1.0 - 0.3 * (floor_v - 0.9) / 1.6)[:, None]
    wall = np.where(frame[:, None], np.array([0.85, 0.85, 0.82]), wall)
    wall = np.where(win[:, None], glass, wall)
    shop = (v < 2.6) & (v > 0.4) & (np.mod(u, 2 * spacing) > 0.4) & (np.mod(u, 2 * spacing) < 2 * spacing - 0.4)
    shop_col = np.stack([0.15 + 0.1 * cell, 0.2 + 0.1 * cell, 0.22 + 0.1 * cell], -1)
    return np.where(shop[:, None], shop_col, wall)


def car_body(p: np.ndarray, face_axis, face_pos, albedo) -> np.ndarray:
    col = np.broadcast_to(albedo, (len(p), 3)).copy()
    col = col * (0.9 + 0.1 * np.clip(p[:, 2] + 0.45, 0, 1))[:, None]
    front = (face_axis == 0) & face_pos
    back = (face_axis == 0) & ~face_pos
    lamp = (np.abs(np.abs(p[:, 1]) - 0.6) < 0.2) & (p[:, 2] > -0.2)
    col = np.where((front & lamp)[:, None], np.array([0.95, 0.95, 0.85]), col)
    col = np.where((back & lamp)[:, None], np.array([0.75, 0.08, 0.06]), col)
    plate = (np.abs(p[:, 1]) < 0.25) & (p[:, 2] < -0.2) & (p[:, 2] > -0.35)
    col = np.where(((front | back) & plate)[:, None], np.array([0.9, 0.9, 0.9]), col)
    door = (face_axis == 1) & (np.abs(np.abs(p[:, 0]) - 0.15) < 0.02)
    return np.where(door[:, None], col * 0.5, col)


def car_cabin(p: np.ndarray, face_axis, albedo, lo, hi) -> np.ndarray:
    col = np.broadcast_to(albedo, (len(p), 3)).copy()
    glass = np.array([0.10, 0.13, 0.17])
    side = face_axis == 1
    endf = face_axis == 0
    # pillars: keep body colour near cabin edges
    side_glass = side & (p[:, 0] > lo[:, 0] + 0.15) & (p[:, 0] < hi[:, 0] - 0.15) & (p[:, 2] < hi[:, 2] - 0.1) & (np.abs(p[:, 0] - 0.5 * (lo[:, 0] + hi[:, 0])) > 0.06)
    end_glass = endf & (np.abs(p[:, 1]) < np.abs(hi[:, 1]) - 0.12) & (p[:, 2] < hi[:, 2] - 0.08)
    return np.where((side_glass | end_glass)[:, None], glass, col)


def leaves(p: np.ndarray, albedo) -> np.ndarray:
    n = fbm(p[:, 0] * 3 + p[:, 2] * 2, p[:, 1] * 3 - p[:, 2] * 2, 31)
    return albedo * (0.6 + 0.7 * n)[:, None]


def cloth(p_local: np.ndarray, albedo) -> np.ndarray:
    """Woven fabric on a figure's part, from its point in the part's own frame (moves with the limb)."""
    n = fbm(p_local[:, 0] * 14 + p_local[:, 1] * 9, p_local[:, 2] * 14, 53, octaves=2)
    return albedo * (0.82 + 0.36 * n)[:, None]


def sky(dirs: np.ndarray) -> np.ndarray:
    """Sky colour per unit direction [N,3] in the street frame (z up): gradient, sun glow, clouds."""
    e = np.clip(dirs[:, 2], -0.2, 1.0)
    horizon = np.array([0.86, 0.90, 0.95]); zenith = np.array([0.35, 0.55, 0.88])
    col = _mix(horizon, zenith, np.clip(e * 2.2, 0, 1) ** 0.8)
    az = np.arctan2(dirs[:, 1], dirs[:, 0])
    cloud = fbm(az * 4.0, e * 10.0, 41)
    col = _mix(col, np.array([0.97, 0.97, 0.97]), np.clip((cloud - 0.55) * 2.5, 0, 0.7) * (e > 0.02))
    glow = np.clip(dirs @ SUN, 0, 1) ** 40
    return np.clip(col + 0.3 * glow[:, None], 0, 1)
