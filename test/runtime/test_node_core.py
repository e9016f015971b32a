"""The perception node's ROS-free core: newest-frame slot, diagnostics statistics, output messages."""

import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (real ROS 2 message definitions and CDR): `pip install rosbags`; `make test` installs it",
)

import threading
import time

import numpy as np
from rosbags.typesys import Stores, get_typestore

from mtc_perception.messages import detection_array, mask_image, register_vision_msgs
from mtc_perception.node_core import FrameSlot, Stats

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
    back = ts.deserialize_cdr(
        ts.serialize_cdr(msg, "vision_msgs/msg/Detection2DArray"), "vision_msgs/msg/Detection2DArray"
    )
    assert (
        back.header.stamp.sec == 1700000000
        and back.header.stamp.nanosec == 123456789
        and back.header.frame_id == "front_camera"
    )
    assert len(back.detections) == 2
    d = back.detections[1]
    assert d.header.stamp.nanosec == 123456789
    assert d.bbox.center.position.x == pytest.approx(230) and d.bbox.center.position.y == pytest.approx(140.25)
    assert d.bbox.size_x == pytest.approx(60) and d.bbox.size_y == pytest.approx(80.5)
    assert d.results[0].hypothesis.class_id == "vehicle" and d.results[0].hypothesis.score == pytest.approx(0.4)
    # the class filter drops what was not asked for
    assert (
        len(
            detection_array(
                types, header, boxes, np.array([0.9, 0.4]), np.array([0, 0]), ["vehicle"], ["person"]
            ).detections
        )
        == 0
    )
    m = mask_image(types, header, np.eye(4, 6, dtype=np.uint8))
    mb = ts.deserialize_cdr(ts.serialize_cdr(m, "sensor_msgs/msg/Image"), "sensor_msgs/msg/Image")
    assert mb.encoding == "mono8" and mb.header.frame_id == "front_camera" and mb.width == 6 and mb.data.max() == 255


# ---------------------------------------------------------------------------------------------
# parameters, warnings, health, and a whole frame through the committed tiny bundle
# ---------------------------------------------------------------------------------------------
from pathlib import Path

import cv2
import yaml

from mtc_perception.imaging import bgr_to_image_fields
from mtc_perception.node_core import (
    PARAMETERS,
    FrameProcessor,
    ParamError,
    WarnLimiter,
    check_class_filter,
    diagnostic_array,
    health,
    qos_settings,
    validate_params,
)

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_bundle"


def test_parameters_validate_and_name_what_is_wrong():
    p = validate_params({"bundle": "b", "input_transport": "compressed", "image_topic": "/cam/image_raw/"})
    assert p.subscribed_topic == "/cam/image_raw/compressed" and p.message_type == "sensor_msgs/msg/CompressedImage"
    assert p.conf_threshold == 0.25 and isinstance(p.conf_threshold, float) and p.class_filter == ()
    assert validate_params({"bundle": "b", "conf_threshold": 1}).conf_threshold == 1.0  # an int is a fine double
    assert validate_params({"bundle": "b", "class_filter": ["vehicle", ""]}).class_filter == ("vehicle",)
    cases = {
        "'bundle' is empty": {},
        "'input_transport' = 'theora'": {"bundle": "b", "input_transport": "theora"},
        "'reliability' = 'sometimes'": {"bundle": "b", "reliability": "sometimes"},
        "'conf_threshold' = 1.5: expected a value in [0.0, 1.0]": {"bundle": "b", "conf_threshold": 1.5},
        "'max_detections' = 0": {"bundle": "b", "max_detections": 0},
        "'max_detections' = True: expected a integer": {"bundle": "b", "max_detections": True},
        "'publish_overlay' = 'yes': expected a bool": {"bundle": "b", "publish_overlay": "yes"},
        "'class_filter' = [1]": {"bundle": "b", "class_filter": [1]},
        "unknown parameter(s) ['conf']": {"bundle": "b", "conf": 0.3},
        "'image_topic' is empty": {"bundle": "b", "image_topic": " "},
    }
    for text, values in cases.items():
        with pytest.raises(ParamError) as e:
            validate_params(values)
        assert text in str(e.value), (text, str(e.value))
    with pytest.raises(ParamError, match=r"names \['person'\].*its classes are \['vehicle'\]"):
        check_class_filter(["person"], ["vehicle"])


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_parameter_files_hold_valid_values_for_declared_parameters(role):
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / f"{role}.yaml").read_text())
    values = doc["/**"]["ros__parameters"]
    assert set(values) <= {p.name for p in PARAMETERS}
    p = validate_params(values)
    assert p.bundle == f"bundles/{role}"
    for spec in PARAMETERS:  # every parameter is documented in the file, set or commented out
        assert spec.name in (Path(__file__).resolve().parents[2] / "config" / f"{role}.yaml").read_text()


def test_warnings_are_rate_limited_per_kind_and_count_what_they_hold_back():
    w = WarnLimiter(period=5.0)
    assert w("jpeg", "bad jpeg", now=0.0) == "bad jpeg"
    assert w("jpeg", "bad jpeg", now=1.0) is None and w("jpeg", "bad jpeg", now=2.0) is None
    assert w("Image/xyz", "bad encoding", now=2.5) == "bad encoding"  # another kind is not held back
    assert w("jpeg", "bad jpeg", now=5.5) == "bad jpeg (2 more like this since the last warning)"
    assert w("jpeg", "bad jpeg", now=11.0) == "bad jpeg"


def test_health_levels():
    base = {"rate_hz": 10.0, "latency_p50_ms": 20.0, "latency_p99_ms": 30.0, "last_error": "bad step"}
    s = lambda r, p, f, k=0: {**base, "received": r, "processed": p, "failed": f, "skipped": k}  # noqa: E731 - a one-line record builder
    assert health(s(0, 0, 0), None, "/cam")[0] == "STALE"
    assert health(s(10, 8, 0, 2), s(0, 0, 0), "/cam")[0] == "OK"
    level, msg = health(s(20, 15, 3), s(10, 8, 0), "/cam")
    assert level == "WARN" and "3 of 10 frames failed: bad step" in msg
    assert health(s(30, 15, 13), s(20, 15, 3), "/cam")[0] == "ERROR"
    assert health(s(30, 15, 13), s(30, 15, 13), "/cam") == ("WARN", "no frames in the last period on /cam")
    assert qos_settings("best_effort") == {
        "history": "keep_last",
        "depth": 1,
        "reliability": "best_effort",
        "durability": "volatile",
    }
    with pytest.raises(ParamError):
        qos_settings("maybe")


@pytest.fixture(scope="module")
def tiny_perceptor():
    from mtc_perception.perceptor import Perceptor

    return Perceptor(TINY, backend="onnxruntime", conf=0.01)


@pytest.mark.parametrize("store", STORES, ids=["humble", "jazzy"])
def test_frame_processor_turns_camera_messages_into_outputs_with_the_input_header(store, tiny_perceptor):
    ts = get_typestore(store)
    register_vision_msgs(ts)
    types = ts.types.__getitem__
    Header, Time = types("std_msgs/msg/Header"), types("builtin_interfaces/msg/Time")
    frame = cv2.imread(str(DATA / "frame.jpg"))
    h, w = frame.shape[:2]
    core = FrameProcessor(tiny_perceptor, types)
    expect = tiny_perceptor(frame)
    raw = types("sensor_msgs/msg/Image")(
        header=Header(stamp=Time(sec=5, nanosec=7), frame_id="cam"), **bgr_to_image_fields(frame)
    )
    ok, jpg = cv2.imencode(".png", frame)  # lossless, so the compressed path sees the same pixels
    comp = types("sensor_msgs/msg/CompressedImage")(
        header=Header(stamp=Time(sec=6, nanosec=8), frame_id="cam"), format="png", data=jpg.reshape(-1)
    )
    for msg, overlay in ((raw, False), (comp, True)):
        msg = ts.deserialize_cdr(ts.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)  # as it arrives off the wire
        res = core(msg, overlay=overlay)
        assert not res.error
        assert set(res.messages) == {"detections", "drivable_mask", "lane_mask"} | ({"overlay"} if overlay else set())
        for name, out in res.messages.items():
            back = ts.deserialize_cdr(ts.serialize_cdr(out, out.__msgtype__), out.__msgtype__)
            assert back.header.stamp == msg.header.stamp and back.header.frame_id == "cam"
            if name != "detections":
                assert (back.height, back.width) == (h, w) and back.encoding == (
                    "bgr8" if name == "overlay" else "mono8"
                )
        dets = res.messages["detections"].detections
        assert len(dets) == len(expect.boxes) > 0
        np.testing.assert_allclose([d.bbox.size_x for d in dets], expect.boxes[:, 2] - expect.boxes[:, 0], rtol=1e-5)
        drv = res.messages["drivable_mask"].data.reshape(h, w)
        np.testing.assert_array_equal(drv // 255, expect.drivable)
    assert core.stats.processed == 2 and core.stats.failed == 0


def test_serialized_frames_give_the_same_outputs_as_messages(tiny_perceptor):
    """The node's raw-subscription path (CDR bytes read in place, masks written serialized) answers
    exactly as the message path: same detections, byte-identical mask messages, the input's header,
    for raw and compressed input; stage timings reach /diagnostics."""
    ts = get_typestore(Stores.ROS2_JAZZY)
    register_vision_msgs(ts)
    types = ts.types.__getitem__
    Header, Time = types("std_msgs/msg/Header"), types("builtin_interfaces/msg/Time")
    frame = cv2.imread(str(DATA / "frame.jpg"))
    ok, png = cv2.imencode(".png", frame)
    hdr = Header(stamp=Time(sec=1_700_000_000, nanosec=123_456_789), frame_id="front_cam")
    inputs = {
        "raw": types("sensor_msgs/msg/Image")(header=hdr, **bgr_to_image_fields(frame)),
        "compressed": types("sensor_msgs/msg/CompressedImage")(header=hdr, format="png", data=png.reshape(-1)),
    }
    for transport, msg in inputs.items():
        wire = bytes(ts.serialize_cdr(msg, msg.__msgtype__))
        by_msg = FrameProcessor(tiny_perceptor, types)(ts.deserialize_cdr(wire, msg.__msgtype__), overlay=True)
        core = FrameProcessor(tiny_perceptor, types, serialized=transport)
        sent: list[str] = []
        res = core(wire, received_at=time.monotonic() - 0.005, overlay=True, publish=lambda n, m, s=sent: s.append(n))
        assert not res.error and not by_msg.error
        assert sent == list(res.messages) and set(sent) == {"detections", "drivable_mask", "lane_mask", "overlay"}
        for name in ("detections", "drivable_mask", "lane_mask"):
            assert isinstance(res.messages[name], bytes)  # what rclpy's publish() sends as it is
            b = by_msg.messages[name]
            assert res.messages[name] == bytes(ts.serialize_cdr(b, b.__msgtype__))
        a, b = res.messages["overlay"], by_msg.messages["overlay"]
        assert bytes(ts.serialize_cdr(a, a.__msgtype__)) == bytes(ts.serialize_cdr(b, b.__msgtype__))
        assert set(res.timings) == {"wait", "decode", "preprocess", "infer", "postprocess", "build", "publish"}
        assert res.timings["wait"] >= 5.0  # received 5 ms before the worker took it
        s = core.stats.summary(received=1, skipped=0)
        assert s["processed"] == 1 and s["infer_p50_ms"] > 0 and s["wait_p50_ms"] >= 5.0
        assert s["latency_p50_ms"] >= s["wait_p50_ms"] and s["cpu_s"] > 0
    core = FrameProcessor(tiny_perceptor, types, serialized="raw")
    bad = core(b"\x00\x01\x00\x00" + bytes(10))  # a truncated serialized Image: counted, not raised
    assert "bad frame (Image): serialized Image is truncated" in bad.error and core.stats.failed == 1
    with pytest.raises(ValueError, match="serialized='jpeg'"):
        FrameProcessor(tiny_perceptor, types, serialized="jpeg")


def test_frame_processor_survives_bad_frames_and_counts_them(tiny_perceptor):
    ts = get_typestore(Stores.ROS2_JAZZY)
    register_vision_msgs(ts)
    types = ts.types.__getitem__
    Header, Time = types("std_msgs/msg/Header"), types("builtin_interfaces/msg/Time")
    hdr = Header(stamp=Time(sec=1, nanosec=0), frame_id="cam")
    Image, Compressed = types("sensor_msgs/msg/Image"), types("sensor_msgs/msg/CompressedImage")
    good = Image(header=hdr, **bgr_to_image_fields(np.zeros((40, 60, 3), np.uint8)))
    bad = [
        Image(
            header=hdr, height=40, width=60, encoding="xyz9", is_bigendian=0, step=180, data=np.zeros(7200, np.uint8)
        ),
        Image(
            header=hdr, height=40, width=60, encoding="bgr8", is_bigendian=0, step=100, data=np.zeros(4000, np.uint8)
        ),
        Compressed(header=hdr, format="jpeg", data=np.frombuffer(b"\xff\xd8 not a jpeg", np.uint8)),
    ]
    core = FrameProcessor(tiny_perceptor, types)
    errors = [core(m).error for m in bad]
    assert "encoding 'xyz9'" in errors[0] and "step 100" in errors[1] and "not a decodable image" in errors[2]
    assert not core(good).error
    assert core.stats.failed == 3 and core.stats.processed == 1
    s = core.stats.summary(received=4, skipped=0)
    assert health(s, None, "/cam")[0] == "WARN"
    msg = diagnostic_array(
        types, Time(sec=2, nanosec=0), "/student/perception_node: perception", "host", s, "WARN", "3 of 4 failed"
    )
    back = ts.deserialize_cdr(
        ts.serialize_cdr(msg, "diagnostic_msgs/msg/DiagnosticArray"), "diagnostic_msgs/msg/DiagnosticArray"
    )
    st = back.status[0]
    assert st.level == types("diagnostic_msgs/msg/DiagnosticStatus").WARN and st.name.startswith("/student/")
    assert {kv.key: kv.value for kv in st.values}["failed"] == "3"
    with pytest.raises(ParamError, match="class_filter"):
        FrameProcessor(tiny_perceptor, types, class_filter=["pedestrian"])


def test_committed_tiny_bundle_matches_this_runtime():
    """test/data/tiny_bundle is what the ROS launch tests and the numpy-1.x run use; if the bundle
    schema moves on, regenerate it with scripts/make_tiny_bundle.py."""
    from mtc_perception.bundle import Bundle

    b = Bundle.load(TINY)
    assert b.input_size == (128, 96) and b.file("onnx").is_file() and b.file("torch") is None


def test_backend_none_answers_every_frame_with_nothing_at_the_input_size():
    """The transport-floor node (backend: none): the same outputs, contract and counters, no model."""
    from mtc_perception.bundle import Bundle
    from mtc_perception.node_core.null import NullPerceptor

    ts = get_typestore(Stores.ROS2_JAZZY)
    register_vision_msgs(ts)
    types = ts.types.__getitem__
    b = Bundle.load(TINY)
    core = FrameProcessor(NullPerceptor(b, b.class_names), types, serialized="raw")
    Header, Time = types("std_msgs/msg/Header"), types("builtin_interfaces/msg/Time")
    img = types("sensor_msgs/msg/Image")(
        header=Header(stamp=Time(sec=3, nanosec=4), frame_id="cam"),
        **bgr_to_image_fields(np.zeros((72, 128, 3), np.uint8)),
    )
    res = core(bytes(ts.serialize_cdr(img, "sensor_msgs/msg/Image")))
    dets = ts.deserialize_cdr(res.messages["detections"], "vision_msgs/msg/Detection2DArray")
    assert not res.error and dets.detections == [] and dets.header.frame_id == "cam"
    mask = ts.deserialize_cdr(res.messages["lane_mask"], "sensor_msgs/msg/Image")
    assert (mask.height, mask.width, mask.header.stamp.sec) == (72, 128, 3) and not mask.data.any()
    assert validate_params({"bundle": str(TINY), "backend": "none"}).backend == "none"


@pytest.mark.parametrize("frame_id", ["", "a", "abc", "front_camera"])
@pytest.mark.parametrize("n", [0, 1, 7])
@pytest.mark.parametrize("class_filter", [(), ("vehicle",)])
def test_detections_written_serialized_are_the_message_byte_for_byte(frame_id, n, class_filter):
    from mtc_perception.messages.cdr_detections import detections_cdr

    ts = get_typestore(Stores.ROS2_JAZZY)
    register_vision_msgs(ts)
    types = ts.types.__getitem__
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 1000, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 200, (n, 2))], 1).astype(np.float32)
    scores, ids = rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, 3, n)
    names = ("vehicle", "person", "kamera_ü")
    header = types("std_msgs/msg/Header")(
        stamp=types("builtin_interfaces/msg/Time")(sec=1_700_000_123, nanosec=456), frame_id=frame_id
    )
    msg = detection_array(types, header, boxes, scores, ids, names, class_filter)
    expect = bytes(ts.serialize_cdr(msg, "vision_msgs/msg/Detection2DArray"))
    assert detections_cdr((1_700_000_123, 456), frame_id, boxes, scores, ids, names, class_filter) == expect
