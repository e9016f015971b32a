"""``sensor_msgs/Image`` and ``CompressedImage`` <-> numpy, without cv_bridge.

Works on any object with the message's fields (rclpy messages, rosbags dataclasses), so it is
tested here with the real ROS 2 message definitions and CDR encoding from ``rosbags``. Every
malformed message raises :class:`ImageError` naming the field, its value and what was expected.

Untrusted input: every compressed frame (a ``CompressedImage`` or an image file, through
:func:`decode_bytes` / :func:`read_image`) is size-checked from its header *before* OpenCV decodes
it (:func:`header_size` reads JPEG SOFn, PNG IHDR, BMP headers with plain byte arithmetic), and a raw
``Image`` is checked from its fields before any reshape; the bound is :data:`DEFAULT_LIMITS`
(:data:`MAX_SIDE` per side, :data:`MAX_PIXELS` in all; 8K video is 7680x4320 = 33 Mpixel), a
``limits=`` keyword everywhere. Only JPEG, PNG and BMP reach the decoder; a JPEG without its
end-of-image marker after the scan data (a file cut short) is "truncated", whatever OpenCV would make
of it, so that every command judges a half file alike. Any decoder failure is :class:`ImageError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: largest width or height of a frame that is decoded (pixels; 8K video is 7680 wide)
MAX_SIDE = 16384
#: largest width x height of a frame that is decoded (about 3x an 8K frame; 300 MB as BGR)
MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class ImageLimits:
    """The largest frame the decoders accept, checked from the header before any decoding."""

    max_side: int = MAX_SIDE
    max_pixels: int = MAX_PIXELS

    def check(self, width: int, height: int, what: str) -> None:
        """:class:`ImageError` naming ``what``, its claimed size and the limit when over it."""
        if width <= 0 or height <= 0:
            raise ImageError(f"{what} claims a size of {width}x{height}; width and height must be positive")
        if width > self.max_side or height > self.max_side or width * height > self.max_pixels:
            raise ImageError(
                f"{what} claims {width}x{height} pixels, over the limit of {self.max_side} per side and "
                f"{self.max_pixels} pixels in all; it is not decoded (pass limits=ImageLimits(...) to allow "
                "larger frames)"
            )


#: the limits every decoder uses unless given others
DEFAULT_LIMITS = ImageLimits()

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


PACKED_PAIRS = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})  # 4:2:2: a pixel pair in 4 bytes


def check_image_geometry(
    enc: str, h: int, w: int, step: int, data_size: int, limits: ImageLimits = DEFAULT_LIMITS
) -> tuple[int, str, int, int]:
    """The rules every raw ``sensor_msgs/Image`` meets before its bytes are viewed (here and in the
    serialized view, :mod:`mtc_perception.messages.cdr_image`): a known encoding, a positive size within
    ``limits``, whole pixel pairs for 4:2:2, ``step`` at least the row bytes, ``data_size == step x
    height``. Returns (channels, dtype, itemsize, row bytes); :class:`ImageError` otherwise."""
    if enc not in ENCODINGS:
        raise ImageError(f"Image.encoding {enc!r} is not supported; supported: {sorted(ENCODINGS)}")
    if h <= 0 or w <= 0:
        raise ImageError(f"Image.height x width is {h} x {w}; both must be positive")
    limits.check(w, h, f"Image ({enc})")
    ch, dt = ENCODINGS[enc]
    itemsize = np.dtype(dt).itemsize
    row = w * ch * itemsize
    if enc in PACKED_PAIRS and w % 2:
        raise ImageError(f"Image.width {w} is odd; {enc} packs pixel pairs and needs an even width")
    if step < row:
        raise ImageError(
            f"Image.step {step} is smaller than width x bytes per pixel = {w} x {ch * itemsize} = {row} for {enc}"
        )
    if data_size != step * h:
        raise ImageError(f"len(Image.data) is {data_size} but step x height = {step} x {h} = {step * h}")
    return ch, dt, itemsize, row


def image_to_bgr(msg: Any, *, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A ``sensor_msgs/Image`` -> BGR uint8 (H, W, 3) array (a copy; row padding removed);
    width x height is checked against ``limits`` before anything is reshaped or converted."""
    import cv2

    enc = str(msg.encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = _data(msg)
    ch, dt, itemsize, row = check_image_geometry(enc, h, w, step, data.size, limits)
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
        # cv_bridge's 16 -> 8 bit scaling (convertTo by 255/65535, rounded): the same image as ROS's own
        return cv2.cvtColor(np.rint(px * (255.0 / 65535.0)).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if enc in ("yuv422", "uyvy"):
        return cv2.cvtColor(px, cv2.COLOR_YUV2BGR_UYVY)
    if enc in ("yuv422_yuy2", "yuyv"):
        return cv2.cvtColor(px, cv2.COLOR_YUV2BGR_YUY2)
    return cv2.cvtColor(px, getattr(cv2, _BAYER[enc]))


def compressed_to_bgr(msg: Any, *, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg or png, as image_transport writes them) -> BGR."""
    fmt = str(getattr(msg, "format", "")).lower()
    if fmt and not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ImageError(f"CompressedImage.format {msg.format!r} is not jpeg or png")
    return decode_bytes(_data(msg), f"CompressedImage.data (format {getattr(msg, 'format', '')!r})", limits=limits)


def is_compressed(msg: Any) -> bool:
    """A ``CompressedImage`` (has ``format``, no ``encoding``) rather than a raw ``Image``."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def message_kind(msg: Any) -> str:
    """``CompressedImage`` or ``Image/<encoding>``: how a bad frame is named in warnings and counts."""
    return "CompressedImage" if is_compressed(msg) else f"Image/{getattr(msg, 'encoding', '?')}"


def message_to_bgr(msg: Any, *, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Any camera message -> BGR uint8: a raw ``Image`` in any supported encoding or a
    ``CompressedImage`` (jpeg / png). The one decode dispatch of the node and both benchmarks."""
    return compressed_to_bgr(msg, limits=limits) if is_compressed(msg) else image_to_bgr(msg, limits=limits)


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# SOFn markers (baseline, extended, progressive, lossless, arithmetic); C4 DHT, C8 JPG, CC DAC are not frames
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class _Corrupt(Exception):
    """What is wrong with a header (:func:`header_size` adds what was read)."""


def _jpeg_size(b: bytes) -> tuple[int, int]:
    """(width, height) from the first SOFn segment; :class:`_Corrupt` when the markers do not
    lead to one, or when the scan data that follows has no end-of-image marker (a file cut short)."""
    pos, n = 2, len(b)
    size: tuple[int, int] | None = None
    while True:
        while pos < n and b[pos] == 0xFF and pos + 1 < n and b[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 2 > n:
            raise _Corrupt("truncated, it ends inside its headers")
        if b[pos] != 0xFF:
            raise _Corrupt(f"marker expected at byte {pos}, found 0x{b[pos]:02x}; the file is corrupt")
        m = b[pos + 1]
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # TEM, RSTn, SOI: no length
            pos += 2
            continue
        if m == 0xD9:
            raise _Corrupt("it ends (EOI) before any image data")
        if pos + 4 > n:
            raise _Corrupt("truncated, it ends inside its headers")
        length = (b[pos + 2] << 8) | b[pos + 3]
        if length < 2:
            raise _Corrupt(f"segment 0x{m:02x} at byte {pos} has length {length}; the file is corrupt")
        if m in _SOF:
            if pos + 9 > n or length < 8:
                raise _Corrupt(f"truncated, the frame header at byte {pos} is cut short")
            h, w = struct.unpack(">HH", b[pos + 5 : pos + 9])
            if h == 0:
                raise _Corrupt("the frame header declares height 0 (DNL); not supported")
            size = (w, h)
        if m == 0xDA:  # start of scan: the frame header must have come, EOI must follow the scan data
            if size is None:
                raise _Corrupt("a scan starts before any frame header (SOFn); the file is corrupt")
            if b.find(b"\xff\xd9", pos + 2 + length) < 0:
                raise _Corrupt(
                    "truncated, no end-of-image marker after the scan data: the file was cut short; "
                    "re-copy or re-encode it"
                )
            return size
        pos += 2 + length


def header_size(data: bytes | np.ndarray, what: str = "compressed frame") -> tuple[str, int, int]:
    """(format, width, height) read from a JPEG / PNG / BMP header without decoding anything;
    :class:`ImageError` naming ``what`` for any other content, a corrupt header or a truncated JPEG."""
    b = data if isinstance(data, bytes) else np.asarray(data, np.uint8).reshape(-1).tobytes()
    if b[:2] == b"\xff\xd8":
        try:
            return ("jpeg", *_jpeg_size(b))
        except _Corrupt as e:
            raise ImageError(f"{what} of {len(b)} bytes is not a decodable image (JPEG: {e})") from None
    if b[:8] == _PNG_MAGIC:
        if len(b) < 24 or b[12:16] != b"IHDR":
            raise ImageError(
                f"{what} of {len(b)} bytes is not a decodable image (PNG: no IHDR header; corrupt or truncated)"
            )
        w, h = struct.unpack(">II", b[16:24])
        if b.rfind(b"IEND") < 0:
            raise ImageError(
                f"{what} of {len(b)} bytes is not a decodable image (PNG: truncated, no IEND chunk; re-copy or re-encode it)"
            )
        return "png", w, h
    if b[:2] == b"BM" and len(b) >= 26:
        (dib,) = struct.unpack("<I", b[14:18])
        if dib == 12:
            w, h = struct.unpack("<hh", b[18:22])
        else:
            w, h = struct.unpack("<ii", b[18:26])
        return "bmp", w, abs(h)
    head = b[:8].hex(" ")
    raise ImageError(f"{what} of {len(b)} bytes is not a decodable image (not JPEG, PNG or BMP: it starts with {head})")


def decode_bytes(
    data: bytes | np.ndarray,
    what: str = "compressed frame",
    *,
    flags: int | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """JPEG/PNG/BMP bytes -> BGR uint8 image (``flags`` None: ``cv2.IMREAD_COLOR``; e.g.
    ``cv2.IMREAD_UNCHANGED`` for label masks), or :class:`ImageError` naming ``what``. The size in the
    header is checked against ``limits`` before OpenCV is called (see the module's notes)."""
    import cv2

    buf = (
        np.frombuffer(data, np.uint8)
        if isinstance(data, (bytes, bytearray, memoryview))
        else np.asarray(data, np.uint8).ravel()
    )
    if buf.size == 0:
        raise ImageError(f"{what} is empty")
    fmt, w, h = header_size(buf, what)
    limits.check(w, h, f"{what} ({fmt.upper()})")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR if flags is None else flags)
    except cv2.error as e:
        raise ImageError(f"{what}: {fmt.upper()} of {buf.size} bytes ({w}x{h}) cannot be decoded: {e}") from None
    if img is None:
        raise ImageError(f"{what}: {fmt.upper()} of {buf.size} bytes ({w}x{h}) is not a decodable image")
    return img


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text that can always be printed or logged: bytes that are not UTF-8 are shown as
    ``\\xNN`` escapes (a file name is bytes on Linux; ``str(path)`` may hold lone surrogates)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_image(
    path: str | os.PathLike[str], *, flags: int | None = None, limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """An image file -> BGR uint8 (or as ``flags`` say), the one image-file reader of every command:
    the bytes are read by Python (any file name, UTF-8 or not, never handed to OpenCV) and decoded
    by :func:`decode_bytes`; :class:`ImageError` naming the file for anything unreadable, too large
    or truncated (:class:`FileNotFoundError` when it does not exist)."""
    p = Path(path)
    shown = display_path(p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {shown} does not exist") from None
    except OSError as e:
        raise ImageError(f"image file {shown} cannot be read: {e.strerror or e}") from None
    return decode_bytes(data, f"image file {shown}", flags=flags, limits=limits)


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
