"""synthroad's photometry: the light on a drawn scene (gain map, cast shadows, vignette, headlights,
night glows) and the sensor (noise, blur, JPEG quality). Steps of :func:`compress.data.synthroad.render`,
drawn after the geometry of :mod:`compress.data.synth_scene`, from the same generator.
"""

from __future__ import annotations

import cv2
import numpy as np

from .synth_scene import Scene
from .synth_shapes import Obj, ip


def lighting(sc: Scene, img: np.ndarray, lamps: list[tuple[float, float, float]]) -> np.ndarray:
    """Low-res gain map (texture, cast shadows, vignette, headlights); returns the lit float image."""
    rng, W, H, cam, tod, yh = sc.rng, sc.W, sc.H, sc.cam, sc.tod, sc.yh
    edge, z_near, ground_strip = sc.edge, sc.z_near, sc.ground_strip
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
            cv2.fillPoly(light, [ip(pts)], float(rng.uniform(0.45, 0.75)))
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
        for ls, _lh, lz in lamps:
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
    return imgf


def glows(
    sc: Scene, imgf: np.ndarray, vehicles: list[Obj], lamps: list[tuple[float, float, float]], idmap: np.ndarray
) -> None:
    """Glows (night / dusk): tail lights and street lamps, added to ``imgf``."""
    W, H, cam, tod = sc.W, sc.H, sc.cam, sc.tod
    hs, ws = max(2, H // 4), max(2, W // 4)
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


def sensor(sc: Scene, imgf: np.ndarray) -> tuple[np.ndarray, int]:
    """Sensor noise, blur; returns the 8-bit image and its JPEG quality."""
    rng, W, H, tod = sc.rng, sc.W, sc.H, sc.tod
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
    return img, quality
