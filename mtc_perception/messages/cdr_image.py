"""A serialized (CDR) ``sensor_msgs/msg/Image`` read in place: fields parsed, pixels viewed, nothing copied.

At camera rate rclpy's deserialisation of a raw frame (2.7 MB of ``uint8[]`` at 1280x720 bgr8) into a
Python object costs more than the copy it makes. A raw subscription hands over the rmw's serialized
bytes instead; :func:`image_view` parses the few header fields from them and returns ``data`` as a
numpy view of the caller's buffer, and :func:`pixel_view` gives the (H, W, C) pixel array as a
strided view of that, row padding skipped rather than cut away by a copy. No rclpy import: this is
tested with the real ROS 2 definitions and CDR encoder of ``rosbags``.

The wire form (OMG CDR as the ROS 2 rmw layers write it): a 4-byte encapsulation header (``00 00``
big endian, ``00 01`` little endian, two option bytes), then the fields in declaration order, each
primitive aligned to its own size counted from the end of that header; a string is a ``uint32``
length that includes the terminating NUL, then the bytes; a ``sequence<uint8>`` is a ``uint32``
count, then the bytes.

The bytes are untrusted (any publisher on the topic): every length is checked against what the
buffer holds before it is used, nothing is allocated from a declared size, and every problem is an
:class:`~mtc_perception.imaging.ImageError` naming the field, its byte offset and what was expected.
The returned object has the fields of a ``sensor_msgs/Image`` that :func:`~mtc_perception.imaging.
image_to_bgr` reads, so the one decode path (:func:`~mtc_perception.imaging.message_to_bgr`) takes it
unchanged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from ..imaging import DEFAULT_LIMITS, ImageError, ImageLimits, check_image_geometry

#: the encapsulation identifiers (bytes 0-1, big endian) of plain CDR, as rmw serializes a message
CDR_BE, CDR_LE = 0x0000, 0x0001
#: bytes the rmw may leave after the last field to round the payload up to 4 (Fast DDS does)
_MAX_TAIL_PADDING = 3


@dataclass(frozen=True)
class CdrImage:
    """The fields of one serialized ``sensor_msgs/msg/Image``; ``data`` is a read view of the buffer
    it was parsed from (writable only where that buffer is), valid as long as the buffer is.

    ``stamp`` is the header's (sec, nanosec). The names of the rest are those of the message, so
    :func:`~mtc_perception.imaging.image_to_bgr` accepts a ``CdrImage`` as it accepts a message.
    """

    stamp: tuple[int, int]
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


class _Cursor:
    """Reads CDR primitives from ``buf`` in order, aligning each to its size (relative to ``base``,
    the end of the encapsulation header) and refusing to read past the end."""

    def __init__(self, buf: memoryview, base: int, little_endian: bool, what: str = "serialized Image") -> None:
        self.buf, self.base, self.pos = buf, base, base
        self.order = "<" if little_endian else ">"
        self.what = what

    def _take(self, size: int, field: str) -> int:
        """The offset of ``size`` bytes of ``field`` at the aligned position; the cursor moves past them."""
        start = self.pos + (-(self.pos - self.base) % size if size in (2, 4, 8) else 0)
        if start + size > len(self.buf):
            raise ImageError(
                f"{self.what} is truncated: {field} needs {size} bytes at offset {start}, "
                f"but the buffer has {len(self.buf)} bytes"
            )
        self.pos = start + size
        return start

    def integer(self, fmt: str, field: str) -> int:
        """One integer of struct format ``fmt`` (``B``, ``i`` or ``I``)."""
        size = struct.calcsize(self.order + fmt)  # standard sizes: B 1, i and I 4
        return int(struct.unpack_from(self.order + fmt, self.buf, self._take(size, field))[0])

    def counted(self, field: str) -> tuple[int, int]:
        """(offset, length) of a length-prefixed byte run (string or ``sequence<uint8>``), checked
        against the bytes that are left before anything is read from it."""
        n = self.integer("I", f"the length of {field}")
        left = len(self.buf) - self.pos
        if n > left:
            raise ImageError(
                f"{self.what} is truncated or corrupt: {field} declares {n} bytes at offset {self.pos}, "
                f"but only {left} bytes are left"
            )
        start, self.pos = self.pos, self.pos + n
        return start, n

    def string(self, field: str) -> str:
        """A CDR string: the length counts a terminating NUL, which is dropped; UTF-8 as ROS 2 has it."""
        start, n = self.counted(field)
        raw = bytes(self.buf[start : start + n])
        if n == 0 or raw[-1] != 0:
            raise ImageError(
                f"{self.what} is corrupt: {field} at offset {start} (length {n}) does not end with the "
                "NUL byte a CDR string ends with"
            )
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ImageError(f"{self.what} is corrupt: {field} at offset {start} is not UTF-8 ({e})") from e


def _bytes_of(buf: bytes | bytearray | memoryview, what: str = "serialized Image") -> memoryview:
    """A flat byte view of ``buf`` (any C-contiguous buffer), without copying it."""
    expected = f"a {what} must be a contiguous bytes-like object (bytes, bytearray, memoryview)"
    try:
        mv = memoryview(buf)
    except TypeError as e:
        raise ImageError(f"{expected}; got {type(buf).__name__}") from e
    if not mv.c_contiguous:
        raise ImageError(f"{expected}; got a non-contiguous {type(buf).__name__} (copy it with bytes() first)")
    return mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B")


def _open(buf: bytes | bytearray | memoryview, what: str) -> _Cursor:
    """A cursor after the encapsulation header of ``buf``, and the header's (sec, nanosec, frame_id)
    read; the encapsulation is checked to be plain CDR in either byte order."""
    mv = _bytes_of(buf, what)
    if len(mv) < 4:
        raise ImageError(f"{what} is {len(mv)} bytes long; it needs at least the 4-byte CDR encapsulation header")
    kind = (mv[0] << 8) | mv[1]
    if kind not in (CDR_BE, CDR_LE):
        raise ImageError(
            f"{what} has encapsulation 0x{kind:04x}; expected 0x{CDR_BE:04x} (CDR big endian) or "
            f"0x{CDR_LE:04x} (CDR little endian), as the ROS 2 rmw layers serialize messages"
        )
    return _Cursor(mv, 4, little_endian=kind == CDR_LE, what=what)


def _check_tail(cur: _Cursor, message: str) -> None:
    tail = len(cur.buf) - cur.pos
    if tail > _MAX_TAIL_PADDING:
        raise ImageError(
            f"{cur.what} has {tail} bytes after its data (which ends at offset {cur.pos}); expected at "
            f"most {_MAX_TAIL_PADDING} bytes of padding: is this a {message}?"
        )


def image_view(buf: bytes | bytearray | memoryview) -> CdrImage:
    """The fields of the CDR-serialized ``sensor_msgs/msg/Image`` in ``buf`` (as a raw subscription
    or a rosbag2 recording holds it), with ``data`` a zero-copy ``uint8`` view of ``buf``.

    Only the message's own structure is checked here (encapsulation, lengths, bounds); whether
    height, width, step and encoding describe ``data`` is :func:`pixel_view`'s (and
    ``image_to_bgr``'s) check, so a bad frame is reported by the same rule whichever path it takes.
    """
    cur = _open(buf, "serialized Image")
    sec = cur.integer("i", "header.stamp.sec")
    nanosec = cur.integer("I", "header.stamp.nanosec")
    frame_id = cur.string("header.frame_id")
    height = cur.integer("I", "height")
    width = cur.integer("I", "width")
    encoding = cur.string("encoding")
    is_bigendian = cur.integer("B", "is_bigendian")
    step = cur.integer("I", "step")
    start, n = cur.counted("data")
    _check_tail(cur, "sensor_msgs/msg/Image")
    return CdrImage(
        stamp=(sec, nanosec),
        frame_id=frame_id,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=is_bigendian,
        step=step,
        data=np.frombuffer(cur.buf[start : start + n], np.uint8),
    )


@dataclass(frozen=True)
class CdrCompressedImage:
    """The fields of one serialized ``sensor_msgs/msg/CompressedImage``; ``data`` (the jpeg / png
    bytes) is a read view of the buffer it was parsed from. The names are the message's, so
    :func:`~mtc_perception.imaging.message_to_bgr` takes it as it takes a message."""

    stamp: tuple[int, int]
    frame_id: str
    format: str
    data: np.ndarray


def compressed_view(buf: bytes | bytearray | memoryview) -> CdrCompressedImage:
    """The fields of the CDR-serialized ``sensor_msgs/msg/CompressedImage`` in ``buf``, ``data`` a
    zero-copy view; the same checks as :func:`image_view` (the bytes are decoded, and checked as an
    image, by :func:`~mtc_perception.imaging.compressed_to_bgr`)."""
    cur = _open(buf, "serialized CompressedImage")
    sec = cur.integer("i", "header.stamp.sec")
    nanosec = cur.integer("I", "header.stamp.nanosec")
    frame_id = cur.string("header.frame_id")
    fmt = cur.string("format")
    start, n = cur.counted("data")
    _check_tail(cur, "sensor_msgs/msg/CompressedImage")
    return CdrCompressedImage(
        stamp=(sec, nanosec), frame_id=frame_id, format=fmt, data=np.frombuffer(cur.buf[start : start + n], np.uint8)
    )


class CdrWriter:
    """Little-endian CDR into a bytearray, the writing counterpart of ``_Cursor``: each primitive
    aligned to its size, counted from the end of the 4-byte encapsulation header."""

    def __init__(self) -> None:
        self.buf = bytearray(b"\x00\x01\x00\x00")

    def align(self, n: int) -> None:
        self.buf += bytes(-(len(self.buf) - 4) % n)

    def u32(self, *v: int) -> None:
        self.align(4)
        self.buf += struct.pack(f"<{len(v)}I", *v)

    def u8(self, v: int) -> None:
        self.buf += struct.pack("<B", v)

    def string(self, s: str) -> None:
        raw = s.encode("utf-8") + b"\0"
        self.u32(len(raw))
        self.buf += raw

    def header(self, stamp: tuple[int, int], frame_id: str) -> None:
        self.align(4)
        self.buf += struct.pack("<iI", int(stamp[0]), int(stamp[1]))
        self.string(frame_id)

    def doubles(self, *v: float) -> None:
        self.align(8)
        self.buf += struct.pack(f"<{len(v)}d", *v)


class MaskWriter:
    """Serialized mono8 ``sensor_msgs/msg/Image`` masks (0 / 255), written into a buffer kept from
    frame to frame: only the header's stamp and the pixels change between frames of one camera, so
    a frame costs one pass over the mask into the buffer and the ``bytes`` copy rclpy publishes
    (``Publisher.publish(bytes)``), instead of a Python message whose ``uint8[]`` setter walks every
    pixel. Little-endian CDR, as every rmw on the platforms we support writes it; the layout is
    :func:`image_view`'s, and the test reads it back with rosbags' deserializer.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._key: tuple[str, int, int] | None = None
        self._pixels = 0  # offset of the pixels in _buf

    def __call__(self, stamp: tuple[int, int], frame_id: str, mask: np.ndarray) -> bytes:
        """The serialized mask image; ``mask`` is 2-D, nonzero -> 255."""
        m = np.asarray(mask)
        if m.ndim != 2:
            raise ImageError(f"a mask must be 2-D, got shape {m.shape}")
        h, w = m.shape
        key = (frame_id, h, w)
        if key != self._key:
            self._layout(frame_id, h, w)
            self._key = key
        struct.pack_into("<iI", self._buf, 4, int(stamp[0]), int(stamp[1]))
        px = np.frombuffer(self._buf, np.uint8, h * w, self._pixels).reshape(h, w)
        if m.dtype == np.bool_:
            np.multiply(m, np.uint8(255), out=px, casting="unsafe")
        else:
            np.not_equal(m, 0, out=px.view(np.bool_))
            px *= np.uint8(255)
        return bytes(self._buf)

    def _layout(self, frame_id: str, h: int, w: int) -> None:
        w_ = CdrWriter()
        w_.header((0, 0), frame_id)
        w_.u32(h, w)
        w_.string("mono8")
        w_.u8(0)  # is_bigendian
        w_.u32(w, h * w)  # step, the length of data
        self._pixels = len(w_.buf)
        self._buf = w_.buf + bytearray(h * w)


def pixel_view(img: CdrImage, *, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """The pixels of ``img`` as an (H, W, C) array in the message's own encoding (C = 1 for mono and
    Bayer, 2 for the packed 4:2:2 encodings), a strided view of ``img.data`` that skips row padding.

    The rules are :func:`~mtc_perception.imaging.check_image_geometry`'s, shared with
    :func:`~mtc_perception.imaging.image_to_bgr` (its ``ENCODINGS`` table, ``step`` at least the row bytes, ``len(data) == step x height``, width x
    height within ``limits``), checked before any view is made. 16-bit encodings are viewed in the
    byte order ``is_bigendian`` declares, so their values are right without a copy; ``.astype(np.uint16)``
    makes a native-order copy where a consumer (OpenCV) needs one.
    """
    ch, dt, itemsize, _ = check_image_geometry(img.encoding, img.height, img.width, img.step, img.data.size, limits)
    h, w, step = img.height, img.width, img.step
    dtype = np.dtype(("<" if not img.is_bigendian or itemsize == 1 else ">") + dt)
    return np.ndarray((h, w, ch), dtype=dtype, buffer=img.data, strides=(step, ch * itemsize, itemsize))


def restamp(buf: bytes | bytearray | memoryview, offset_ns: int) -> tuple[bytes, int]:
    """A copy of a serialized message whose first field is a ``std_msgs/Header`` (``Image``,
    ``CompressedImage``, ...) with ``header.stamp`` moved by ``offset_ns``, and the new stamp in ns.
    What a player looping a recording uses so that every frame it sends has a stamp of its own (the
    answers are matched to frames by stamp)."""
    cur = _open(buf, "serialized message")
    sec = cur.integer("i", "header.stamp.sec")
    nanosec = cur.integer("I", "header.stamp.nanosec")
    stamp = sec * 1_000_000_000 + nanosec + int(offset_ns)
    new_sec, new_nsec = divmod(stamp, 1_000_000_000)
    if not -(2**31) <= new_sec < 2**31:
        raise ImageError(f"header.stamp {sec}.{nanosec:09d} + {offset_ns} ns does not fit a builtin_interfaces/Time")
    out = bytearray(cur.buf)
    struct.pack_into(cur.order + "iI", out, 4, new_sec, new_nsec)
    return bytes(out), stamp


def header_stamp(buf: bytes | bytearray | memoryview) -> int:
    """``header.stamp`` in ns of a serialized message whose first field is a ``std_msgs/Header``,
    read without deserializing the rest (a player matching answers to frames needs only this)."""
    cur = _open(buf, "serialized message")
    sec = cur.integer("i", "header.stamp.sec")
    return sec * 1_000_000_000 + cur.integer("I", "header.stamp.nanosec")
