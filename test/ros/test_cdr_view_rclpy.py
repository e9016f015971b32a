"""The node's in-place view of a serialized camera message (messages.cdr_image) against rclpy's own
deserialisation of the same bytes, as the rmw hands them over: every field of every supported
encoding, padded rows, both 16-bit byte orders, and CompressedImage. Runs where rclpy is installed
(``colcon test``); the same checks against rosbags' CDR run everywhere (test/runtime/test_cdr_image.py)."""

import numpy as np
import pytest

REASON = "needs ROS 2 (rclpy, sensor_msgs): run `colcon test --packages-select mtc_perception` on a ROS 2 machine"
pytest.importorskip("rclpy", reason=REASON)

from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from mtc_perception.imaging import ENCODINGS
from mtc_perception.messages import compressed_view, header_stamp, image_view, pixel_view

RNG = np.random.default_rng(5)
H, W = 6, 10


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("pad", [0, 1, 3])
@pytest.mark.parametrize("big_endian", [False, True])
def test_view_equals_rclpy_deserialisation(encoding, pad, big_endian):
    ch, dt = ENCODINGS[encoding]
    values = RNG.integers(0, np.iinfo(dt).max, (H, W, ch), endpoint=True).astype(dt)
    rows = values.astype((">" if big_endian else "<") + dt).view(np.uint8).reshape(H, -1)
    rows = np.concatenate([rows, np.full((H, pad), 0xCD, np.uint8)], 1)
    msg = Image(height=H, width=W, encoding=encoding, is_bigendian=int(big_endian), step=rows.shape[1])
    msg.data = rows.tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = 1_700_000_000, 42, "cam_ü"
    wire = serialize_message(msg)
    back = deserialize_message(wire, Image)
    view = image_view(wire)
    assert view.stamp == (back.header.stamp.sec, back.header.stamp.nanosec)
    assert header_stamp(wire) == 1_700_000_000 * 10**9 + 42
    assert view.frame_id == back.header.frame_id
    for name in ("height", "width", "encoding", "is_bigendian", "step"):
        assert getattr(view, name) == getattr(back, name), name
    assert view.data.tobytes() == bytes(back.data)
    np.testing.assert_array_equal(pixel_view(view), values)  # the values, in the declared byte order


def test_compressed_view_equals_rclpy_deserialisation():
    msg = CompressedImage(format="jpeg")
    msg.data = bytes(RNG.integers(0, 255, 333, dtype=np.uint8))
    msg.header.frame_id = "front"
    wire = serialize_message(msg)
    back, view = deserialize_message(wire, CompressedImage), compressed_view(wire)
    assert (view.format, view.frame_id, view.data.tobytes()) == (back.format, back.header.frame_id, bytes(back.data))
