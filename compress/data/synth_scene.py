"""synthroad's drawing steps: one function per layer of a scene, in the order they are drawn.

:func:`compress.data.synthroad.render` calls them in turn. Every step draws from the scene's one
random generator (``Scene.rng``) in a fixed order, so the output bytes depend only on (seed,
split, index, size): reordering or skipping a draw changes every image after it. The geometry and
the drawable objects are :mod:`compress.data.synth_shapes` and :mod:`compress.data.synth_objects`;
the light and the sensor, drawn last, :mod:`compress.data.synth_light`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .synth_objects import make_building, make_pole, make_sign, make_tree, make_vehicle
from .synth_shapes import Cam, Obj, bgr, ip, measure, raster

MIN_VISIBLE_FRACTION = 0.25
MIN_BOX_HEIGHT = 6

# Number of vehicle candidates per scene (some empty scenes, mostly 3-10).
_VEH_COUNT_P = np.array(
    [0.03, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.09, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03]
)
_VEH_COUNT_P = _VEH_COUNT_P / _VEH_COUNT_P.sum()


def lane_thickness(width: int) -> int:
    """Lane-mask line thickness in pixels for an image ``width`` px wide (8 at 640)."""
    return max(1, int(round(width / 80)))


@dataclass
class Scene:
    """The first draws of a scene: time of day, camera, road layout (and the generator itself)."""

    rng: np.random.Generator
    W: int
    H: int
    tod: str
    f: float
    yh: float
    cam: Cam
    n_lanes: int
    lw: float
    ego: int
    half: float
    k: float
    z_near: float
    z_far: float
    zs: np.ndarray
    edge: float  # road surface spans s in [-edge, edge]
    urban: bool

    def ground_strip(
        self, s_a: float, s_b: float, z_lo: float | None = None, z_hi: float | None = None, n: int = 24
    ) -> np.ndarray:
        """The ground polygon between lateral offsets ``s_a`` and ``s_b`` from ``z_lo`` to ``z_hi``."""
        cam = self.cam
        z_lo = self.z_near if z_lo is None else z_lo
        z_hi = self.z_far if z_hi is None else z_hi
        zz = np.geomspace(z_lo, z_hi, n)
        left = cam.proj(np.full(n, s_a), 0.0, zz)
        right = cam.proj(np.full(n, s_b), 0.0, zz)
        return ip(np.concatenate([left, right[::-1]], 0))


@dataclass
class Palette:
    """The scene's colours (BGR)."""

    sky_top: np.ndarray
    sky_hor: np.ndarray
    ground: np.ndarray
    g: float  # asphalt grey level
    asphalt: np.ndarray


def camera_and_road(rng: np.random.Generator, W: int, H: int) -> Scene:
    """Lighting, camera, road."""
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
    cam = Cam(f=f, cx=cx, yh=yh, hc=hc, c0=-s_cam, a=rng.uniform(-0.04, 0.04), k=k)
    z_far = rng.uniform(120, 220)
    z_near = f * hc / (1.25 * H - yh)
    zs = np.geomspace(z_near, z_far, 48)
    shoulder = rng.uniform(0.2, 0.6)
    edge = half + shoulder  # road surface spans s in [-edge, edge]
    urban = rng.uniform() < 0.5
    return Scene(rng, W, H, tod, f, yh, cam, n_lanes, lw, ego, half, k, z_near, z_far, zs, edge, urban)


def palette(sc: Scene) -> Palette:
    """Sky, ground and asphalt colours."""
    rng, tod, urban = sc.rng, sc.tod, sc.urban
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
    return Palette(sky_top, sky_hor, ground, g, asphalt)


def sky_and_ground(sc: Scene, pal: Palette) -> np.ndarray:
    """The image: a sky gradient above the horizon, the ground below it."""
    W, H, yh = sc.W, sc.H, sc.yh
    sky_top, sky_hor, ground = pal.sky_top, pal.sky_hor, pal.ground
    img = np.empty((H, W, 3), np.uint8)
    hy = int(np.clip(round(yh), 1, H - 1))
    t = np.linspace(0, 1, hy)[:, None]
    img[:hy] = np.clip(sky_top * (1 - t) + sky_hor * t, 0, 255).astype(np.uint8)[:, None, :]
    t = np.linspace(0, 1, H - hy)[:, None]
    gcol = np.clip(ground * (0.85 + 0.25 * t), 0, 255).astype(np.uint8)
    img[hy:] = gcol[:, None, :]
    return img


def far_background(sc: Scene, img: np.ndarray) -> None:
    """Far background (behind everything, drawn before the road)."""
    rng, W, H, yh, urban = sc.rng, sc.W, sc.H, sc.yh, sc.urban
    for _ in range(int(rng.integers(3, 12))):
        x0 = rng.uniform(-0.1, 1.0) * W
        kind = rng.uniform()
        if kind < 0.45 and urban or kind < 0.15:
            bw, bh = rng.uniform(0.04, 0.2) * W, rng.uniform(0.03, 0.25) * H
            c = bgr(rng.integers(60, 200, 3))
            cv2.rectangle(img, (int(x0), int(yh - bh)), (int(x0 + bw), int(yh + 2)), c, -1)
        elif kind < 0.8:
            r = rng.uniform(0.015, 0.06) * W
            c = bgr(np.array([40, 90, 50]) + rng.integers(-20, 21, 3))
            cv2.circle(img, (int(x0), int(yh - r * 0.6)), int(r), c, -1)
        else:
            hw, hh = rng.uniform(0.1, 0.4) * W, rng.uniform(0.02, 0.08) * H
            c = bgr(np.array([110, 120, 110]) + rng.integers(-25, 26, 3))
            pts = np.array([[x0 - hw, yh + 1], [x0, yh - hh], [x0 + hw, yh + 1]], np.float64)
            cv2.fillConvexPoly(img, ip(pts), c)


def sidewalks(sc: Scene, pal: Palette, img: np.ndarray) -> None:
    """Sidewalks / curbs."""
    rng, edge, urban, g, ground_strip = sc.rng, sc.edge, sc.urban, pal.g, sc.ground_strip
    walk = np.clip(np.array([g + 45] * 3) + rng.integers(-10, 11, 3), 0, 255)
    for side in (-1, 1):
        if urban and rng.uniform() < 0.75:
            w0, w1 = edge + rng.uniform(0.0, 0.3), edge + rng.uniform(1.5, 4.0)
            a_, b_ = (-w1, -w0) if side < 0 else (w0, w1)
            cv2.fillPoly(img, [ground_strip(a_, b_)], bgr(walk))


def road(sc: Scene, pal: Palette, img: np.ndarray) -> np.ndarray:
    """Road surface (with repair patches); returns the drivable mask."""
    rng, W, H, edge, z_near, asphalt, ground_strip = (
        sc.rng,
        sc.W,
        sc.H,
        sc.edge,
        sc.z_near,
        pal.asphalt,
        sc.ground_strip,
    )
    road_poly = ground_strip(-edge, edge, n=48)
    drivable = np.zeros((H, W), np.uint8)
    cv2.fillPoly(drivable, [road_poly], 255)
    cv2.fillPoly(img, [road_poly], bgr(asphalt))
    for _ in range(int(rng.integers(0, 4))):  # repair patches
        zp = rng.uniform(z_near + 2, 40)
        sp = rng.uniform(-edge, edge - 1)
        patch = ground_strip(sp, min(edge, sp + rng.uniform(0.5, 3)), zp, zp + rng.uniform(1, 8), 4)
        cv2.fillPoly(img, [patch], bgr(asphalt, rng.uniform(0.8, 1.15)))
    return drivable


def lines(sc: Scene, pal: Palette, img: np.ndarray) -> np.ndarray:
    """Lines: paint in the image, continuous polylines in the returned lane mask."""
    rng, W, H, cam, yh, zs = sc.rng, sc.W, sc.H, sc.cam, sc.yh, sc.zs
    n_lanes, half, lw, z_near, z_far = sc.n_lanes, sc.half, sc.lw, sc.z_near, sc.z_far
    asphalt, ground_strip = pal.asphalt, sc.ground_strip
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
        paint = bgr(asphalt * (1 - wear) + colour * wear)
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
    return lane


def place_vehicles(sc: Scene) -> list[Obj]:
    """Vehicle candidates, each in a free gap of its lane."""
    rng, cam, f, n_lanes, ego, half, lw, z_far = sc.rng, sc.cam, sc.f, sc.n_lanes, sc.ego, sc.half, sc.lw, sc.z_far
    objs: list[Obj] = []
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
        objs.append(make_vehicle(cam, rng, cat, s0, z, dims))
    return objs


def roadside(sc: Scene, objs: list[Obj]) -> list[tuple[float, float, float]]:
    """Roadside clutter (never a vehicle), appended to ``objs``; returns the lamp heads (s, height, z)."""
    rng, cam, edge, urban, z_far = sc.rng, sc.cam, sc.edge, sc.urban, sc.z_far
    lamps: list[tuple[float, float, float]] = []  # (s, height, z) of lamp heads
    for side in (-1, 1):
        zc = rng.uniform(4, 30)
        spacing = rng.uniform(18, 45)
        kind_p = rng.uniform()
        while zc < z_far * 0.7:
            r = rng.uniform()
            off = edge + rng.uniform(0.5, 3.0)
            if r < 0.35 + 0.2 * kind_p:
                objs.append(make_pole(cam, rng, side * off, zc, side, lamps))
            elif r < 0.55:
                objs.append(make_sign(cam, rng, side * off, zc))
            elif r < 0.8 and not (urban and kind_p < 0.5):
                objs.append(make_tree(cam, rng, side * (off + rng.uniform(1, 6)), zc))
            elif urban:
                z2 = zc + rng.uniform(8, 30)
                objs.append(make_building(cam, rng, side * (off + rng.uniform(2, 6)), zc, z2))
                zc = z2
            zc += spacing * rng.uniform(0.6, 1.4)
    return lamps


def occlusion(sc: Scene, objs: list[Obj]) -> tuple[list[Obj], list[Obj], np.ndarray]:
    """Instance-id map, visible boxes, keep/drop; returns the kept objects, vehicles and the id map."""
    W, H = sc.W, sc.H
    objs.sort(key=lambda o: -o.z)
    vehicles = [o for o in objs if o.vid == 0]
    for i, o in enumerate(vehicles, start=1):
        o.vid = i
    idmap = np.zeros((H, W), np.uint8)
    for _ in range(2):
        idmap[:] = 0
        for o in objs:
            raster(idmap, o.shapes, o.vid)
        measure(idmap, vehicles, W, H)
        drop = [
            o
            for o in vehicles
            if o.box is None or o.visible < MIN_VISIBLE_FRACTION * o.full or o.box[3] - o.box[1] < MIN_BOX_HEIGHT
        ]
        if not drop:
            break
        objs = [o for o in objs if o not in drop]
        vehicles = [o for o in vehicles if o not in drop]
    return objs, vehicles, idmap


def draw_objects(
    pal: Palette,
    img: np.ndarray,
    objs: list[Obj],
    vehicles: list[Obj],
    idmap: np.ndarray,
    drivable: np.ndarray,
    lane: np.ndarray,
) -> None:
    """Shadows of vehicles, then everything in depth order; occluded pixels leave both masks."""
    asphalt = pal.asphalt
    shadow_col = bgr(asphalt, 0.3)
    for o in vehicles:  # dark contact shadow just below the rear bumper
        ul, ur, vb = o.rear  # type: ignore[misc]
        hgt = max(1.0, 0.03 * (ur - ul))
        cv2.rectangle(img, (int(round(ul)), int(round(vb - 1))), (int(round(ur)), int(round(vb + hgt))), shadow_col, -1)
    for o in objs:
        o.draw(img)
    occluded = idmap > 0
    drivable[occluded] = 0
    lane[occluded] = 0


def labels(sc: Scene, stem: str, vehicles: list[Obj]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The YOLOP-style label of the kept vehicles and the scene facts."""
    n_lanes, tod, urban, k = sc.n_lanes, sc.tod, sc.urban, sc.k
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
    return label, info
