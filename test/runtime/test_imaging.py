"""sensor_msgs/Image and CompressedImage -> BGR with the real ROS 2 message types and CDR (rosbags)."""

import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (real ROS 2 message definitions and CDR): `pip install rosbags`; `make test` installs it",
)

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

from mtc_perception.imaging import ENCODINGS, ImageError, compressed_to_bgr, image_to_bgr, mask_to_image_fields

H, W = 48, 64
YY, XX = np.mgrid[0:H, 0:W].astype(np.float32)
REF = np.stack([40 + 2 * XX, 60 + 2 * YY, 200 - XX - YY], -1).clip(0, 255).astype(np.uint8)  # smooth BGR
STORES = [Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY]


def _uyvy(ref, yuy2=False):
    """Limited-range BT.601 4:2:2 packing of a BGR image."""
    b, g, r = (ref[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    uc, vc = (u[:, 0::2] + u[:, 1::2]) / 2, (v[:, 0::2] + v[:, 1::2]) / 2
    out = np.empty(ref.shape[:2] + (2,), np.uint8)
    c, lum = (1, 0) if yuy2 else (0, 1)
    out[:, 0::2, c], out[:, 1::2, c], out[..., lum] = uc.round(), vc.round(), y.round()
    return out


def _bayer(ref, pattern):
    """A Bayer mosaic of ``ref``; ``pattern`` names the 2x2 tile row by row, e.g. 'rggb'."""
    idx = {"r": 2, "g": 1, "b": 0}
    out = np.zeros(ref.shape[:2], np.uint8)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = ref[dy::2, dx::2, idx[pattern[k]]]
    return out


def _raw(encoding, big_endian=False):
    """(pixel bytes H x row, expected BGR, tolerance) for an encoding."""
    gray = cv2.cvtColor(REF, cv2.COLOR_BGR2GRAY)
    if encoding in ("bgr8", "8UC3"):
        return REF, REF, 0
    if encoding == "rgb8":
        return REF[..., ::-1], REF, 0
    if encoding == "rgba8":
        return np.dstack([REF[..., ::-1], np.full((H, W), 255, np.uint8)]), REF, 0
    if encoding == "bgra8":
        return np.dstack([REF, np.full((H, W), 7, np.uint8)]), REF, 0
    if encoding in ("mono8", "8UC1"):
        return gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), 0
    if encoding in ("mono16", "16UC1"):
        v = gray.astype(np.uint16) * 257
        return (
            v.astype(">u2" if big_endian else "<u2").view(np.uint8).reshape(H, W * 2),
            cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR),
            0,
        )
    if encoding in ("yuv422", "uyvy"):
        return _uyvy(REF), REF, 4
    if encoding in ("yuv422_yuy2", "yuyv"):
        return _uyvy(REF, yuy2=True), REF, 4
    pattern = encoding[len("bayer_") : -1]
    return _bayer(REF, pattern), REF, 0


def _msg(ts, encoding, pixels, pad=0, big_endian=False, stamp=(12, 345)):
    Image = ts.types["sensor_msgs/msg/Image"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    rows = np.ascontiguousarray(pixels).reshape(H, -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((H, pad), 0xAB, np.uint8)], 1)  # padding bytes must be ignored
    return Image(
        header=Header(stamp=Time(sec=stamp[0], nanosec=stamp[1]), frame_id="camera"),
        height=H,
        width=W,
        encoding=encoding,
        is_bigendian=int(big_endian),
        step=rows.shape[1],
        data=rows.reshape(-1).copy(),
    )


def _roundtrip(ts, msg, typename):
    return ts.deserialize_cdr(ts.serialize_cdr(msg, typename), typename)


@pytest.mark.parametrize("store", STORES, ids=["humble", "jazzy"])
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 5])
def test_every_encoding_decodes_to_the_reference(store, encoding, pad):
    ts = get_typestore(store)
    pixels, expected, tol = _raw(encoding)
    msg = _roundtrip(ts, _msg(ts, encoding, pixels, pad=pad), "sensor_msgs/msg/Image")
    assert msg.step == pixels.reshape(H, -1).shape[1] + pad and msg.header.stamp.sec == 12
    bgr = image_to_bgr(msg)
    assert bgr.shape == (H, W, 3) and bgr.dtype == np.uint8
    err = np.abs(bgr.astype(int) - expected.astype(int))
    if encoding.startswith("bayer"):
        err = err[2:-2, 2:-2]  # demosaicing borders are interpolated from fewer neighbours
    assert err.max() <= tol, (encoding, err.max())


def test_mono16_big_endian():
    ts = get_typestore(Stores.ROS2_JAZZY)
    pixels, expected, _ = _raw("mono16", big_endian=True)
    bgr = image_to_bgr(_roundtrip(ts, _msg(ts, "mono16", pixels, big_endian=True), "sensor_msgs/msg/Image"))
    assert np.array_equal(bgr, expected)


@pytest.mark.parametrize("store", STORES, ids=["humble", "jazzy"])
@pytest.mark.parametrize(
    "fmt,ext,tol", [("jpeg", ".jpg", 12), ("png", ".png", 0), ("bgr8; jpeg compressed bgr8", ".jpg", 12)]
)
def test_compressed_images(store, fmt, ext, tol):
    ts = get_typestore(store)
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    ok, buf = cv2.imencode(ext, REF, [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else [])
    msg = Compressed(header=Header(stamp=Time(sec=1, nanosec=2), frame_id="camera"), format=fmt, data=buf.reshape(-1))
    bgr = compressed_to_bgr(_roundtrip(ts, msg, "sensor_msgs/msg/CompressedImage"))
    assert bgr.shape == REF.shape and np.abs(bgr.astype(int) - REF).max() <= tol


def test_malformed_messages_name_the_field():
    ts = get_typestore(Stores.ROS2_JAZZY)
    good = _msg(ts, "bgr8", REF)
    cases = [
        (dict(encoding="xyz16"), r"Image.encoding 'xyz16' is not supported"),
        (dict(step=W * 3 - 1), r"Image.step 191 is smaller than width x bytes per pixel = 64 x 3 = 192"),
        (dict(data=good.data[:-3]), r"len\(Image.data\) is 9213 but step x height = 192 x 48 = 9216"),
        (dict(height=0), r"Image.height x width is 0 x 64"),
        (
            dict(encoding="yuv422", width=W - 1, step=(W - 1) * 2, data=np.zeros(H * (W - 1) * 2, np.uint8)),
            r"Image.width 63 is odd",
        ),
    ]
    for change, pattern in cases:
        fields = {
            k: getattr(good, k) for k in ("header", "height", "width", "encoding", "is_bigendian", "step", "data")
        }
        fields.update(change)
        with pytest.raises(ImageError, match=pattern):
            image_to_bgr(ts.types["sensor_msgs/msg/Image"](**fields))
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    with pytest.raises(ImageError, match="not a decodable image"):
        compressed_to_bgr(
            Compressed(header=good.header, format="jpeg", data=np.frombuffer(b"\xff\xd8\xff garbage", np.uint8))
        )
    with pytest.raises(ImageError, match="empty"):
        compressed_to_bgr(Compressed(header=good.header, format="jpeg", data=np.zeros(0, np.uint8)))
    with pytest.raises(ImageError, match="not jpeg or png"):
        compressed_to_bgr(Compressed(header=good.header, format="tiff", data=np.ones(4, np.uint8)))


@pytest.mark.parametrize("store", STORES, ids=["humble", "jazzy"])
def test_mask_message_serializes_with_the_input_header(store):
    ts = get_typestore(store)
    header = _msg(ts, "bgr8", REF).header
    mask = (REF[..., 0] > 100).astype(np.uint8)
    msg = ts.types["sensor_msgs/msg/Image"](header=header, **mask_to_image_fields(mask))
    back = _roundtrip(ts, msg, "sensor_msgs/msg/Image")
    assert (
        back.encoding == "mono8"
        and back.header.stamp.sec == 12
        and back.header.stamp.nanosec == 345
        and back.header.frame_id == "camera"
    )
    assert set(np.unique(back.data)) <= {0, 255}
    assert np.array_equal(image_to_bgr(back)[..., 0] > 0, mask > 0)
    with pytest.raises(ImageError, match="2-D"):
        mask_to_image_fields(np.zeros((2, 2, 2)))
