"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, without cv_bridge.

Works on any object with the message's fields (rclpy messages, rosbags dataclasses), so it is
tested here with the real ROS 2 message definitions and CDR encoding from ``rosbags``. Every
malformed message raises :class:`ImageError` naming the field, its value and what was expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: encoding -> (channels, numpy dtype of one channel)
ENCODINGS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "u1"),
    "bgr8": (3, "u1"),
    "rgba8": (4, "u1"),
    "bgra8": (4, "u1"),
    "mono8": (1, "u1"),
    "8UC1": (1, "u1"),
    "8UC3": (3, "u1"),
    "mono16": (1, "u2"),
    "16UC1": (1, "u2"),
    "yuv422": (2, "u1"),
    "uyvy": (2, "u1"),
    "yuv422_yuy2": (2, "u1"),
    "yuyv": (2, "u1"),
    "bayer_rggb8": (1, "u1"),
    "bayer_bggr8": (1, "u1"),
    "bayer_gbrg8": (1, "u1"),
    "bayer_grbg8": (1, "u1"),
}

# OpenCV names a Bayer pattern after its second row's first two pixels; these are cv_bridge's pairs
_BAYER = {
    "bayer_rggb8": "COLOR_BayerBG2BGR",
    "bayer_bggr8": "COLOR_BayerRG2BGR",
    "bayer_gbrg8": "COLOR_BayerGR2BGR",
    "bayer_grbg8": "COLOR_BayerGB2BGR",
}


class ImageError(ValueError):
    """A camera message that cannot be turned into an image."""


def _data(msg: Any) -> np.ndarray:
    data = msg.data
    if isinstance(data, np.ndarray):
        return data.view(np.uint8).reshape(-1)
    return np.frombuffer(bytes(data), np.uint8)


def image_to_bgr(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/Image`` -> BGR uint8 (H, W, 3) array (a copy; row padding removed)."""
    import cv2

    enc = str(msg.encoding)
    if enc not in ENCODINGS:
        raise ImageError(f"Image.encoding {enc!r} is not supported; supported: {sorted(ENCODINGS)}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError(f"Image.height x width is {h} x {w}; both must be positive")
    ch, dt = ENCODINGS[enc]
    itemsize = np.dtype(dt).itemsize
    row = w * ch * itemsize
    if enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and w % 2:
        raise ImageError(f"Image.width {w} is odd; {enc} packs pixel pairs and needs an even width")
    if step < row:
        raise ImageError(
            f"Image.step {step} is smaller than width x bytes per pixel = {w} x {ch * itemsize} = {row} for {enc}"
        )
    data = _data(msg)
    if data.size != step * h:
        raise ImageError(f"len(Image.data) is {data.size} but step x height = {step} x {h} = {step * h}")
    rows = data.reshape(h, step)[:, :row]  # drop the padding of every row
    if itemsize == 1:
        px = np.ascontiguousarray(rows).reshape(h, w, ch) if ch > 1 else np.ascontiguousarray(rows).reshape(h, w)
    else:
        order = ">" if int(getattr(msg, "is_bigendian", 0)) else "<"
        px = np.ascontiguousarray(rows).view(np.dtype(order + dt)).reshape(h, w).astype(np.uint16)
    if enc in ("bgr8", "8UC3"):
        return px.copy()
    if enc == "rgb8":
        return cv2.cvtColor(px, cv2.COLOR_RGB2BGR)
    if enc == "rgba8":
        return cv2.cvtColor(px, cv2.COLOR_RGBA2BGR)
    if enc == "bgra8":
        return cv2.cvtColor(px, cv2.COLOR_BGRA2BGR)
    if enc in ("mono8", "8UC1"):
        return cv2.cvtColor(px, cv2.COLOR_GRAY2BGR)
    if enc in ("mono16", "16UC1"):
        return cv2.cvtColor((px >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if enc in ("yuv422", "uyvy"):
        return cv2.cvtColor(px, cv2.COLOR_YUV2BGR_UYVY)
    if enc in ("yuv422_yuy2", "yuyv"):
        return cv2.cvtColor(px, cv2.COLOR_YUV2BGR_YUY2)
    return cv2.cvtColor(px, getattr(cv2, _BAYER[enc]))


def compressed_to_bgr(msg: Any) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg or png, as image_transport writes them) -> BGR."""
    fmt = str(getattr(msg, "format", "")).lower()
    if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ImageError(f"CompressedImage.format {msg.format!r} is not jpeg or png")
    return decode_bytes(_data(msg), f"CompressedImage.data (format {getattr(msg, 'format', '')!r})")


def is_compressed(msg: Any) -> bool:
    """A ``CompressedImage`` (has ``format``, no ``encoding``) rather than a raw ``Image``."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def message_kind(msg: Any) -> str:
    """``CompressedImage`` or ``Image/<encoding>``: how a bad frame is named in warnings and counts."""
    return "CompressedImage" if is_compressed(msg) else f"Image/{getattr(msg, 'encoding', '?')}"


def message_to_bgr(msg: Any) -> np.ndarray:
    """Any camera message -> BGR uint8: a raw ``Image`` in any supported encoding or a
    ``CompressedImage`` (jpeg / png). The one decode dispatch of the node and both benchmarks."""
    return compressed_to_bgr(msg) if is_compressed(msg) else image_to_bgr(msg)


def decode_bytes(data: bytes | np.ndarray, what: str = "compressed frame") -> np.ndarray:
    """JPEG/PNG bytes -> BGR uint8 image, or :class:`ImageError` naming ``what``."""
    import cv2

    buf = (
        np.frombuffer(data, np.uint8)
        if isinstance(data, (bytes, bytearray, memoryview))
        else np.asarray(data, np.uint8).ravel()
    )
    if buf.size == 0:
        raise ImageError(f"{what} is empty")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"{what} of {buf.size} bytes is not a decodable image (JPEG/PNG)")
    return img


def bgr_to_image_fields(img: np.ndarray, encoding: str = "bgr8") -> dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` holding ``img`` (BGR uint8, or a 2-D uint8 for mono8)."""
    img = np.ascontiguousarray(img)
    if encoding == "mono8":
        if img.ndim != 2 or img.dtype != np.uint8:
            raise ImageError(f"mono8 needs a 2-D uint8 array, got {img.dtype} {img.shape}")
        ch = 1
    elif encoding == "bgr8":
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ImageError(f"bgr8 needs an HxWx3 uint8 array, got {img.dtype} {img.shape}")
        ch = 3
    else:
        raise ImageError(f"encoding {encoding!r}: only bgr8 and mono8 are written")
    h, w = img.shape[:2]
    return {"height": h, "width": w, "encoding": encoding, "is_bigendian": 0, "step": w * ch, "data": img.reshape(-1)}


def mask_to_image_fields(mask: np.ndarray) -> dict[str, Any]:
    """A {0, 1} mask -> fields of a mono8 ``sensor_msgs/Image`` with values 0 / 255."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ImageError(f"a mask must be 2-D, got shape {m.shape}")
    return bgr_to_image_fields((m > 0).astype(np.uint8) * np.uint8(255), "mono8")
