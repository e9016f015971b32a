"""Seeded fuzzing of the runtime's input boundaries: camera messages and bundle.json.

Two families of cases, each built from ``numpy.random.default_rng([seed, family, index])`` so a
failing case is reproduced from its (seed, family, index) alone:

- ``camera``: ``sensor_msgs/Image`` (random encodings, valid and not, sizes, steps, data lengths,
  big-endian flags) and ``sensor_msgs/CompressedImage`` (random formats; random bytes, truncated
  or mutated JPEG/PNG of test/data/frame.jpg, headers claiming other sizes), built through the
  ``rosbags`` typestore of ROS 2 Humble or Jazzy and, where the fields fit their ROS types, sent
  through CDR and back. Each goes to :func:`mtc_perception.imaging.message_to_bgr` (only
  :class:`~mtc_perception.imaging.ImageError` may come out; an image must be uint8 H x W x 3 of
  the declared size) and to the node's :class:`~mtc_perception.node_core.FrameProcessor` on the
  committed tiny bundle (it never raises; a failure is a counted error).
- ``bundle``: mutations of test/data/tiny_bundle/bundle.json (deleted, retyped, duplicated, huge
  or negative fields, file paths leaving the bundle, nested junk, bytes that are not UTF-8) in a
  temporary copy; :meth:`mtc_perception.bundle.Bundle.load` either succeeds or raises
  :class:`~mtc_perception.bundle.BundleError`.

Headers claiming more than :data:`BOMB_PIXELS` pixels (a memory bomb if decoded) are run in a
child process whose address space is capped at :data:`BOMB_MEMORY` bytes, so today's decoder
cannot take the machine down; a frame claiming more than :data:`REFUSE_PIXELS` must be refused
(``ImageError``), whatever maximum the runtime is configured with.

Outcome names: ``ok``, ``ImageError``, ``BundleError``, ``error:<kind>`` (FrameProcessor's
counted failure) and ``raised:<ExceptionType>`` / ``bad-result:<why>`` (a bug: the only ones
that fail the run).

    python scripts/fuzz_inputs.py --cases 10000 --seed 1 --out runs/fuzz/summary.json

ROS-free: needs numpy, OpenCV, onnxruntime and rosbags (not torch, not rclpy).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "test" / "data"
FRAME_JPG = DATA / "frame.jpg"
TINY = DATA / "tiny_bundle"

BOMB_PIXELS = 50_000_000  # claimed sizes above this go to the memory-capped child process
REFUSE_PIXELS = 400_000_000  # a frame claiming more must be refused, whatever the configured maximum
BOMB_MEMORY = 3 << 30  # address-space cap of that child (bytes)
CV_MAX_PIXELS = 1 << 30  # OpenCV refuses larger headers itself (CV_IO_MAX_IMAGE_PIXELS)

VALID_FORMATS = ("jpeg", "png", "jpg", "JPEG", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8", "")
INVALID_FORMATS = ("tiff", "theora", "bmp", "webp", "h264", "rgb8", "\u00e9\u00e8", "x" * 300)
INVALID_ENCODINGS = ("", "xyz9", "BGR8", "rgb16", "32FC1", "bgr8 ", "mono12", "\u00fc", "bayer_rggb16", "y" * 500)


@dataclass
class Case:
    """One fuzz input: ``what`` describes it (for the report), ``msg`` / ``bundle_json`` is it."""

    family: str
    index: int
    what: str
    msg: Any = None
    declared: tuple[int, int] | None = None  # (height, width) an image must have if it decodes
    claimed_pixels: int = 0
    bundle_json: bytes = b""
    symlink: str | None = None  # files.* name to create as a symlink leaving the bundle


@dataclass
class Summary:
    counts: dict[str, Counter] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def add(self, family: str, outcome: str, case: Case | None = None, detail: str = "") -> None:
        self.counts.setdefault(family, Counter())[outcome] += 1
        if case is not None and is_failure(outcome):
            last = detail.strip().splitlines()[-1][:70] if detail.strip() else ""
            self.failures.append(
                {
                    "family": family,
                    "index": case.index,
                    "what": case.what,
                    "outcome": outcome,
                    "error": last,
                    "detail": detail[-800:],
                }
            )

    def examples(self, per_kind: int = 5) -> list[dict[str, Any]]:
        """The first ``per_kind`` failing cases of each (family, outcome, error message start)."""
        seen: Counter = Counter()
        out = []
        for f in self.failures:
            key = (f["family"], f["outcome"], f["error"][:40])
            seen[key] += 1
            if seen[key] <= per_kind:
                out.append(f)
        return out

    def merge(self, other: Summary) -> None:
        for fam, c in other.counts.items():
            self.counts.setdefault(fam, Counter()).update(c)
        self.failures.extend(other.failures)


def is_failure(outcome: str) -> bool:
    """An outcome that breaks a promise (anything but ok or the module's own error)."""
    return outcome.startswith(("raised:", "bad-result:"))


def rng_for(seed: int, family: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, sum(map(ord, family)), index])


# ---------------------------------------------------------------------------------------------
# camera messages


def _types(store_name: str) -> Any:
    from rosbags.typesys import Stores, get_typestore

    from mtc_perception.messages import register_vision_msgs

    ts = get_typestore({"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}[store_name])
    register_vision_msgs(ts)
    return ts


_STORES: dict[str, Any] = {}


def typestore(name: str) -> Any:
    if name not in _STORES:
        _STORES[name] = _types(name)
    return _STORES[name]


def _header(ts: Any) -> Any:
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    return Header(stamp=Time(sec=1, nanosec=2), frame_id="cam")


def _wire(ts: Any, msg: Any) -> Any:
    """The message as it arrives off the wire (CDR and back) when its fields fit their ROS types."""
    try:
        raw = ts.serialize_cdr(msg, msg.__msgtype__)
    except Exception:  # noqa: BLE001 - fields outside their ROS types (e.g. a negative uint32) stay as built
        return msg
    return ts.deserialize_cdr(raw, msg.__msgtype__)


def _pick(rng: np.random.Generator, seq: Any) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _dim(rng: np.random.Generator) -> int:
    r = rng.random()
    if r < 0.75:
        return int(rng.integers(1, 48))
    if r < 0.85:
        return 0
    if r < 0.92:
        return int(rng.integers(48, 700))
    return int(_pick(rng, (-1, 2**31 - 1, 2**32 - 1, 65535, 10**6)))


def raw_image_case(rng: np.random.Generator, index: int) -> Case:
    from mtc_perception.imaging import ENCODINGS

    store = _pick(rng, ("humble", "jazzy"))
    ts = typestore(store)
    valid = rng.random() < 0.75
    enc = _pick(rng, sorted(ENCODINGS)) if valid else _pick(rng, INVALID_ENCODINGS)
    h, w = _dim(rng), _dim(rng)
    if enc in ENCODINGS and rng.random() < 0.6 and enc in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        w = max(2, w - w % 2)
    bpp = {1: 1, 2: 2, 3: 3, 4: 4}.get(ENCODINGS.get(enc, (3, "u1"))[0], 3)
    bpp *= 2 if ENCODINGS.get(enc, (0, "u1"))[1] == "u2" else 1
    row = max(w, 0) * bpp
    r = rng.random()
    if r < 0.55:
        step = row
    elif r < 0.75:
        step = row + int(rng.integers(1, 17))
    elif r < 0.85:
        step = max(row - int(rng.integers(1, 9)), 0)
    elif r < 0.92:
        step = 0
    else:
        step = int(_pick(rng, (2**32 - 1, 2**31, -5, int(rng.integers(0, 10**6)))))
    exact = step * h if step > 0 and h > 0 else 0
    r = rng.random()
    if r < 0.65 and 0 <= exact <= 4 << 20:
        n = exact
    elif r < 0.8:
        n = max(0, min(exact, 4 << 20) + int(rng.integers(-8, 9)))
    elif r < 0.9:
        n = 0
    else:
        n = int(rng.integers(0, 5000))
    big = int(_pick(rng, (0, 0, 0, 1, int(rng.integers(0, 256)))))
    Image = ts.types["sensor_msgs/msg/Image"]
    msg = Image(
        header=_header(ts),
        height=h,
        width=w,
        encoding=enc,
        is_bigendian=big,
        step=step,
        data=rng.integers(0, 256, n, dtype=np.uint8),
    )
    what = f"{store} Image encoding={enc[:20]!r} {h}x{w} (HxW) step={step} len(data)={n} is_bigendian={big}"
    return Case("camera", index, what, _wire(ts, msg), declared=(h, w) if h > 0 and w > 0 else None)


_FRAME: dict[str, bytes] = {}


def _frame_bytes(kind: str) -> bytes:
    if kind not in _FRAME:
        if kind == "jpg":
            _FRAME[kind] = FRAME_JPG.read_bytes()
        else:
            import cv2

            img = cv2.imdecode(np.frombuffer(FRAME_JPG.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            ok, buf = cv2.imencode(".png", cv2.resize(img, (64, 48)))
            _FRAME[kind] = buf.tobytes()
    return _FRAME[kind]


def jpeg_with_size(data: bytes, height: int, width: int) -> bytes:
    """``data`` (a JPEG) with its frame header (SOF0/1/2) claiming ``height`` x ``width``."""
    b = bytearray(data)
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            i += 1
            continue
        marker = b[i + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            struct.pack_into(">HH", b, i + 5, height & 0xFFFF, width & 0xFFFF)
            return bytes(b)
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + struct.unpack_from(">H", b, i + 2)[0]
    raise ValueError("no SOF marker")


def png_with_size(data: bytes, height: int, width: int) -> bytes:
    """``data`` (a PNG) with its IHDR claiming ``height`` x ``width`` (CRC fixed, so the header is valid)."""
    b = bytearray(data)
    struct.pack_into(">II", b, 16, width, height)
    struct.pack_into(">I", b, 29, zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    return bytes(b)


def compressed_case(rng: np.random.Generator, index: int) -> Case:
    store = _pick(rng, ("humble", "jazzy"))
    ts = typestore(store)
    fmt = _pick(rng, VALID_FORMATS) if rng.random() < 0.85 else _pick(rng, INVALID_FORMATS)
    kind = _pick(rng, ("random", "truncated", "mutated", "valid", "header"))
    src = _pick(rng, ("jpg", "png"))
    base = _frame_bytes(src)
    declared = None
    claimed = 0
    if kind == "random":
        n = int(_pick(rng, (0, 1, 2, int(rng.integers(3, 64)), int(rng.integers(64, 4000)))))
        head = _pick(rng, (b"", b"\xff\xd8", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n"))
        data = head + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        what = f"{len(data)} random bytes after {head!r}"
    elif kind == "truncated":
        cut = int(rng.integers(0, len(base)))
        data = base[:cut]
        what = f"{src} of frame.jpg cut at byte {cut} of {len(base)}"
    elif kind == "mutated":
        b = bytearray(base)
        k = int(rng.integers(1, 20))
        pos = rng.integers(0, len(b), k)
        for p in pos:
            b[int(p)] = int(rng.integers(0, 256))
        data = bytes(b)
        what = f"{src} of frame.jpg with {k} bytes changed at {sorted(int(p) for p in pos)[:5]}..."
    elif kind == "valid":
        data = base
        import cv2

        img = cv2.imdecode(np.frombuffer(base, np.uint8), cv2.IMREAD_COLOR)
        declared = img.shape[:2]
        what = f"{src} of frame.jpg, intact"
    else:
        r = rng.random()
        if r < 0.4:
            h, w = int(rng.integers(1, 4000)), int(rng.integers(1, 4000))
        elif r < 0.7:
            h, w = int(_pick(rng, (1, 2, 16, 720))), int(_pick(rng, (1, 3, 1280, 7680)))
        else:
            h, w = int(_pick(rng, (8000, 16000, 30000, 65500, 65535))), int(_pick(rng, (9000, 20000, 30000, 65535)))
        if src == "png" and rng.random() < 0.2:
            h, w = int(_pick(rng, (100000, 2**31 - 1, 0))), int(_pick(rng, (100000, 2**31 - 1, 1)))
        data = (jpeg_with_size if src == "jpg" else png_with_size)(base, h, w)
        if rng.random() < 0.5:
            data = data[: int(rng.integers(20, max(21, min(len(data), 700))))]
        claimed = h * w
        what = f"{src} of frame.jpg whose header claims {w}x{h} (WxH), {len(data)} bytes"
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    msg = Compressed(header=_header(ts), format=fmt, data=np.frombuffer(data, np.uint8).copy())
    return Case(
        "camera",
        index,
        f"{store} CompressedImage format={fmt[:20]!r}: {what}",
        _wire(ts, msg),
        declared=declared,
        claimed_pixels=claimed,
    )


def camera_case(seed: int, index: int) -> Case:
    rng = rng_for(seed, "camera", index)
    return raw_image_case(rng, index) if rng.random() < 0.5 else compressed_case(rng, index)


def check_image(img: Any, declared: tuple[int, int] | None) -> str:
    """'' for a good decoded image, else the ``bad-result:`` reason."""
    if not isinstance(img, np.ndarray):
        return f"bad-result:not an array ({type(img).__name__})"
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or 0 in img.shape:
        return f"bad-result:{img.dtype} {img.shape} is not uint8 HxWx3"
    if declared is not None and tuple(img.shape[:2]) != tuple(declared):
        return f"bad-result:shape {img.shape[:2]} but the message declares {declared}"
    return ""


def decode_outcome(case: Case) -> tuple[str, str]:
    from mtc_perception.imaging import ImageError, message_to_bgr

    try:
        img = message_to_bgr(case.msg)
    except ImageError:
        return "ImageError", ""
    except Exception as e:  # noqa: BLE001 - any other exception is the finding
        return f"raised:{type(e).__name__}", traceback.format_exc()
    bad = check_image(img, case.declared)
    return (bad, "") if bad else ("ok", "")


def processor_outcome(proc: Any, case: Case) -> tuple[str, str]:
    failed = proc.stats.failed
    try:
        res = proc(case.msg)
    except Exception as e:  # noqa: BLE001 - FrameProcessor must never raise
        return f"raised:{type(e).__name__}", traceback.format_exc()
    if res.error:
        if proc.stats.failed != failed + 1:
            return "bad-result:error not counted in stats.failed", res.error
        return f"error:{res.error_kind.split('/')[0]}", ""
    if not res.messages or "detections" not in res.messages:
        return "bad-result:no error and no detections message", ""
    return "ok", ""


def frame_processor(store: str = "jazzy") -> Any:
    from mtc_perception.node_core import FrameProcessor
    from mtc_perception.perceptor import Perceptor

    ts = typestore(store)
    return FrameProcessor(Perceptor(TINY, backend="onnxruntime", conf=0.01, threads=1), ts.types.__getitem__)


def is_bomb(case: Case) -> bool:
    return BOMB_PIXELS < case.claimed_pixels


def run_camera(seed: int, indices: Any, processor: bool = True, bombs: bool = True) -> Summary:
    """Camera cases ``indices``: decoded, then through FrameProcessor. Memory bombs (claims above
    BOMB_PIXELS) go to a child process with capped memory when ``bombs``, else are left out."""
    s = Summary()
    proc = frame_processor() if processor else None
    bomb_indices = []
    for i in indices:
        case = camera_case(seed, i)
        if is_bomb(case):
            bomb_indices.append(i)
            continue
        outcome, detail = decode_outcome(case)
        s.add("camera.decode", outcome, case, detail)
        if proc is not None:
            outcome, detail = processor_outcome(proc, case)
            s.add("camera.frame_processor", outcome, case, detail)
    if bombs and bomb_indices:
        s.merge(run_bombs(seed, bomb_indices))
    return s


def run_bombs(seed: int, indices: list[int]) -> Summary:
    """Decode the memory-bomb cases in a child process limited to BOMB_MEMORY bytes of address space."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--bomb-child", "--seed", str(seed)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run(
        cmd, input=json.dumps(indices), capture_output=True, text=True, env=env, timeout=60 + 5 * len(indices)
    )
    s = Summary()
    done = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            done[rec["index"]] = rec
    for i in indices:
        rec = done.get(i)
        case = camera_case(seed, i)
        if rec is None:  # the child died on this case (killed for memory, crashed)
            s.add("camera.bomb", f"raised:child died (rc {p.returncode})", case, p.stderr[-800:])
            break
        s.add("camera.bomb", rec["outcome"], case, rec["detail"])
    return s


def bomb_child(seed: int) -> None:
    import resource

    indices = json.loads(sys.stdin.read())
    cases = [camera_case(seed, i) for i in indices]  # built before the cap (rosbags, cv2 imported)
    import cv2  # noqa: F401 - loaded before the cap

    resource.setrlimit(resource.RLIMIT_AS, (BOMB_MEMORY, BOMB_MEMORY))
    for case in cases:
        outcome, detail = decode_outcome(case)
        if outcome == "ok" and case.claimed_pixels > REFUSE_PIXELS:  # decoded: the memory bomb went off
            outcome = f"bad-result:decoded a {case.claimed_pixels}-pixel frame (header size not checked)"
        print(json.dumps({"index": case.index, "outcome": outcome, "detail": detail[-800:]}), flush=True)


# ---------------------------------------------------------------------------------------------
# bundle.json


JUNK: tuple[Callable[[np.random.Generator], Any], ...] = (
    lambda r: None,
    lambda r: True,
    lambda r: int(r.integers(-(10**6), 10**6)),
    lambda r: -1,
    lambda r: 0,
    lambda r: 10**30,
    lambda r: 2**63,
    lambda r: 1e308,
    lambda r: float("nan"),
    lambda r: float("inf"),
    lambda r: -0.5,
    lambda r: "",
    lambda r: "vehicle",
    lambda r: "x" * int(r.integers(1, 5000)),
    lambda r: [],
    lambda r: [1, 2, 3],
    lambda r: [None],
    lambda r: {},
    lambda r: {"a": {"b": [1, {"c": None}]}},
    lambda r: [[[[[]]]]],
    lambda r: ["vehicle"] * int(r.integers(1, 50)),
    lambda r: {"../x": 1},
)
BAD_PATHS = (
    "../model.onnx",
    "/etc/passwd",
    "a/../../model.onnx",
    "~/model.onnx",
    "",
    ".",
    "sub/../model.onnx",
    "model.onnx\x00.txt",
    "C:\\model.onnx",
    "missing.onnx",
    "model.onnx/",
    "//server/share/model.onnx",
    "\u00e9.onnx",
)


def _paths(obj: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def _junk(rng: np.random.Generator) -> Any:
    return _pick(rng, JUNK)(rng)


def bundle_case(seed: int, index: int) -> Case:
    """A mutated copy of the tiny bundle's bundle.json (1-4 mutations, or one raw-text mutation)."""
    rng = rng_for(seed, "bundle", index)
    base = json.loads((TINY / "bundle.json").read_text())
    r = rng.random()
    symlink = None
    if r < 0.08:  # raw text: truncated, not UTF-8, deeply nested, not an object, duplicated key
        text = json.dumps(base, indent=2).encode()
        k = _pick(rng, ("truncate", "latin1", "nested", "toplevel", "duplicate", "bom", "huge-number"))
        if k == "truncate":
            data = text[: int(rng.integers(0, len(text)))]
        elif k == "latin1":
            data = text.replace(b'"tiny"', b'"t\xe9\xff"')
        elif k == "nested":
            depth = int(_pick(rng, (50, 500, 5000, 100000)))
            data = text[:-2] + b', "junk": ' + b"[" * depth + b"]" * depth + b"}\n"
        elif k == "toplevel":
            data = _pick(rng, (b"[]", b"null", b"42", b'"bundle"', b"[1, 2]", b""))
        elif k == "duplicate":
            data = text.replace(b'"height": 96', b'"height": 96, "height": "tall"', 1)
        elif k == "bom":
            data = b"\xef\xbb\xbf" + text
        else:
            data = text.replace(b'"height": 96', b'"height": 1' + b"0" * 5000, 1)
        return Case("bundle", index, f"raw bundle.json text: {k} ({len(data)} bytes)", bundle_json=data)
    doc = base
    done = []
    for _ in range(int(rng.integers(1, 5))):
        paths = list(_paths(doc))
        path = _pick(rng, paths[1:]) if len(paths) > 1 else ()
        op = _pick(rng, ("delete", "retype", "retype", "huge", "negative", "duplicate", "path", "junk"))
        if op == "path" or (rng.random() < 0.15 and isinstance(doc, dict) and isinstance(doc.get("files"), dict)):
            if isinstance(doc, dict) and isinstance(doc.get("files"), dict):
                kind = _pick(rng, ("onnx", "torch", "engine"))
                if rng.random() < 0.2:
                    doc["files"][kind] = "link.onnx"
                    symlink = "link.onnx"
                    done.append(f"files.{kind} = a symlink to a file outside the bundle")
                else:
                    doc["files"][kind] = _pick(rng, BAD_PATHS)
                    done.append(f"files.{kind} = {doc['files'][kind]!r}")
                continue
            op = "junk"
        if not path:
            doc = _junk(rng)
            done.append(f"whole document = {json.dumps(doc)[:40]}")
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        name = ".".join(map(str, path))
        if op == "delete":
            del parent[key]
            done.append(f"deleted {name}")
        elif op == "retype" or op == "junk":
            parent[key] = _junk(rng)
            done.append(f"{name} = {json.dumps(parent[key])[:40]}")
        elif op == "huge":
            parent[key] = _pick(rng, (100000, 10**9, 2**31, 10**30, 1e300, [100000] * 1000))
            done.append(f"{name} = huge ({json.dumps(parent[key])[:30]})")
        elif op == "negative":
            parent[key] = _pick(rng, (-1, -100000, -0.0, -1e-9, [-1, -1, -1]))
            done.append(f"{name} = {json.dumps(parent[key])[:30]}")
        else:  # duplicate a value into another place
            other = _get(doc, _pick(rng, paths))
            parent[key] = json.loads(json.dumps(other))
            done.append(f"{name} = copy of another field")
    data = json.dumps(doc, indent=1).encode()
    return Case("bundle", index, "; ".join(done)[:400], bundle_json=data, symlink=symlink)


def bundle_outcome(case: Case, work: Path) -> tuple[str, str]:
    from mtc_perception.bundle import Bundle, BundleError

    (work / "bundle.json").write_bytes(case.bundle_json)
    link = work / "link.onnx"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    if case.symlink:
        link.symlink_to(work.parent / "outside.onnx")
    try:
        Bundle.load(work)
    except BundleError:
        return "BundleError", ""
    except Exception as e:  # noqa: BLE001 - any other exception is the finding
        return f"raised:{type(e).__name__}", traceback.format_exc()
    return "ok", ""


def run_bundle(seed: int, indices: Any) -> Summary:
    s = Summary()
    with tempfile.TemporaryDirectory(prefix="fuzz-bundle-") as tmp:
        work = Path(tmp) / "bundle"
        work.mkdir()
        shutil.copy(TINY / "model.onnx", work / "model.onnx")
        (Path(tmp) / "outside.onnx").write_bytes(b"not inside the bundle")
        for i in indices:
            case = bundle_case(seed, i)
            outcome, detail = bundle_outcome(case, work)
            s.add("bundle.load", outcome, case, detail)
    return s


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000, help="cases per family (camera, bundle)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="summary JSON (counts per outcome, failing cases)")
    ap.add_argument("--no-processor", action="store_true", help="decode only, skip the FrameProcessor")
    ap.add_argument("--bomb-child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.bomb_child:
        bomb_child(a.seed)
        return 0
    if a.cases < 1:
        ap.error(f"--cases must be >= 1, got {a.cases}")
    t0 = time.monotonic()
    s = run_camera(a.seed, range(a.cases), processor=not a.no_processor)
    s.merge(run_bundle(a.seed, range(a.cases)))
    wall = time.monotonic() - t0
    failures = sum(n for c in s.counts.values() for o, n in c.items() if is_failure(o))
    out = {
        "command": "python scripts/fuzz_inputs.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seed": a.seed,
        "cases_per_family": a.cases,
        "wall_s": round(wall, 1),
        "counts": {fam: dict(sorted(c.items())) for fam, c in sorted(s.counts.items())},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.node()}: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "failures": failures,
        "failing_cases": s.examples(),  # the first few of each kind; every one reproduces from (seed, index)
    }
    text = json.dumps(out, indent=2)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(a.out)
    print(json.dumps({k: out[k] for k in ("wall_s", "counts", "failures")}, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
