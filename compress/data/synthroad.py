"""synthroad: a procedural driving-scene generator writing the YOLOP dataset layout.

Each image is rendered from a pinhole camera above a planar road: a road of 2-4 lanes that may
curve (lateral offset ``a*z + k*z**2/2`` in metres at distance ``z``) with a varying horizon,
painted solid/dashed white/yellow markings and edge lines (or curbs), vehicles (car, truck, bus)
seen from the rear / rear-three-quarter with perspective scaling and occlusion, roadside clutter
that is *not* a vehicle (sidewalks, poles, street lamps, signs, trees, buildings), cast shadows,
day / dusk / night lighting, sensor noise, blur and JPEG compression.

Labels are derived from the rendered pixels, so they agree exactly with the image:

* boxes: visible extent of each vehicle (after occlusion and clipping) from an instance-id map;
  a vehicle is kept (drawn and labelled) when its visible fraction is >= 0.25 and its visible
  box is >= 6 px high, otherwise it is not drawn at all;
* drivable mask (0/255): the whole road surface of the ego road minus occluded pixels;
* lane mask (0/255): every painted line and road edge as a continuous polyline (also where the
  paint is dashed) of constant thickness ``round(W/80)`` px, up to the horizon, minus occluded
  pixels.

Determinism: every image is rendered from ``SeedSequence([seed, split_id, index])`` so output
bytes depend only on (seed, split, index, size, VERSION), never on the number of workers.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from compress.data.errors import DatasetError

logger = logging.getLogger(__name__)

__all__ = ["VERSION", "SynthSample", "render", "synthesize", "lane_thickness"]

VERSION = "1.0"
SPLITS = {"train": 0, "val": 1}
MIN_VISIBLE_FRACTION = 0.25
MIN_BOX_HEIGHT = 6
OCCLUDER_ID = 255

_CAR_COLORS = [
    (230, 230, 230),
    (30, 30, 35),
    (180, 180, 185),
    (120, 120, 125),
    (40, 40, 170),
    (150, 70, 30),
    (90, 40, 20),
    (60, 110, 50),
    (40, 190, 220),
    (160, 190, 200),
    (40, 70, 110),
    (200, 200, 205),
    (70, 70, 75),
]
_TRUCK_COLORS = [(235, 235, 235), (200, 200, 200), (150, 90, 40), (40, 50, 180), (60, 140, 60), (90, 90, 95)]
_BUS_COLORS = [(30, 190, 230), (235, 235, 235), (160, 80, 30), (40, 50, 190), (60, 130, 70)]


def lane_thickness(width: int) -> int:
    """Lane-mask line thickness in pixels for an image ``width`` px wide (8 at 640)."""
    return max(1, int(round(width / 80)))


@dataclass
class SynthSample:
    """One rendered scene: BGR image, 0/255 masks, YOLOP-style label dict and scene facts."""

    image: np.ndarray
    drivable: np.ndarray
    lane: np.ndarray
    label: dict[str, Any]
    info: dict[str, Any]
    jpeg_quality: int


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


@dataclass
class _Cam:
    """Pinhole camera at height ``hc`` looking along the road; road frame (s lateral, y up, z)."""

    f: float
    cx: float
    yh: float
    hc: float
    c0: float
    a: float
    k: float

    def proj(self, s: Any, y: Any, z: Any) -> np.ndarray:
        s, y, z = np.broadcast_arrays(np.asarray(s, float), np.asarray(y, float), np.asarray(z, float))
        x = self.c0 + self.a * z + 0.5 * self.k * z * z + s
        return np.stack([self.cx + self.f * x / z, self.yh + self.f * (self.hc - y) / z], -1)

    def xcam(self, s: float, z: float) -> float:
        return self.c0 + self.a * z + 0.5 * self.k * z * z + s


def _ip(pts: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pts), -1e6, 1e6).astype(np.int32)


def _col(c: Any, gain: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v * gain)))) for v in c)  # type: ignore[return-value]


# A shape is ("poly", Nx2 int32 convex polygon) or ("circle", (x, y), r).
Shape = tuple


def _raster(target: np.ndarray, shapes: list[Shape], value: Any, offset: tuple[int, int] = (0, 0)) -> None:
    ox, oy = offset
    for sh in shapes:
        if sh[0] == "poly":
            cv2.fillConvexPoly(target, sh[1] - np.array([ox, oy], np.int32), value)
        else:
            (x, y), r = sh[1], sh[2]
            cv2.circle(target, (x - ox, y - oy), r, value, -1)


def _bounds(shapes: list[Shape]) -> tuple[int, int, int, int]:
    xs0, ys0, xs1, ys1 = [], [], [], []
    for sh in shapes:
        if sh[0] == "poly":
            p = sh[1]
            xs0.append(p[:, 0].min()), ys0.append(p[:, 1].min())
            xs1.append(p[:, 0].max()), ys1.append(p[:, 1].max())
        else:
            (x, y), r = sh[1], sh[2]
            xs0.append(x - r), ys0.append(y - r), xs1.append(x + r), ys1.append(y + r)
    return int(min(xs0)), int(min(ys0)), int(max(xs1)) + 1, int(max(ys1)) + 1


@dataclass
class _Obj:
    """Something drawn in depth order: a vehicle (vid > 0) or roadside clutter (vid = 255)."""

    z: float
    shapes: list[Shape]
    draw: Callable[[np.ndarray], None]
    vid: int = OCCLUDER_ID
    category: str = ""
    lights: list[tuple[float, float, float]] = field(default_factory=list)  # (u, v, r) at night
    box: tuple[int, int, int, int] | None = None
    rear: tuple[float, float, float] | None = None  # (u_left, u_right, v_bottom) of the rear
    visible: int = 0
    full: int = 0
    inside: int = 0


# ----------------------------------------------------------------------------------------------
# Vehicles
# ----------------------------------------------------------------------------------------------


def _box_faces(cam: _Cam, sl: float, sr: float, yb: float, yt: float, zr: float, zf: float) -> dict[str, np.ndarray]:
    """Projected visible faces of an axis-aligned box in the road frame."""
    faces: dict[str, np.ndarray] = {}
    if cam.xcam(sl, zr) > 0:
        faces["left"] = _ip(cam.proj([sl, sl, sl, sl], [yb, yt, yt, yb], [zr, zr, zf, zf]))
    if cam.xcam(sr, zr) < 0:
        faces["right"] = _ip(cam.proj([sr, sr, sr, sr], [yb, yt, yt, yb], [zr, zr, zf, zf]))
    if yt < cam.hc:
        faces["top"] = _ip(cam.proj([sl, sr, sr, sl], [yt, yt, yt, yt], [zr, zr, zf, zf]))
    faces["rear"] = _ip(cam.proj([sl, sr, sr, sl], [yb, yb, yt, yt], [zr, zr, zr, zr]))
    return faces


def _hull(cam: _Cam, sl: float, sr: float, yb: float, yt: float, zr: float, zf: float) -> np.ndarray:
    s = [sl, sr, sl, sr, sl, sr, sl, sr]
    y = [yb, yb, yt, yt, yb, yb, yt, yt]
    z = [zr, zr, zr, zr, zf, zf, zf, zf]
    return cv2.convexHull(_ip(cam.proj(s, y, z))).reshape(-1, 2)


def _make_vehicle(
    cam: _Cam, rng: np.random.Generator, category: str, s0: float, z: float, dims: tuple[float, float, float]
) -> _Obj:
    wv, hv, L = dims
    sl, sr = s0 - wv / 2, s0 + wv / 2
    jitter = rng.integers(-15, 16, 3)
    if category == "car":
        base = np.array(_CAR_COLORS[rng.integers(len(_CAR_COLORS))]) + jitter
    elif category == "truck":
        base = np.array(_TRUCK_COLORS[rng.integers(len(_TRUCK_COLORS))]) + jitter
    else:
        base = np.array(_BUS_COLORS[rng.integers(len(_BUS_COLORS))]) + jitter
    base = np.clip(base, 0, 255)
    glass = _col(np.array([60, 50, 45]) + rng.integers(-20, 21, 3))
    red = _col((30 + rng.integers(0, 30), 30 + rng.integers(0, 30), 170 + rng.integers(0, 60)))
    side_gain = rng.uniform(0.65, 0.85)
    dark = (22, 22, 24)
    boxes: list[tuple[float, ...]] = []  # (sl, sr, yb, yt, zr, zf)
    if category == "car":
        hb = hv * rng.uniform(0.5, 0.6)
        ins = rng.uniform(0.08, 0.16)
        dc = L * rng.uniform(0.05, 0.3)
        boxes.append((sl, sr, 0.0, hb, z, z + L))
        boxes.append((sl + ins, sr - ins, hb, hv, z + dc, z + L * rng.uniform(0.7, 0.8)))
    else:
        ych = 0.55 if category == "truck" else 0.35
        boxes.append((sl + 0.05, sr - 0.05, 0.0, ych, z + 0.1, z + L - 0.3))
        boxes.append((sl, sr, ych, hv, z, z + L))
    shapes: list[Shape] = [("poly", _hull(cam, *b)) for b in boxes]
    wheel_r = 0.32 if category == "car" else 0.5
    lights_world: list[tuple[float, float, float]] = []

    def rect(s_a: float, s_b: float, y_a: float, y_b: float, zz: float) -> np.ndarray:
        return _ip(cam.proj([s_a, s_b, s_b, s_a], [y_a, y_a, y_b, y_b], [zz] * 4))

    # Lights (world positions) for the night glow.
    if category == "car":
        hb = boxes[0][3]
        ly0, ly1, lw = hb * 0.62, hb * 0.85, wv * 0.18
    elif category == "truck":
        ly0, ly1, lw = 0.3, 0.5, 0.3
    else:
        ly0, ly1, lw = 0.6, 1.0, 0.25
    for sa in (sl + 0.05, sr - 0.05 - lw):
        lights_world.append((sa + lw / 2, (ly0 + ly1) / 2, z))
    lights = []
    for ls, ly, lz in lights_world:
        u, v = cam.proj(ls, ly, lz)
        lights.append((float(u), float(v), float(cam.f * lw * 0.6 / lz)))

    def draw(img: np.ndarray) -> None:
        for bi, (bsl, bsr, yb, yt, zr, zf) in enumerate(boxes):
            chassis = category != "car" and bi == 0
            colour = np.array(dark if chassis else base, float)
            faces = _box_faces(cam, bsl, bsr, yb, yt, zr, zf)
            for side in ("left", "right"):
                if side in faces:
                    cv2.fillConvexPoly(img, faces[side], _col(colour, side_gain))
                    ss = bsl if side == "left" else bsr
                    if (category == "car" and bi == 1) or (category == "bus" and bi == 1):
                        ya, yb2 = (yb + 0.06, yt - 0.07) if category == "car" else (hv * 0.55, hv * 0.85)
                        win = _ip(cam.proj([ss] * 4, [ya, yb2, yb2, ya], [zr + 0.15, zr + 0.15, zf - 0.15, zf - 0.15]))
                        cv2.fillConvexPoly(img, win, glass)
                    if bi == 0:
                        for zc in (z + 0.8, z + L - 0.9):
                            t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
                            yy = np.clip(wheel_r + wheel_r * np.sin(t), 0, yt)
                            wpts = _ip(cam.proj(np.full(10, ss), yy, zc + wheel_r * np.cos(t)))
                            cv2.fillConvexPoly(img, cv2.convexHull(wpts).reshape(-1, 2), dark)
            if "top" in faces:
                cv2.fillConvexPoly(img, faces["top"], _col(colour, 1.08))
            cv2.fillConvexPoly(img, faces["rear"], _col(colour))
            if category == "car" and bi == 0:
                cv2.fillConvexPoly(img, rect(bsl, bsr, 0.22, 0.4, zr), _col(colour, 0.7))
                cv2.fillConvexPoly(img, rect(bsl + 0.3, bsr - 0.3, 0.0, 0.22, zr), (35, 35, 38))
                for sa in (bsl + 0.04, bsr - 0.3):
                    cv2.fillConvexPoly(img, rect(sa, sa + 0.26, 0.0, 0.34, zr), dark)
                cv2.fillConvexPoly(img, rect(s0 - 0.26, s0 + 0.26, 0.42, 0.56, zr), (205, 205, 210))
            elif category == "car" and bi == 1:
                cv2.fillConvexPoly(img, rect(bsl + 0.08, bsr - 0.08, yb + 0.06, yt - 0.07, zr), glass)
            elif chassis:
                for sa in (bsl + 0.02, bsr - 0.42):
                    cv2.fillConvexPoly(img, rect(sa, sa + 0.4, 0.0, yt, zr), (12, 12, 14))
            elif category == "truck":
                cv2.fillConvexPoly(img, rect(s0 - 0.025, s0 + 0.025, yb + 0.1, yt - 0.1, zr), _col(colour, 0.55))
                cv2.fillConvexPoly(img, rect(bsl, bsr, yb, yb + 0.12, zr), _col(colour, 0.45))
            else:  # bus
                cv2.fillConvexPoly(img, rect(bsl + 0.15, bsr - 0.15, hv * 0.62, hv * 0.9, zr), glass)
                cv2.fillConvexPoly(img, rect(s0 - 0.3, s0 + 0.3, 0.45, 0.6, zr), (205, 205, 210))
        for ls, ly, lz in lights_world:
            cv2.fillConvexPoly(img, rect(ls - lw / 2, ls + lw / 2, ly0, ly1, lz), red)

    (ul, vb), (ur, _) = cam.proj([sl, sr], 0.0, z)
    return _Obj(
        z=z, shapes=shapes, draw=draw, vid=0, category=category, lights=lights, rear=(float(ul), float(ur), float(vb))
    )


# ----------------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------------


def render(seed: int, split: str, index: int, size: tuple[int, int] = (640, 360)) -> SynthSample:
    """Render image ``index`` of ``split`` for generator ``seed`` (pure function of its inputs)."""
    if split not in SPLITS:
        raise DatasetError(f"split {split!r} is not one of {sorted(SPLITS)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]))
    W, H = int(size[0]), int(size[1])
    stem = f"{split}_{index:06d}"

    # --- lighting, camera, road ---------------------------------------------------------------
    tod = str(rng.choice(["daytime", "dawn/dusk", "night"], p=[0.6, 0.2, 0.2]))
    f = W * rng.uniform(0.78, 1.0)
    yh = H * rng.uniform(0.38, 0.52)
    hc = rng.uniform(1.25, 1.7)
    cx = W / 2 + W * rng.uniform(-0.03, 0.03)
    n_lanes = int(rng.choice([2, 3, 4], p=[0.35, 0.4, 0.25]))
    lw = rng.uniform(3.0, 3.8)
    ego = int(rng.integers(n_lanes))
    half = n_lanes * lw / 2
    s_cam = -half + (ego + 0.5) * lw + rng.uniform(-0.35, 0.35)
    if rng.uniform() < 0.35:
        k = rng.normal(0, 0.0002)
    else:
        k = rng.uniform(0.0008, 0.004) * rng.choice([-1, 1])
    cam = _Cam(f=f, cx=cx, yh=yh, hc=hc, c0=-s_cam, a=rng.uniform(-0.04, 0.04), k=k)
    z_far = rng.uniform(120, 220)
    z_near = f * hc / (1.25 * H - yh)
    zs = np.geomspace(z_near, z_far, 48)
    shoulder = rng.uniform(0.2, 0.6)
    edge = half + shoulder  # road surface spans s in [-edge, edge]
    urban = rng.uniform() < 0.5

    # --- colours ------------------------------------------------------------------------------
    if tod == "daytime":
        sky_top, sky_hor = np.array([200, 150, 90]), np.array([235, 215, 190])
    elif tod == "dawn/dusk":
        sky_top, sky_hor = np.array([130, 90, 80]), np.array([120, 170, 235])
    else:
        sky_top, sky_hor = np.array([40, 25, 15]), np.array([70, 55, 45])
    sky_top = sky_top + rng.integers(-20, 21, 3)
    sky_hor = sky_hor + rng.integers(-20, 21, 3)
    ground_kind = rng.choice(["grass", "dirt", "pavement"], p=[0.45, 0.2, 0.35] if urban else [0.65, 0.3, 0.05])
    ground = {"grass": [55, 115, 75], "dirt": [85, 115, 140], "pavement": [140, 140, 142]}[
        str(ground_kind)
    ] + rng.integers(-20, 21, 3)
    g = rng.uniform(75, 125)
    asphalt = np.clip(np.array([g, g, g]) + rng.integers(-6, 7, 3), 0, 255)

    img = np.empty((H, W, 3), np.uint8)
    hy = int(np.clip(round(yh), 1, H - 1))
    t = np.linspace(0, 1, hy)[:, None]
    img[:hy] = np.clip(sky_top * (1 - t) + sky_hor * t, 0, 255).astype(np.uint8)[:, None, :]
    t = np.linspace(0, 1, H - hy)[:, None]
    gcol = np.clip(ground * (0.85 + 0.25 * t), 0, 255).astype(np.uint8)
    img[hy:] = gcol[:, None, :]

    # --- far background (behind everything, drawn before the road) ---------------------------
    for _ in range(int(rng.integers(3, 12))):
        x0 = rng.uniform(-0.1, 1.0) * W
        kind = rng.uniform()
        if kind < 0.45 and urban or kind < 0.15:
            bw, bh = rng.uniform(0.04, 0.2) * W, rng.uniform(0.03, 0.25) * H
            c = _col(rng.integers(60, 200, 3))
            cv2.rectangle(img, (int(x0), int(yh - bh)), (int(x0 + bw), int(yh + 2)), c, -1)
        elif kind < 0.8:
            r = rng.uniform(0.015, 0.06) * W
            c = _col(np.array([40, 90, 50]) + rng.integers(-20, 21, 3))
            cv2.circle(img, (int(x0), int(yh - r * 0.6)), int(r), c, -1)
        else:
            hw, hh = rng.uniform(0.1, 0.4) * W, rng.uniform(0.02, 0.08) * H
            c = _col(np.array([110, 120, 110]) + rng.integers(-25, 26, 3))
            pts = np.array([[x0 - hw, yh + 1], [x0, yh - hh], [x0 + hw, yh + 1]], np.float64)
            cv2.fillConvexPoly(img, _ip(pts), c)

    def ground_strip(s_a: float, s_b: float, z_lo: float = z_near, z_hi: float = z_far, n: int = 24) -> np.ndarray:
        zz = np.geomspace(z_lo, z_hi, n)
        left = cam.proj(np.full(n, s_a), 0.0, zz)
        right = cam.proj(np.full(n, s_b), 0.0, zz)
        return _ip(np.concatenate([left, right[::-1]], 0))

    # --- sidewalks / curbs --------------------------------------------------------------------
    walk = np.clip(np.array([g + 45] * 3) + rng.integers(-10, 11, 3), 0, 255)
    for side in (-1, 1):
        if urban and rng.uniform() < 0.75:
            w0, w1 = edge + rng.uniform(0.0, 0.3), edge + rng.uniform(1.5, 4.0)
            a_, b_ = (-w1, -w0) if side < 0 else (w0, w1)
            cv2.fillPoly(img, [ground_strip(a_, b_)], _col(walk))

    # --- road surface and drivable mask -------------------------------------------------------
    road_poly = ground_strip(-edge, edge, n=48)
    drivable = np.zeros((H, W), np.uint8)
    cv2.fillPoly(drivable, [road_poly], 255)
    cv2.fillPoly(img, [road_poly], _col(asphalt))
    for _ in range(int(rng.integers(0, 4))):  # repair patches
        zp = rng.uniform(z_near + 2, 40)
        sp = rng.uniform(-edge, edge - 1)
        patch = ground_strip(sp, min(edge, sp + rng.uniform(0.5, 3)), zp, zp + rng.uniform(1, 8), 4)
        cv2.fillPoly(img, [patch], _col(asphalt, rng.uniform(0.8, 1.15)))

    # --- lines: paint in the image, continuous polylines in the lane mask ---------------------
    lane = np.zeros((H, W), np.uint8)
    thick = lane_thickness(W)
    white = np.array([235, 235, 235]) + rng.integers(-15, 10, 3)
    yellow = np.array([40, 190, 225]) + rng.integers(-15, 16, 3)
    lines: list[tuple[float, str, np.ndarray]] = []  # (s, style, colour)
    yellow_centre = n_lanes in (2, 4) and rng.uniform() < 0.35
    for j in range(n_lanes + 1):
        s = -half + j * lw
        if j in (0, n_lanes):
            s = s + (0.12 if j == 0 else -0.12)
            if rng.uniform() < 0.85:
                lines.append((s, "solid", yellow if (j == 0 and rng.uniform() < 0.2) else white))
            else:
                lines.append((s, "curb", np.clip(asphalt + 70, 0, 255)))
        elif yellow_centre and j == n_lanes // 2:
            style = str(rng.choice(["double", "solid", "dashed"], p=[0.5, 0.3, 0.2]))
            if style == "double":
                lines.append((s - 0.12, "solid", yellow))
                lines.append((s + 0.12, "solid", yellow))
            else:
                lines.append((s, style, yellow))
        else:
            lines.append((s, "dashed" if rng.uniform() < 0.8 else "solid", white))
    polys_by_colour: list[tuple[tuple[int, int, int], list[np.ndarray]]] = []
    for s, style, colour in lines:
        wm = rng.uniform(0.1, 0.2) if style != "curb" else 0.18
        wear = rng.uniform(0.55, 1.0)
        paint = _col(asphalt * (1 - wear) + colour * wear)
        if style == "dashed":
            dash = rng.uniform(2.0, 4.0)
            period = dash + rng.uniform(4.0, 9.0)
            z0 = z_near - rng.uniform(0, period)
            ps = []
            while z0 < z_far:
                za, zb = max(z0, z_near * 0.5), min(z0 + dash, z_far)
                if zb > za:
                    ps.append(ground_strip(s - wm / 2, s + wm / 2, za, zb, 3))
                z0 += period
            polys_by_colour.append((paint, ps))
        else:
            polys_by_colour.append((paint, [ground_strip(s - wm / 2, s + wm / 2, n=48)]))
        pts = cam.proj(np.full(len(zs), s), 0.0, zs)
        cv2.polylines(lane, [np.round(pts * 16).astype(np.int32)], False, 255, thick, cv2.LINE_8, shift=4)
    for paint, ps in polys_by_colour:
        if ps:
            cv2.fillPoly(img, ps, paint)
    lane[: max(0, int(math.floor(yh)))] = 0

    # --- vehicles -----------------------------------------------------------------------------
    objs: list[_Obj] = []
    n_cand = int(rng.choice(np.arange(len(_VEH_COUNT_P)), p=_VEH_COUNT_P))
    placed: list[tuple[int, float, float]] = []  # (lane, z, length)
    for _ in range(n_cand):
        cat = str(rng.choice(["car", "truck", "bus"], p=[0.75, 0.15, 0.10]))
        if cat == "car":
            dims = (rng.uniform(1.65, 1.95), rng.uniform(1.35, 1.8), rng.uniform(3.9, 4.9))
        elif cat == "truck":
            dims = (rng.uniform(2.2, 2.5), rng.uniform(2.6, 3.8), rng.uniform(6.0, 10.0))
        else:
            dims = (rng.uniform(2.4, 2.55), rng.uniform(2.9, 3.3), rng.uniform(10.0, 12.0))
        ln = int(rng.integers(n_lanes))
        z_max = min(z_far * 0.9, f * dims[1] / 10.0)
        z_min = 4.0 if ln != ego else 5.0
        if z_max <= z_min:
            continue
        s0 = -half + (ln + 0.5) * lw + rng.uniform(-0.3, 0.3) * max(0.0, lw - dims[0])
        for _try in range(3):  # a few tries to find a free gap in the lane
            z = float(np.exp(rng.uniform(np.log(z_min), np.log(z_max))))
            if not any(pl == ln and (z - pz) > -dims[2] - 2.0 and (z - pz) < pL + 2.0 for pl, pz, pL in placed):
                break
        else:
            continue
        placed.append((ln, z, dims[2]))
        objs.append(_make_vehicle(cam, rng, cat, s0, z, dims))

    # --- roadside clutter (never a vehicle) ----------------------------------------------------
    lamps: list[tuple[float, float, float]] = []  # (s, height, z) of lamp heads
    for side in (-1, 1):
        zc = rng.uniform(4, 30)
        spacing = rng.uniform(18, 45)
        kind_p = rng.uniform()
        while zc < z_far * 0.7:
            r = rng.uniform()
            off = edge + rng.uniform(0.5, 3.0)
            if r < 0.35 + 0.2 * kind_p:
                objs.append(_make_pole(cam, rng, side * off, zc, side, lamps))
            elif r < 0.55:
                objs.append(_make_sign(cam, rng, side * off, zc))
            elif r < 0.8 and not (urban and kind_p < 0.5):
                objs.append(_make_tree(cam, rng, side * (off + rng.uniform(1, 6)), zc))
            elif urban:
                z2 = zc + rng.uniform(8, 30)
                objs.append(_make_building(cam, rng, side * (off + rng.uniform(2, 6)), zc, z2))
                zc = z2
            zc += spacing * rng.uniform(0.6, 1.4)

    # --- occlusion: instance-id map, visible boxes, keep/drop ---------------------------------
    objs.sort(key=lambda o: -o.z)
    vehicles = [o for o in objs if o.vid == 0]
    for i, o in enumerate(vehicles, start=1):
        o.vid = i
    idmap = np.zeros((H, W), np.uint8)
    for _ in range(2):
        idmap[:] = 0
        for o in objs:
            _raster(idmap, o.shapes, o.vid)
        _measure(idmap, vehicles, W, H)
        drop = [
            o
            for o in vehicles
            if o.box is None or o.visible < MIN_VISIBLE_FRACTION * o.full or o.box[3] - o.box[1] < MIN_BOX_HEIGHT
        ]
        if not drop:
            break
        objs = [o for o in objs if o not in drop]
        vehicles = [o for o in vehicles if o not in drop]

    # --- shadows of vehicles, then everything in depth order ----------------------------------
    shadow_col = _col(asphalt, 0.3)
    for o in vehicles:  # dark contact shadow just below the rear bumper
        ul, ur, vb = o.rear  # type: ignore[misc]
        hgt = max(1.0, 0.03 * (ur - ul))
        cv2.rectangle(img, (int(round(ul)), int(round(vb - 1))), (int(round(ur)), int(round(vb + hgt))), shadow_col, -1)
    for o in objs:
        o.draw(img)
    occluded = idmap > 0
    drivable[occluded] = 0
    lane[occluded] = 0

    # --- lighting: low-res gain map (texture, cast shadows, vignette, headlights) -------------
    hs, ws = max(2, H // 4), max(2, W // 4)
    light = 1.0 + 0.07 * cv2.resize(
        rng.standard_normal((max(2, H // 24), max(2, W // 24))).astype(np.float32),
        (ws, hs),
        interpolation=cv2.INTER_CUBIC,
    )
    light = light.astype(np.float32)
    if tod != "night":
        for _ in range(int(rng.integers(0, 4))):
            za = rng.uniform(z_near + 1, 50)
            zb = za + rng.uniform(2, 15)
            if rng.uniform() < 0.5:
                sa, sb = -edge - 5, edge + 5
            else:
                sa = rng.uniform(-edge - 3, edge)
                sb = sa + rng.uniform(1.5, 6)
            pts = ground_strip(sa, sb, za, zb, 6).astype(np.float32) / 4
            cv2.fillPoly(light, [_ip(pts)], float(rng.uniform(0.45, 0.75)))
    yy, xx = np.mgrid[0:hs, 0:ws].astype(np.float32)
    rr = ((xx - ws / 2) / (ws / 2)) ** 2 + ((yy - hs / 2) / (hs / 2)) ** 2
    light *= 1.0 - rng.uniform(0.0, 0.25) * rr / 2
    if tod == "night":
        gain = rng.uniform(0.25, 0.4)
        cone = np.zeros((hs, ws), np.float32)
        cv2.ellipse(
            cone,
            (int(ws / 2), hs),
            (int(ws * 0.45), int((hs - yh / 4) * 0.55)),
            0,
            0,
            360,
            float(rng.uniform(1.2, 2.0)),
            -1,
        )
        for ls, lh, lz in lamps:
            c = cam.proj(ls, 0.0, lz) / 4
            rad = cam.f * 4.0 / lz / 4
            cv2.ellipse(cone, (int(c[0]), int(c[1])), (max(1, int(rad)), max(1, int(rad * 0.4))), 0, 0, 360, 1.5, -1)
        cone = cv2.GaussianBlur(cone, (0, 0), max(1.0, ws / 30))
        light = light * (gain * (1 + cone))
        tint = np.array([1.1, 1.0, 0.9], np.float32)
    elif tod == "dawn/dusk":
        light *= rng.uniform(0.55, 0.85)
        tint = np.array([0.85, 0.95, 1.12], np.float32)
    else:
        light *= rng.uniform(0.85, 1.15)
        tint = np.array([1, 1, 1], np.float32) + rng.uniform(-0.05, 0.05, 3).astype(np.float32)
    light3 = cv2.resize(light[:, :, None] * tint, (W, H), interpolation=cv2.INTER_LINEAR)
    imgf = img.astype(np.float32)
    np.multiply(imgf, light3, out=imgf)

    # --- glows (night / dusk): tail lights and street lamps -----------------------------------
    if tod != "daytime":
        glow = np.zeros((hs, ws), np.float32)
        strength = 1.0 if tod == "night" else 0.4
        for o in vehicles:
            for u, v, r in o.lights:
                ui, vi = int(round(u)), int(round(v))
                if 0 <= ui < W and 0 <= vi < H and idmap[vi, ui] == o.vid:
                    cv2.circle(glow, (int(u / 4), int(v / 4)), max(1, int(r / 4 * 1.5)), strength, -1)
        lamp_glow = np.zeros((hs, ws), np.float32)
        for ls, lh, lz in lamps:
            u, v = cam.proj(ls, lh, lz)
            ui, vi = int(round(u)), int(round(v))
            if 0 <= ui < W and 0 <= vi < H:
                cv2.circle(lamp_glow, (int(u / 4), int(v / 4)), max(1, int(cam.f * 0.5 / lz / 4)), strength, -1)
        sig = max(1.0, ws / 100)
        glow = cv2.resize(cv2.GaussianBlur(glow, (0, 0), sig), (W, H))
        lamp_glow = cv2.resize(cv2.GaussianBlur(lamp_glow, (0, 0), sig * 1.5), (W, H))
        imgf += glow[:, :, None] * np.array([40, 50, 230], np.float32)
        imgf += lamp_glow[:, :, None] * np.array([150, 210, 245], np.float32)

    # --- sensor noise, blur -------------------------------------------------------------------
    sigma = rng.uniform(1.5, 5.0) if tod == "daytime" else rng.uniform(3.0, 8.0)
    imgf += rng.standard_normal((H, W, 1), dtype=np.float32) * sigma  # luminance noise
    chroma = max(1, int(round(sigma * 0.6)))
    imgf += rng.integers(-chroma, chroma + 1, (H, W, 3), dtype=np.int8)  # colour noise
    np.clip(imgf, 0, 255, out=imgf)
    img = imgf.astype(np.uint8)
    r = rng.uniform()
    if r < 0.15:
        img = cv2.GaussianBlur(img, (3, 3) if rng.uniform() < 0.6 else (5, 5), 0)
    elif r < 0.2:
        kl = int(rng.integers(3, 8))
        kern = np.zeros((kl, kl), np.float32)
        kern[kl // 2, :] = 1.0 / kl
        img = cv2.filter2D(img, -1, kern)
    quality = int(rng.integers(55, 96))

    # --- labels -------------------------------------------------------------------------------
    objects = []
    n_trunc = n_occ = 0
    for o in sorted(vehicles, key=lambda o: o.vid):
        if o.box is None:  # cannot happen: vehicles without a visible box were dropped
            continue
        x1, y1, x2, y2 = o.box
        truncated = o.inside < o.full
        occluded_flag = o.visible < 0.95 * o.inside
        n_trunc += truncated
        n_occ += occluded_flag
        objects.append(
            {
                "category": o.category,
                "id": len(objects),
                "attributes": {
                    "occluded": bool(occluded_flag),
                    "truncated": bool(truncated),
                    "trafficLightColor": "none",
                },
                "box2d": {"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2)},
            }
        )
    label = {
        "name": f"{stem}.jpg",
        "frames": [{"timestamp": 10000, "objects": objects}],
        "attributes": {"weather": "clear", "scene": "city street" if urban else "highway", "timeofday": tod},
    }
    info = {
        "n_lanes": n_lanes,
        "n_boxes": len(objects),
        "n_truncated": n_trunc,
        "n_occluded": n_occ,
        "timeofday": tod,
        "curvature": float(k),
    }
    return SynthSample(img, drivable, lane, label, info, quality)


# Number of vehicle candidates per scene (some empty scenes, mostly 3-10).
_VEH_COUNT_P = np.array(
    [0.03, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.09, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03]
)
_VEH_COUNT_P = _VEH_COUNT_P / _VEH_COUNT_P.sum()


def _measure(idmap: np.ndarray, vehicles: list[_Obj], W: int, H: int) -> None:
    """Visible pixel count, in-image and full silhouette areas and visible box per vehicle."""
    counts = np.bincount(idmap.ravel(), minlength=256)
    for o in vehicles:
        x0, y0, x1, y1 = _bounds(o.shapes)
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _raster(canvas, o.shapes, 1, (x0, y0))
        o.full = int(np.count_nonzero(canvas))
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        o.visible = int(counts[o.vid])
        o.box = None
        o.inside = 0
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        o.inside = int(np.count_nonzero(canvas[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]))
        if o.visible == 0:
            continue
        ys, xs = np.nonzero(idmap[cy0:cy1, cx0:cx1] == o.vid)
        o.box = (int(xs.min()) + cx0, int(ys.min()) + cy0, int(xs.max()) + cx0 + 1, int(ys.max()) + cy0 + 1)


# ----------------------------------------------------------------------------------------------
# Clutter
# ----------------------------------------------------------------------------------------------


def _quad(cam: _Cam, s_a: float, s_b: float, y_a: float, y_b: float, z: float) -> np.ndarray:
    return _ip(cam.proj([s_a, s_b, s_b, s_a], [y_a, y_a, y_b, y_b], [z] * 4))


def _make_pole(
    cam: _Cam, rng: np.random.Generator, s: float, z: float, side: int, lamps: list[tuple[float, float, float]]
) -> _Obj:
    h = rng.uniform(5.0, 9.0)
    wp = rng.uniform(0.15, 0.3)
    col = _col(rng.integers(70, 160, 3) // np.array([1, 1, 1]))
    shapes: list[Shape] = [("poly", _quad(cam, s - wp / 2, s + wp / 2, 0.0, h, z))]
    if rng.uniform() < 0.6:  # street lamp with an arm over the road side
        arm = rng.uniform(1.0, 2.5) * -side
        shapes.append(("poly", _quad(cam, min(s, s + arm), max(s, s + arm), h - 0.15, h, z)))
        lamps.append((s + arm, h - 0.1, z))

    def draw(img: np.ndarray) -> None:
        _raster(img, shapes, col)

    return _Obj(z=z, shapes=shapes, draw=draw)


def _make_sign(cam: _Cam, rng: np.random.Generator, s: float, z: float) -> _Obj:
    size = rng.uniform(0.6, 1.1)
    y0 = rng.uniform(1.8, 2.6)
    pole = ("poly", _quad(cam, s - 0.04, s + 0.04, 0.0, y0, z))
    kind = rng.integers(3)
    face_col = _col([(160, 80, 20), (235, 235, 235), (30, 190, 230)][int(rng.integers(3))])
    if kind == 0:
        face: Shape = ("poly", _quad(cam, s - size / 2, s + size / 2, y0, y0 + size, z))
    elif kind == 1:
        c = cam.proj(s, y0 + size / 2, z)
        face = ("circle", (int(round(c[0])), int(round(c[1]))), max(1, int(round(cam.f * size / 2 / z))))
    else:
        face = (
            "poly",
            _ip(cam.proj([s - size / 2, s, s + size / 2, s], [y0 + size / 2, y0, y0 + size / 2, y0 + size], [z] * 4)),
        )
    shapes = [pole, face]

    def draw(img: np.ndarray) -> None:
        _raster(img, [pole], (90, 90, 95))
        _raster(img, [face], face_col)
        if kind == 1:
            cv2.circle(img, face[1], face[2], (40, 40, 200), max(1, face[2] // 5))

    return _Obj(z=z, shapes=shapes, draw=draw)


def _make_tree(cam: _Cam, rng: np.random.Generator, s: float, z: float) -> _Obj:
    ht = rng.uniform(2.0, 4.0)
    rad = rng.uniform(1.2, 3.0)
    trunk = ("poly", _quad(cam, s - 0.15, s + 0.15, 0.0, ht, z))
    c = cam.proj(s, ht + rad * 0.8, z)
    crown = ("circle", (int(round(c[0])), int(round(c[1]))), max(1, int(round(cam.f * rad / z))))
    leaf = _col(np.array([40, 95, 45]) + rng.integers(-20, 21, 3))
    shapes = [trunk, crown]

    def draw(img: np.ndarray) -> None:
        _raster(img, [trunk], (40, 60, 80))
        _raster(img, [crown], leaf)

    return _Obj(z=z, shapes=shapes, draw=draw)


def _make_building(cam: _Cam, rng: np.random.Generator, s: float, z1: float, z2: float) -> _Obj:
    h = rng.uniform(5.0, 20.0)
    face = ("poly", _ip(cam.proj([s] * 4, [0.0, h, h, 0.0], [z1, z1, z2, z2])))
    col = _col(rng.integers(70, 210, 3))
    win = _col(rng.integers(30, 90, 3))
    n_floors = max(1, int(h // 3.2))
    bands = [
        _ip(
            cam.proj(
                [s] * 4,
                [fl * 3.2 + 1.0, fl * 3.2 + 2.2, fl * 3.2 + 2.2, fl * 3.2 + 1.0],
                [z1 + 0.5, z1 + 0.5, z2 - 0.5, z2 - 0.5],
            )
        )
        for fl in range(n_floors)
    ]

    def draw(img: np.ndarray) -> None:
        _raster(img, [face], col)
        for b in bands:
            cv2.fillConvexPoly(img, b, win)

    return _Obj(z=z1, shapes=[face], draw=draw)


# ----------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------

_LAYOUT = ("images", "det_annotations", "da_seg_annotations", "ll_seg_annotations")


def _write_one(task: tuple[str, int, int, tuple[int, int], str]) -> dict[str, Any]:
    out, seed, split, index, size = task[4], task[1], task[0], task[2], task[3]
    smp = render(seed, split, index, size)
    root = Path(out)
    stem = f"{split}_{index:06d}"
    ok, jpg = cv2.imencode(".jpg", smp.image, [cv2.IMWRITE_JPEG_QUALITY, smp.jpeg_quality])
    ok2, da = cv2.imencode(".png", smp.drivable, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    ok3, ll = cv2.imencode(".png", smp.lane, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not (ok and ok2 and ok3):
        raise RuntimeError(f"OpenCV failed to encode {stem}")
    (root / "images" / split / f"{stem}.jpg").write_bytes(jpg.tobytes())
    (root / "da_seg_annotations" / split / f"{stem}.png").write_bytes(da.tobytes())
    (root / "ll_seg_annotations" / split / f"{stem}.png").write_bytes(ll.tobytes())
    (root / "det_annotations" / split / f"{stem}.json").write_text(
        json.dumps(smp.label, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return {"split": split, "index": index, **smp.info}


def _init_worker() -> None:
    cv2.setNumThreads(1)


def synthesize(
    out: Path,
    n_train: int,
    n_val: int,
    seed: int,
    size: tuple[int, int] = (640, 360),
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate a synthroad dataset in YOLOP layout under ``out`` and return a summary.

    Output is byte-identical for the same (seed, sizes, VERSION) whatever ``workers`` is.
    ``out`` must be empty, absent, or a previous synthroad output (which is replaced).
    Writes ``out/synthroad.json`` with the settings, version and per-split counts.
    """
    out = Path(out)
    W, H = int(size[0]), int(size[1])
    if W < 64 or H < 48:
        raise DatasetError(f"synthroad size {W}x{H} is too small; use at least 64x48 (default 640x360)")
    if n_train < 0 or n_val < 0:
        raise DatasetError(f"synthroad image counts must be >= 0, got train={n_train}, val={n_val}")
    if workers < 1:
        raise DatasetError(f"synthroad workers must be >= 1, got {workers}")
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"{out}: exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not (out / "synthroad.json").is_file():
            raise DatasetError(
                f"{out}: directory is not empty and is not a synthroad output; choose an empty or new --out directory"
            )
        for d in _LAYOUT:
            for split in SPLITS:
                if (out / d / split).is_dir():
                    shutil.rmtree(out / d / split)
    for d in _LAYOUT:
        for split in SPLITS:
            (out / d / split).mkdir(parents=True, exist_ok=True)

    tasks = [(split, seed, i, (W, H), str(out)) for split, n in (("train", n_train), ("val", n_val)) for i in range(n)]
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="synthroad", unit="img")
    try:
        if workers == 1 or len(tasks) < 2:
            for task in tasks:
                results.append(_write_one(task))
                if bar is not None:
                    bar.update(1)
        else:
            # Not "fork": a forked child can deadlock inside OpenCV's thread pool when the
            # parent already used OpenCV. An executor (unlike mp.Pool) fails loudly with
            # BrokenProcessPool instead of hanging when a worker dies.
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            with ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_init_worker) as pool:
                for res in pool.map(_write_one, tasks, chunksize=8):
                    results.append(res)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0

    counts: dict[str, Any] = {}
    for split in SPLITS:
        rs = [r for r in results if r["split"] == split]
        lanes_hist = {str(n): sum(r["n_lanes"] == n for r in rs) for n in (2, 3, 4)}
        tod_hist: dict[str, int] = {}
        for r in rs:
            tod_hist[r["timeofday"]] = tod_hist.get(r["timeofday"], 0) + 1
        counts[split] = {
            "images": len(rs),
            "boxes": int(sum(r["n_boxes"] for r in rs)),
            "truncated": int(sum(r["n_truncated"] for r in rs)),
            "occluded": int(sum(r["n_occluded"] for r in rs)),
            "images_without_boxes": int(sum(r["n_boxes"] == 0 for r in rs)),
            "lanes": lanes_hist,
            "timeofday": dict(sorted(tod_hist.items())),
        }
    meta = {
        "generator": "synthroad",
        "version": VERSION,
        "seed": int(seed),
        "size": [W, H],
        "splits": {"train": int(n_train), "val": int(n_val)},
        "lane_thickness_px": lane_thickness(W),
        "mask_values": "0/255 (drivable_mapping: yolop_binary)",
        "categories": ["car", "truck", "bus"],
        "min_visible_fraction": MIN_VISIBLE_FRACTION,
        "min_box_height_px": MIN_BOX_HEIGHT,
        "counts": counts,
    }
    (out / "synthroad.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    n = max(1, len(tasks))
    logger.info(
        "synthroad: %d images in %.1f s (%.1f ms/image, %d workers) -> %s",
        len(tasks),
        seconds,
        1000 * seconds / n,
        workers,
        out,
    )
    return {**meta, "out": str(out), "seconds": seconds, "ms_per_image": 1000 * seconds / n, "workers": workers}
