"""Hostile frames (issue 17): image headers claiming huge sizes are refused before OpenCV decodes them,
every decoder failure is ImageError, a truncated JPEG is refused the same way everywhere, image files
are read by Python (any file name), and ``mtc infer`` names every bad frame and never overwrites an
output."""

import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtc_perception import imaging
from mtc_perception.cli import main as mtc
from mtc_perception.cli import output_stem
from mtc_perception.imaging import (
    DEFAULT_LIMITS,
    MAX_PIXELS,
    MAX_SIDE,
    ImageError,
    ImageLimits,
    compressed_to_bgr,
    decode_bytes,
    display_path,
    header_size,
    image_to_bgr,
    message_to_bgr,
    read_image,
)

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_bundle"


def _jpeg(w=16, h=8, seed=0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _png(w=16, h=8) -> bytes:
    return cv2.imencode(".png", np.full((h, w, 3), 77, np.uint8))[1].tobytes()


def _jpeg_claiming(w: int, h: int) -> bytes:
    """A small valid JPEG whose SOF0 header is patched to claim w x h."""
    b = bytearray(_jpeg())
    i = b.index(b"\xff\xc0")
    b[i + 5 : i + 9] = struct.pack(">HH", h, w)
    return bytes(b)


def _png_claiming(w: int, h: int) -> bytes:
    b = bytearray(_png())
    b[16:24] = struct.pack(">II", w, h)
    return bytes(b)


class _Msg:
    """A CompressedImage / Image look-alike (imaging works on any object with the fields)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


@pytest.fixture
def no_decode(monkeypatch):
    """cv2.imdecode replaced by a spy: the test fails if the decoder is asked to decode."""
    calls = []

    def spy(buf, flags):
        calls.append(len(buf))
        raise AssertionError("cv2.imdecode must not be called")

    monkeypatch.setattr(cv2, "imdecode", spy)
    return calls


def test_the_limits_are_well_above_8k_video_and_documented():
    assert (MAX_SIDE, MAX_PIXELS) == (16384, 100_000_000) and DEFAULT_LIMITS == ImageLimits()
    assert MAX_SIDE >= 2 * 7680 and MAX_PIXELS >= 3 * 7680 * 4320
    assert "MAX_SIDE" in imaging.__doc__ and "truncated" in imaging.__doc__


def test_a_small_jpeg_claiming_30000x30000_is_refused_before_decoding(no_decode):
    bomb = _jpeg_claiming(30000, 30000)
    assert len(bomb) < 1000 and header_size(bomb) == ("jpeg", 30000, 30000)
    with pytest.raises(ImageError, match=r"claims 30000x30000 pixels, over the limit of 16384 per side and 100000000"):
        decode_bytes(bomb)
    with pytest.raises(ImageError, match=r"CompressedImage.data .*30000x30000.*16384"):
        message_to_bgr(_Msg(format="jpeg", data=np.frombuffer(bomb, np.uint8)))
    assert no_decode == []


def test_a_png_claiming_65535x65535_is_image_error_not_cv2_error(no_decode, tmp_path):
    bomb = _png_claiming(65535, 65535)
    with pytest.raises(ImageError, match=r"claims 65535x65535 pixels, over the limit"):
        compressed_to_bgr(_Msg(format="png", data=bomb))
    f = tmp_path / "bomb.png"
    f.write_bytes(bomb)
    with pytest.raises(ImageError, match=r"image file .*bomb.png \(PNG\) claims 65535x65535"):
        read_image(f)
    assert no_decode == []


def test_the_pixel_count_is_bounded_too_and_the_limit_is_a_keyword(no_decode):
    with pytest.raises(ImageError, match=r"claims 12000x9000 pixels"):  # each side fine, 108 Mpixel in all
        decode_bytes(_jpeg_claiming(12000, 9000))
    with pytest.raises(ImageError, match=r"claims 16x8 pixels, over the limit of 8 per side"):
        decode_bytes(_jpeg(), limits=ImageLimits(max_side=8))
    with pytest.raises(ImageError, match=r"claims 16x8 pixels.* 100 pixels in all"):
        decode_bytes(_png(), limits=ImageLimits(max_pixels=100))
    assert no_decode == []


def test_a_zero_sized_header_is_refused(no_decode):
    with pytest.raises(ImageError, match=r"claims a size of 0x8"):
        decode_bytes(_png_claiming(0, 8))
    with pytest.raises(ImageError, match=r"height 0 \(DNL\)"):
        decode_bytes(_jpeg_claiming(16, 0))


def test_frames_within_the_limits_decode_as_before():
    assert decode_bytes(_jpeg()).shape == (8, 16, 3)
    assert decode_bytes(_png()).shape == (8, 16, 3)
    bmp = cv2.imencode(".bmp", np.full((5, 7, 3), 9, np.uint8))[1].tobytes()
    assert header_size(bmp) == ("bmp", 7, 5) and (decode_bytes(bmp) == 9).all()
    mask = cv2.imencode(".png", np.eye(6, dtype=np.uint8) * 3)[1].tobytes()
    assert decode_bytes(mask, flags=cv2.IMREAD_UNCHANGED).shape == (6, 6)
    # bytes after the end-of-image marker (camera trailers) are not truncation
    assert decode_bytes(_jpeg() + b"TRAILER\x00\x00").shape == (8, 16, 3)


def test_a_raw_image_claiming_a_huge_size_is_refused_before_any_reshape():
    msg = _Msg(height=30000, width=30000, encoding="bgr8", is_bigendian=0, step=90000, data=np.zeros(16, np.uint8))
    with pytest.raises(ImageError, match=r"Image \(bgr8\) claims 30000x30000 pixels, over the limit"):
        image_to_bgr(msg)
    small = _Msg(height=4, width=20, encoding="mono8", is_bigendian=0, step=20, data=np.zeros(80, np.uint8))
    with pytest.raises(ImageError, match=r"claims 20x4 pixels, over the limit of 16 per side"):
        image_to_bgr(small, limits=ImageLimits(max_side=16))
    assert image_to_bgr(small).shape == (4, 20, 3)


def test_a_decoder_exception_is_image_error(monkeypatch):
    def boom(buf, flags):
        raise cv2.error("OpenCV(5) imdecode: CV_IO_MAX_IMAGE_PIXELS exceeded")

    monkeypatch.setattr(cv2, "imdecode", boom)
    with pytest.raises(
        ImageError, match=r"compressed frame: JPEG of \d+ bytes \(16x8\) cannot be decoded: .*MAX_IMAGE"
    ):
        decode_bytes(_jpeg())


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (
            _jpeg(320, 240)[: len(_jpeg(320, 240)) // 2],
            r"not a decodable image \(JPEG: truncated, no end-of-image marker",
        ),
        (_jpeg()[:-2], r"JPEG: truncated, no end-of-image marker after the scan data"),
        (_jpeg()[:40], r"JPEG: truncated, it ends inside its headers"),
        (_png()[:-12], r"PNG: truncated, no IEND chunk"),
        (_png()[:20], r"PNG: no IHDR header"),
        (b"II*\x00" + bytes(64), r"not a decodable image \(not JPEG, PNG or BMP: it starts with 49 49 2a 00"),
        (b"\xff\xd8\xff\xda\x00\x04ab\xff\xd9", r"JPEG: a scan starts before any frame header"),
    ],
    ids=["half-jpeg", "jpeg-without-eoi", "jpeg-cut-in-headers", "png-without-iend", "png-cut", "tiff", "no-sof"],
)
def test_truncated_or_foreign_data_is_image_error_and_never_decoded(data, pattern, no_decode):
    with pytest.raises(ImageError, match=pattern):
        decode_bytes(data, "frame 3")
    assert no_decode == []


def test_random_mutations_of_a_jpeg_and_png_raise_only_image_error():
    rng = np.random.default_rng(17)
    seeds = [np.frombuffer(_jpeg(), np.uint8), np.frombuffer(_png(), np.uint8)]
    for i in range(300):
        b = seeds[i % 2].copy()
        for _ in range(int(rng.integers(1, 6))):
            b[rng.integers(0, b.size)] = rng.integers(0, 256)
        if rng.random() < 0.3:
            b = b[: rng.integers(0, b.size)]
        try:
            img = decode_bytes(b)
        except ImageError:
            continue
        assert img.dtype == np.uint8 and img.ndim == 3


def test_read_image_reads_any_file_name_and_names_the_file(tmp_path):
    name = os.fsencode(tmp_path) + b"/caf\xe9\xff.jpg"  # not UTF-8: OpenCV's imread cannot take it
    with open(name, "wb") as fh:
        fh.write(_jpeg())
    path = Path(os.fsdecode(name))
    assert read_image(path).shape == (8, 16, 3)
    assert display_path(path).endswith("caf\\xe9\\xff.jpg")
    display_path(path).encode("utf-8")  # printable: no lone surrogates
    with open(name[:-4] + b"-half.jpg", "wb") as fh:
        fh.write(_jpeg()[:-30])
    with pytest.raises(ImageError, match=r"image file .*caf\\xe9\\xff-half.jpg of \d+ bytes .*truncated"):
        read_image(Path(os.fsdecode(name[:-4] + b"-half.jpg")))
    with pytest.raises(FileNotFoundError, match=r"image file .*missing.png does not exist"):
        read_image(tmp_path / "missing.png")


def test_no_command_reads_image_files_with_cv2_imread():
    """Every image file goes through imaging.read_image."""
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(p.relative_to(root))
        for d in ("mtc_perception", "compress")
        for p in (root / d).rglob("*.py")
        if "cv2.imread(" in p.read_text()
    ]
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# mtc infer


def test_output_names_keep_the_relative_path_and_extension():
    taken: set[str] = set()
    assert [output_stem(n, taken) for n in ("a.jpg", "a.png", "sub/a.jpg", "sub_a.jpg", "A.JPG")] == [
        "a.jpg",
        "a.png",
        "sub_a.jpg",
        "sub_a.jpg~2",
        "A.JPG~2",
    ]


def _infer(tmp_path, files: dict[bytes, bytes]):
    src = os.fsencode(tmp_path / "in")
    for rel, data in files.items():
        p = src + b"/" + rel
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as fh:
            fh.write(data)
    out = tmp_path / "out"
    rc = mtc(["infer", "--bundle", str(TINY), "--input", os.fsdecode(src), "--out", str(out)])
    return rc, out, json.loads((out / "summary.json").read_text())


def test_infer_inputs_sharing_a_stem_get_their_own_outputs(tmp_path):
    frames = {b"a.jpg": _jpeg(64, 48, 1), b"a.png": _png(64, 48), b"sub/a.jpg": _jpeg(64, 48, 2), b"sub_a.jpg": _jpeg()}
    rc, out, summary = _infer(tmp_path, frames)
    assert rc == 0 and summary["frames"] == 4 and summary["failed"] == 0 and summary["failures"] == []
    outputs = sorted(p.name for p in out.iterdir())
    assert outputs == sorted(
        [f"{s}.{e}" for s in ("a.jpg", "a.png", "sub_a.jpg", "sub_a.jpg~2") for e in ("jpg", "json")] + ["summary.json"]
    )
    recorded = {json.loads(p.read_text())["frame"]: p.name for p in out.glob("*.json") if p.name != "summary.json"}
    assert set(recorded) == {"a.jpg", "a.png", "sub/a.jpg", "sub_a.jpg"}
    assert recorded["a.jpg"] == "a.jpg.json" and recorded["a.png"] == "a.png.json"


def test_infer_names_every_bad_frame_and_goes_on(tmp_path, logs):
    one = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes()
    frames = {
        b"good.jpg": _jpeg(64, 48),
        b"half.jpg": _jpeg(64, 48)[:200],
        b"one.png": one,
        b"bomb.jpg": _jpeg_claiming(30000, 30000),
        b"bad\xff.png": b"not an image",
    }
    rc, out, summary = _infer(tmp_path, frames)
    assert rc == 1 and summary["frames"] == 1 and summary["failed"] == 4
    errors = {f["frame"]: f["error"] for f in summary["failures"]}
    assert set(errors) == {"half.jpg", "one.png", "bomb.jpg", "bad\\xff.png"}
    assert "truncated" in errors["half.jpg"]
    assert errors["one.png"].startswith("1x1 frame: inference failed: FrameError")
    assert "claims 30000x30000 pixels, over the limit of 16384" in errors["bomb.jpg"]
    assert "not a decodable image" in errors["bad\\xff.png"]
    assert (out / "good.jpg.jpg").is_file() and not (out / "one.png.jpg").exists()
    for name in errors:
        assert f"{name}: " in logs.text  # each failure is logged with its file name


def test_infer_of_one_non_utf8_file_works(tmp_path):
    name = os.fsencode(tmp_path) + b"/x\xff.jpg"
    with open(name, "wb") as fh:
        fh.write(_jpeg(64, 48))
    out = tmp_path / "out"
    assert mtc(["infer", "--bundle", str(TINY), "--input", os.fsdecode(name), "--out", str(out)]) == 0
    assert (out / "x\\xff.jpg.jpg").is_file()
    assert json.loads((out / "x\\xff.jpg.json").read_text())["frame"] == "x\\xff.jpg"
