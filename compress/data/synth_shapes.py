"""synthroad's geometry: the road-frame pinhole camera, 2-D shapes and the objects drawn in depth order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

OCCLUDER_ID = 255  # instance id of roadside clutter in the occlusion map (vehicles are 1..254)


@dataclass
class Cam:
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


def ip(pts: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pts), -1e6, 1e6).astype(np.int32)


def bgr(c: Any, gain: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v * gain)))) for v in c)  # type: ignore[return-value]


# A shape is ("poly", Nx2 int32 convex polygon) or ("circle", (x, y), r).
Shape = tuple


def raster(target: np.ndarray, shapes: list[Shape], value: Any, offset: tuple[int, int] = (0, 0)) -> None:
    ox, oy = offset
    for sh in shapes:
        if sh[0] == "poly":
            cv2.fillConvexPoly(target, sh[1] - np.array([ox, oy], np.int32), value)
        else:
            (x, y), r = sh[1], sh[2]
            cv2.circle(target, (x - ox, y - oy), r, value, -1)


def bounds(shapes: list[Shape]) -> tuple[int, int, int, int]:
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
class Obj:
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


def measure(idmap: np.ndarray, vehicles: list[Obj], W: int, H: int) -> None:
    """Visible pixel count, in-image and full silhouette areas and visible box per vehicle."""
    counts = np.bincount(idmap.ravel(), minlength=256)
    for o in vehicles:
        x0, y0, x1, y1 = bounds(o.shapes)
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        raster(canvas, o.shapes, 1, (x0, y0))
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
