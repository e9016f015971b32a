"""synthroad's objects: vehicles (car, truck, bus) and roadside clutter (poles, lamps, signs, trees, buildings).

Each ``make_*`` draws its random parameters from the scene's generator and returns an
:class:`~compress.data.synth_shapes.Obj`: its silhouette (for the occlusion map) and how to draw it.
"""

from __future__ import annotations

import cv2
import numpy as np

from .synth_shapes import Cam, Obj, Shape, bgr, ip, raster

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


def _box_faces(cam: Cam, sl: float, sr: float, yb: float, yt: float, zr: float, zf: float) -> dict[str, np.ndarray]:
    """Projected visible faces of an axis-aligned box in the road frame."""
    faces: dict[str, np.ndarray] = {}
    if cam.xcam(sl, zr) > 0:
        faces["left"] = ip(cam.proj([sl, sl, sl, sl], [yb, yt, yt, yb], [zr, zr, zf, zf]))
    if cam.xcam(sr, zr) < 0:
        faces["right"] = ip(cam.proj([sr, sr, sr, sr], [yb, yt, yt, yb], [zr, zr, zf, zf]))
    if yt < cam.hc:
        faces["top"] = ip(cam.proj([sl, sr, sr, sl], [yt, yt, yt, yt], [zr, zr, zf, zf]))
    faces["rear"] = ip(cam.proj([sl, sr, sr, sl], [yb, yb, yt, yt], [zr, zr, zr, zr]))
    return faces


def _hull(cam: Cam, sl: float, sr: float, yb: float, yt: float, zr: float, zf: float) -> np.ndarray:
    s = [sl, sr, sl, sr, sl, sr, sl, sr]
    y = [yb, yb, yt, yt, yb, yb, yt, yt]
    z = [zr, zr, zr, zr, zf, zf, zf, zf]
    return cv2.convexHull(ip(cam.proj(s, y, z))).reshape(-1, 2)


def make_vehicle(
    cam: Cam, rng: np.random.Generator, category: str, s0: float, z: float, dims: tuple[float, float, float]
) -> Obj:
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
    glass = bgr(np.array([60, 50, 45]) + rng.integers(-20, 21, 3))
    red = bgr((30 + rng.integers(0, 30), 30 + rng.integers(0, 30), 170 + rng.integers(0, 60)))
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
        return ip(cam.proj([s_a, s_b, s_b, s_a], [y_a, y_a, y_b, y_b], [zz] * 4))

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
                    cv2.fillConvexPoly(img, faces[side], bgr(colour, side_gain))
                    ss = bsl if side == "left" else bsr
                    if (category == "car" and bi == 1) or (category == "bus" and bi == 1):
                        ya, yb2 = (yb + 0.06, yt - 0.07) if category == "car" else (hv * 0.55, hv * 0.85)
                        win = ip(cam.proj([ss] * 4, [ya, yb2, yb2, ya], [zr + 0.15, zr + 0.15, zf - 0.15, zf - 0.15]))
                        cv2.fillConvexPoly(img, win, glass)
                    if bi == 0:
                        for zc in (z + 0.8, z + L - 0.9):
                            t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
                            yy = np.clip(wheel_r + wheel_r * np.sin(t), 0, yt)
                            wpts = ip(cam.proj(np.full(10, ss), yy, zc + wheel_r * np.cos(t)))
                            cv2.fillConvexPoly(img, cv2.convexHull(wpts).reshape(-1, 2), dark)
            if "top" in faces:
                cv2.fillConvexPoly(img, faces["top"], bgr(colour, 1.08))
            cv2.fillConvexPoly(img, faces["rear"], bgr(colour))
            if category == "car" and bi == 0:
                cv2.fillConvexPoly(img, rect(bsl, bsr, 0.22, 0.4, zr), bgr(colour, 0.7))
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
                cv2.fillConvexPoly(img, rect(s0 - 0.025, s0 + 0.025, yb + 0.1, yt - 0.1, zr), bgr(colour, 0.55))
                cv2.fillConvexPoly(img, rect(bsl, bsr, yb, yb + 0.12, zr), bgr(colour, 0.45))
            else:  # bus
                cv2.fillConvexPoly(img, rect(bsl + 0.15, bsr - 0.15, hv * 0.62, hv * 0.9, zr), glass)
                cv2.fillConvexPoly(img, rect(s0 - 0.3, s0 + 0.3, 0.45, 0.6, zr), (205, 205, 210))
        for ls, _ly, lz in lights_world:
            cv2.fillConvexPoly(img, rect(ls - lw / 2, ls + lw / 2, ly0, ly1, lz), red)

    (ul, vb), (ur, _) = cam.proj([sl, sr], 0.0, z)
    return Obj(
        z=z, shapes=shapes, draw=draw, vid=0, category=category, lights=lights, rear=(float(ul), float(ur), float(vb))
    )


def _quad(cam: Cam, s_a: float, s_b: float, y_a: float, y_b: float, z: float) -> np.ndarray:
    return ip(cam.proj([s_a, s_b, s_b, s_a], [y_a, y_a, y_b, y_b], [z] * 4))


def make_pole(
    cam: Cam, rng: np.random.Generator, s: float, z: float, side: int, lamps: list[tuple[float, float, float]]
) -> Obj:
    h = rng.uniform(5.0, 9.0)
    wp = rng.uniform(0.15, 0.3)
    col = bgr(rng.integers(70, 160, 3) // np.array([1, 1, 1]))
    shapes: list[Shape] = [("poly", _quad(cam, s - wp / 2, s + wp / 2, 0.0, h, z))]
    if rng.uniform() < 0.6:  # street lamp with an arm over the road side
        arm = rng.uniform(1.0, 2.5) * -side
        shapes.append(("poly", _quad(cam, min(s, s + arm), max(s, s + arm), h - 0.15, h, z)))
        lamps.append((s + arm, h - 0.1, z))

    def draw(img: np.ndarray) -> None:
        raster(img, shapes, col)

    return Obj(z=z, shapes=shapes, draw=draw)


def make_sign(cam: Cam, rng: np.random.Generator, s: float, z: float) -> Obj:
    size = rng.uniform(0.6, 1.1)
    y0 = rng.uniform(1.8, 2.6)
    pole = ("poly", _quad(cam, s - 0.04, s + 0.04, 0.0, y0, z))
    kind = rng.integers(3)
    face_col = bgr([(160, 80, 20), (235, 235, 235), (30, 190, 230)][int(rng.integers(3))])
    if kind == 0:
        face: Shape = ("poly", _quad(cam, s - size / 2, s + size / 2, y0, y0 + size, z))
    elif kind == 1:
        c = cam.proj(s, y0 + size / 2, z)
        face = ("circle", (int(round(c[0])), int(round(c[1]))), max(1, int(round(cam.f * size / 2 / z))))
    else:
        face = (
            "poly",
            ip(cam.proj([s - size / 2, s, s + size / 2, s], [y0 + size / 2, y0, y0 + size / 2, y0 + size], [z] * 4)),
        )
    shapes = [pole, face]

    def draw(img: np.ndarray) -> None:
        raster(img, [pole], (90, 90, 95))
        raster(img, [face], face_col)
        if kind == 1:
            cv2.circle(img, face[1], face[2], (40, 40, 200), max(1, face[2] // 5))

    return Obj(z=z, shapes=shapes, draw=draw)


def make_tree(cam: Cam, rng: np.random.Generator, s: float, z: float) -> Obj:
    ht = rng.uniform(2.0, 4.0)
    rad = rng.uniform(1.2, 3.0)
    trunk = ("poly", _quad(cam, s - 0.15, s + 0.15, 0.0, ht, z))
    c = cam.proj(s, ht + rad * 0.8, z)
    crown = ("circle", (int(round(c[0])), int(round(c[1]))), max(1, int(round(cam.f * rad / z))))
    leaf = bgr(np.array([40, 95, 45]) + rng.integers(-20, 21, 3))
    shapes = [trunk, crown]

    def draw(img: np.ndarray) -> None:
        raster(img, [trunk], (40, 60, 80))
        raster(img, [crown], leaf)

    return Obj(z=z, shapes=shapes, draw=draw)


def make_building(cam: Cam, rng: np.random.Generator, s: float, z1: float, z2: float) -> Obj:
    h = rng.uniform(5.0, 20.0)
    face = ("poly", ip(cam.proj([s] * 4, [0.0, h, h, 0.0], [z1, z1, z2, z2])))
    col = bgr(rng.integers(70, 210, 3))
    win = bgr(rng.integers(30, 90, 3))
    n_floors = max(1, int(h // 3.2))
    bands = [
        ip(
            cam.proj(
                [s] * 4,
                [fl * 3.2 + 1.0, fl * 3.2 + 2.2, fl * 3.2 + 2.2, fl * 3.2 + 1.0],
                [z1 + 0.5, z1 + 0.5, z2 - 0.5, z2 - 0.5],
            )
        )
        for fl in range(n_floors)
    ]

    def draw(img: np.ndarray) -> None:
        raster(img, [face], col)
        for b in bands:
            cv2.fillConvexPoly(img, b, win)

    return Obj(z=z1, shapes=[face], draw=draw)
