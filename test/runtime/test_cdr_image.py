"""A serialized sensor_msgs/Image read in place (messages.cdr_image) against rosbags' real ROS 2 CDR:
every field, the pixels as the project's conversion sees them, no copy, and every hostile buffer refused."""

import struct

import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (real ROS 2 message definitions and CDR): `pip install rosbags`; `make test` installs it",
)

import numpy as np
from rosbags.typesys import Stores, get_typestore

from mtc_perception.imaging import ENCODINGS, ImageError, ImageLimits, image_to_bgr
from mtc_perception.messages import CdrImage, image_view, pixel_view

TS = get_typestore(Stores.ROS2_JAZZY)
IMAGE = "sensor_msgs/msg/Image"
H, W = 6, 10  # W even: the 4:2:2 encodings need whole pixel pairs
RNG = np.random.default_rng(19)


def _message(encoding, *, height=H, width=W, pad=0, big_endian=False, frame_id="camera", stamp=(12, 345)):
    """An Image of random pixels in ``encoding`` (16-bit values in the declared byte order), each row
    followed by ``pad`` bytes of 0xAB, and the (H, W, C) pixel values it holds."""
    ch, dt = ENCODINGS[encoding]
    values = RNG.integers(0, np.iinfo(dt).max, (height, width, ch), endpoint=True).astype(dt)
    rows = values.astype((">" if big_endian else "<") + dt).view(np.uint8).reshape(height, -1)
    rows = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], 1)
    msg = TS.types[IMAGE](
        header=TS.types["std_msgs/msg/Header"](
            stamp=TS.types["builtin_interfaces/msg/Time"](sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id
        ),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(big_endian),
        step=rows.shape[1],
        data=rows.reshape(-1),
    )
    return msg, values


def _serialize(msg, little_endian=True):
    return bytes(TS.serialize_cdr(msg, IMAGE, little_endian=little_endian))


def _assert_fields(view, msg):
    assert view.stamp == (msg.header.stamp.sec, msg.header.stamp.nanosec)
    assert view.frame_id == msg.header.frame_id
    for name in ("height", "width", "encoding", "is_bigendian", "step"):
        assert getattr(view, name) == getattr(msg, name), name
    assert view.data.dtype == np.uint8 and np.array_equal(view.data, msg.data)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("little_endian", [True, False], ids=["cdr_le", "cdr_be"])
def test_every_encoding_is_read_in_place(encoding, pad, little_endian):
    msg, values = _message(encoding, pad=pad)
    buf = _serialize(msg, little_endian)
    view = image_view(buf)
    _assert_fields(view, msg)
    assert np.shares_memory(view.data, np.frombuffer(buf, np.uint8))

    px = pixel_view(view)
    assert px.shape == values.shape and np.array_equal(px, values)
    assert np.shares_memory(px, view.data) and not px.flags.writeable  # bytes are immutable
    # the project's conversion takes the view as it takes the deserialised message, with the same result
    decoded = TS.deserialize_cdr(buf, IMAGE)
    assert np.array_equal(image_to_bgr(view), image_to_bgr(decoded))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("little_endian", [True, False], ids=["cdr_le", "cdr_be"])
def test_big_endian_16_bit_pixels_have_their_values(encoding, little_endian):
    msg, values = _message(encoding, pad=1, big_endian=True)  # an odd step: 16-bit rows start unaligned
    buf = _serialize(msg, little_endian)
    px = pixel_view(image_view(buf))
    assert px.dtype.byteorder == ">" and np.array_equal(px, values) and np.shares_memory(px, np.frombuffer(buf, "u1"))
    assert np.array_equal(image_to_bgr(image_view(buf)), image_to_bgr(TS.deserialize_cdr(buf, IMAGE)))


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd", "kamera_vorne_ü"])
@pytest.mark.parametrize("encoding", ["mono8", "bgr8", "mono16"])
@pytest.mark.parametrize("little_endian", [True, False], ids=["cdr_le", "cdr_be"])
def test_string_lengths_and_odd_sizes_keep_alignment(frame_id, encoding, little_endian):
    """Every frame_id length mod 4 moves the fields after it; an odd width and data size move the end."""
    msg, values = _message(encoding, height=3, width=7, pad=1, frame_id=frame_id, stamp=(-5, 999_999_999))
    view = image_view(bytearray(_serialize(msg, little_endian)))
    _assert_fields(view, msg)
    assert np.array_equal(pixel_view(view), values)


def test_every_buffer_type_is_viewed_without_a_copy():
    msg, values = _message("bgr8", pad=2)
    raw = _serialize(msg)
    for buf in (raw, bytearray(raw), memoryview(raw), memoryview(bytearray(raw)), TS.serialize_cdr(msg, IMAGE)):
        view = image_view(buf)
        assert np.shares_memory(view.data, np.frombuffer(buf, np.uint8)), type(buf)
        assert np.array_equal(pixel_view(view), values)
    mutable = bytearray(raw)
    px = pixel_view(image_view(mutable))
    mutable[-1 - 2] ^= 0xFF  # the last pixel's last channel, before the row padding
    assert px[-1, -1, -1] == values[-1, -1, -1] ^ 0xFF  # a view, not a copy


def _valid():
    """A small little-endian bgr8 Image and the byte offsets of its fields (frame_id 'camera', encoding 'bgr8')."""
    msg, _ = _message("bgr8", height=2, width=3, pad=1, frame_id="camera")
    buf = _serialize(msg)
    # 4 header + 8 stamp + 4+7 frame_id -> 23, aligned 24: height; 28 width; 32 encoding (4+5); 41 is_bigendian;
    # 44 step; 48 data length; 52 data (2 x 10 bytes)
    offsets = {"height": 24, "width": 28, "step": 44, "data_len": 48}
    assert struct.unpack_from("<IIII", buf, 24)[:2] == (2, 3) and struct.unpack_from("<I", buf, 44)[0] == 10
    assert len(buf) == 52 + 20
    return buf, offsets


def _patched(buf, offset, value):
    out = bytearray(buf)
    struct.pack_into("<I", out, offset, value)
    return bytes(out)


def test_every_truncation_is_refused_without_reading_past_the_end():
    buf, _ = _valid()
    for n in range(len(buf)):
        with pytest.raises(ImageError, match=r"truncated|at least the 4-byte"):
            image_view(buf[:n])
    with pytest.raises(ImageError, match=r"data declares 20 bytes at offset 52, but only 19 bytes are left"):
        image_view(buf[:-1])
    with pytest.raises(ImageError, match=r"header.stamp.sec needs 4 bytes at offset 4, but the buffer has 6 bytes"):
        image_view(buf[:6])


@pytest.mark.parametrize(
    "change,pattern",
    [
        ((0, b"\x00\x02"), r"encapsulation 0x0002; expected 0x0000 \(CDR big endian\) or 0x0001"),
        ((0, b"\x01\x00"), r"encapsulation 0x0100"),
        ((12, struct.pack("<I", 2**32 - 1)), r"header.frame_id declares 4294967295 bytes at offset 16"),
        ((12, struct.pack("<I", 0)), r"header.frame_id at offset 16 \(length 0\) does not end with the NUL"),
        ((22, b"x"), r"header.frame_id at offset 16 \(length 7\) does not end with the NUL"),
        ((16, b"\xff\xfe"), r"header.frame_id at offset 16 is not UTF-8"),
        ((32, struct.pack("<I", 10**9)), r"encoding declares 1000000000 bytes"),
        ((48, struct.pack("<I", 2**32 - 1)), r"data declares 4294967295 bytes at offset 52, but only 20"),
    ],
)
def test_corrupt_structure_names_the_field(change, pattern):
    buf, _ = _valid()
    at, patch = change
    bad = buf[:at] + patch + buf[at + len(patch) :]
    with pytest.raises(ImageError, match=pattern):
        image_view(bad)


def test_trailing_bytes_beyond_padding_are_refused():
    buf, _ = _valid()
    assert np.array_equal(image_view(buf + b"\0\0\0").data, image_view(buf).data)  # rmw rounding up to 4
    with pytest.raises(ImageError, match=r"4 bytes after its data \(which ends at offset 72\)"):
        image_view(buf + b"\0" * 4)


def test_non_contiguous_and_non_buffer_inputs_are_refused():
    buf, _ = _valid()
    with pytest.raises(ImageError, match="contiguous bytes-like"):
        image_view(memoryview(buf)[::2])
    with pytest.raises(ImageError, match="contiguous bytes-like object .* got str"):
        image_view("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field,value,pattern",
    [
        ("step", 8, r"Image.step 8 is smaller than width x bytes per pixel = 3 x 3 = 9 for bgr8"),
        ("height", 3, r"len\(Image.data\) is 20 but step x height = 10 x 3 = 30"),
        ("step", 11, r"len\(Image.data\) is 20 but step x height = 11 x 2 = 22"),
        ("height", 0, r"Image.height x width is 0 x 3"),
        ("width", 2**32 - 1, r"claims 4294967295x2 pixels, over the limit"),
        ("height", 2**32 - 1, r"claims 3x4294967295 pixels, over the limit"),
        ("step", 2**32 - 1, r"len\(Image.data\) is 20 but step x height = 4294967295 x 2 = 8589934590"),
    ],
)
def test_fields_that_do_not_describe_the_data_are_refused(field, value, pattern):
    buf, offsets = _valid()
    view = image_view(_patched(buf, offsets[field], value))  # the structure is intact: the fields parse
    assert getattr(view, field) == value
    with pytest.raises(ImageError, match=pattern):
        pixel_view(view)
    with pytest.raises(ImageError, match=pattern):  # the same rule as the project's conversion
        image_to_bgr(view)


def test_encoding_and_limit_rules_match_the_conversion():
    msg, _ = _message("bgr8", height=2, width=3)
    msg.encoding = "xyz16"
    with pytest.raises(ImageError, match=r"Image.encoding 'xyz16' is not supported"):
        pixel_view(image_view(_serialize(msg)))
    msg, _ = _message("yuv422", height=2, width=3)
    with pytest.raises(ImageError, match=r"Image.width 3 is odd; yuv422 packs pixel pairs"):
        pixel_view(image_view(_serialize(msg)))
    msg, _ = _message("mono8", height=4, width=5)
    with pytest.raises(ImageError, match=r"claims 5x4 pixels, over the limit of 4 per side"):
        pixel_view(image_view(_serialize(msg)), limits=ImageLimits(max_side=4))


def test_a_view_is_an_image_message_for_the_decoder():
    """CdrImage carries exactly the fields image_to_bgr reads, and nothing that marks it compressed."""
    from mtc_perception.imaging import is_compressed, message_kind

    view = image_view(_valid()[0])
    assert isinstance(view, CdrImage) and not is_compressed(view) and message_kind(view) == "Image/bgr8"


# -- CompressedImage read in place ----------------------------------------------------------------
COMPRESSED = "sensor_msgs/msg/CompressedImage"


def _compressed(fmt="jpeg", frame_id="cam", payload=None, stamp=(7, 8)):
    import cv2

    if payload is None:
        ok, enc = cv2.imencode(".jpg", RNG.integers(0, 255, (16, 24, 3), endpoint=True).astype(np.uint8))
        assert ok
        payload = enc.reshape(-1)
    return TS.types[COMPRESSED](
        header=TS.types["std_msgs/msg/Header"](
            stamp=TS.types["builtin_interfaces/msg/Time"](sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id
        ),
        format=fmt,
        data=np.asarray(payload, np.uint8),
    )


@pytest.mark.parametrize("frame_id", ["", "a", "abc", "front_camera_optical"])
@pytest.mark.parametrize("little_endian", [True, False], ids=["cdr_le", "cdr_be"])
def test_compressed_image_is_read_in_place(frame_id, little_endian):
    from mtc_perception.imaging import message_to_bgr
    from mtc_perception.messages import compressed_view

    msg = _compressed(frame_id=frame_id)
    buf = bytearray(TS.serialize_cdr(msg, COMPRESSED, little_endian=little_endian))
    view = compressed_view(buf)
    assert view.stamp == (7, 8) and view.frame_id == frame_id and view.format == "jpeg"
    assert np.array_equal(view.data, msg.data)
    assert np.shares_memory(view.data, np.frombuffer(buf, np.uint8))  # a view, not a copy
    assert np.array_equal(message_to_bgr(view), message_to_bgr(msg))  # the one decode path takes it


def test_compressed_image_truncations_and_wrong_types_are_refused():
    from mtc_perception.messages import compressed_view

    buf = bytes(TS.serialize_cdr(_compressed(), COMPRESSED))
    for n in range(0, len(buf) - 1, max(1, len(buf) // 40)):
        with pytest.raises(ImageError, match="serialized CompressedImage"):
            compressed_view(buf[:n])
    image_bytes = _serialize(_message("bgr8")[0])  # an Image is not a CompressedImage
    with pytest.raises(ImageError, match="CompressedImage"):
        compressed_view(image_bytes)


# -- mono8 masks written in place -----------------------------------------------------------------
@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd", "kamera_vorne_ü"])
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (36, 64)])
def test_mask_writer_is_what_rosbags_reads(frame_id, shape):
    from mtc_perception.messages import MaskWriter, mask_image

    write = MaskWriter()
    for i, dtype in enumerate([np.uint8, np.bool_, np.int64, np.float32]):  # reused buffer, new contents each time
        mask = RNG.integers(0, 2, shape).astype(dtype)
        if dtype == np.uint8:
            mask[mask > 0] = RNG.integers(1, 255, int(mask.sum()))  # any nonzero is 255
        buf = write((100 + i, 999_999_999), frame_id, mask)
        assert isinstance(buf, bytes)
        msg = TS.deserialize_cdr(buf, IMAGE)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (100 + i, 999_999_999)
        assert msg.header.frame_id == frame_id
        assert (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step) == (*shape, "mono8", 0, shape[1])
        assert np.array_equal(msg.data.reshape(shape), np.where(mask != 0, 255, 0).astype(np.uint8))
        # the same bytes as the message the node built before (rosbags serializing mask_image)
        header = TS.types["std_msgs/msg/Header"](
            stamp=TS.types["builtin_interfaces/msg/Time"](sec=100 + i, nanosec=999_999_999), frame_id=frame_id
        )
        assert buf == bytes(TS.serialize_cdr(mask_image(TS.types.__getitem__, header, mask), IMAGE))
    assert image_view(buf).frame_id == frame_id


def test_mask_writer_refuses_a_non_mask():
    from mtc_perception.messages import MaskWriter

    with pytest.raises(ImageError, match="2-D"):
        MaskWriter()((0, 0), "cam", np.zeros((2, 3, 3), np.uint8))


@pytest.mark.parametrize("little_endian", [True, False], ids=["cdr_le", "cdr_be"])
def test_restamp_moves_only_the_stamp(little_endian):
    from mtc_perception.messages import restamp

    msg, _ = _message("bgr8", stamp=(1_700_000_000, 900_000_000))
    buf = _serialize(msg, little_endian)
    out, stamp = restamp(buf, 250_000_000)  # carries into the seconds
    assert stamp == 1_700_000_001_150_000_000
    from mtc_perception.messages import header_stamp

    assert header_stamp(out) == stamp and header_stamp(buf) == 1_700_000_000_900_000_000
    back = TS.deserialize_cdr(out, IMAGE)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (1_700_000_001, 150_000_000)
    assert back.header.frame_id == msg.header.frame_id and np.array_equal(back.data, msg.data)
    assert out[12:] == buf[12:] and buf == _serialize(msg, little_endian)  # a copy: the input is untouched
    comp = bytes(TS.serialize_cdr(_compressed(), COMPRESSED, little_endian=little_endian))
    assert restamp(comp, 5)[1] == 7 * 1_000_000_000 + 8 + 5
    with pytest.raises(ImageError, match="does not fit"):
        restamp(buf, 2**31 * 1_000_000_000)
    with pytest.raises(ImageError, match="truncated"):
        restamp(buf[:9], 1)
