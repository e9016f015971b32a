"""The perception node's ROS-free core: newest-frame slot, diagnostics statistics, output messages."""

import threading
import time

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from mtc_perception.node_core import FrameSlot, Stats, detection_array, mask_image, register_vision_msgs

STORES = [Stores.ROS2_HUMBLE, Stores.ROS2_JAZZY]


def test_slot_keeps_only_the_newest_frame_and_counts_skips():
    slot = FrameSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0.1) == 4 and slot.received == 5 and slot.skipped == 4
    assert slot.take(0.01) is None  # nothing new


def test_fast_producer_slow_consumer():
    slot = FrameSlot()
    taken = []

    def consumer():
        while True:
            item = slot.take(0.5)
            if item is None:
                return
            taken.append(item)
            time.sleep(0.01)  # inference slower than the camera

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(300):
        slot.put(i)
        time.sleep(0.0005)
    t.join()
    assert taken == sorted(taken) and taken[-1] == 299  # in order, and the last frame is never lost
    assert slot.received == 300 and len(taken) + slot.skipped == 300 and slot.skipped > 100
    slot.close()
    assert slot.take(1.0) is None


def test_stats_summary():
    s = Stats()
    for i in range(11):
        s.ok(10.0 + i, now=i * 0.1)
    s.fail("bad encoding 'xyz'")
    out = s.summary(received=20, skipped=8)
    assert out["rate_hz"] == pytest.approx(10.0) and out["latency_p50_ms"] == pytest.approx(15.0)
    assert out["processed"] == 11 and out["failed"] == 1 and out["skipped"] == 8 and "xyz" in out["last_error"]


@pytest.mark.parametrize("store", STORES, ids=["humble", "jazzy"])
def test_messages_serialize_with_the_input_header(store):
    ts = get_typestore(store)
    register_vision_msgs(ts)
    types = ts.types.__getitem__
    Header, Time = types("std_msgs/msg/Header"), types("builtin_interfaces/msg/Time")
    header = Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id="front_camera")
    boxes = np.array([[10, 20, 110, 70], [200, 100, 260, 180.5]])
    msg = detection_array(types, header, boxes, np.array([0.9, 0.4]), np.array([0, 0]), ["vehicle"])
    back = ts.deserialize_cdr(ts.serialize_cdr(msg, "vision_msgs/msg/Detection2DArray"), "vision_msgs/msg/Detection2DArray")
    assert back.header.stamp.sec == 1700000000 and back.header.stamp.nanosec == 123456789 and back.header.frame_id == "front_camera"
    assert len(back.detections) == 2
    d = back.detections[1]
    assert d.header.stamp.nanosec == 123456789
    assert d.bbox.center.position.x == pytest.approx(230) and d.bbox.center.position.y == pytest.approx(140.25)
    assert d.bbox.size_x == pytest.approx(60) and d.bbox.size_y == pytest.approx(80.5)
    assert d.results[0].hypothesis.class_id == "vehicle" and d.results[0].hypothesis.score == pytest.approx(0.4)
    # the class filter drops what was not asked for
    assert len(detection_array(types, header, boxes, np.array([0.9, 0.4]), np.array([0, 0]), ["vehicle"], ["person"]).detections) == 0
    m = mask_image(types, header, np.eye(4, 6, dtype=np.uint8))
    mb = ts.deserialize_cdr(ts.serialize_cdr(m, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")
    assert mb.encoding == "mono8" and mb.header.frame_id == "front_camera" and mb.width == 6 and mb.data.max() == 255
