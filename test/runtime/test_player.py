"""The live benchmark's ROS-free player (what ``benchmark_node`` does over time): its parameters,
the perception nodes' inputs, pacing at the recorded rate, the start and drain timeouts, the
external player's end, and a whole run whose "nodes" are the real FrameProcessor on a fake clock."""

import cv2
import numpy as np
import pytest

pytest.importorskip(
    "rosbags",
    reason="needs rosbags (real ROS 2 message definitions and CDR): `pip install rosbags`; `make test` installs it",
)
pytest.importorskip(
    "onnxruntime", reason="needs onnxruntime (runs the tiny bundle): a required dependency, see import_guards.REQUIRED"
)

from pathlib import Path

from mtc_perception.bags import Labels, SourceFrame, WriteConfig, write_bag
from mtc_perception.bench.player import (
    PLAYER_PARAMETERS,
    PLAYER_VALUES,
    PLAYERS,
    BenchPlayer,
    node_inputs,
    player_mode,
    validate_player_params,
)
from mtc_perception.node_core import FrameProcessor, ParamError
from mtc_perception.perceptor import Perceptor

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_bundle"
FRAMES = 5


class Clock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    frame = cv2.imread(str(DATA / "frame.jpg"))
    h, w = frame.shape[:2]
    lab = Labels(np.array([[10.0, 10.0, 60.0, 40.0]]), np.array([0]), ("vehicle",), np.zeros((h, w), np.uint8), None)
    path = tmp_path_factory.mktemp("player") / "bag"
    frames = [SourceFrame(f"f{i}", np.ascontiguousarray(np.roll(frame, 5 * i, axis=1)), lab) for i in range(FRAMES)]
    write_bag(path, frames, WriteConfig(fps=5.0))
    return path


def _params(bag, tmp_path, **kw):
    values = {"bag": str(bag), "teacher_bundle": str(TINY), "student_bundle": str(TINY), "out": str(tmp_path / "r")}
    return validate_player_params({**values, **kw})


def test_parameters_are_one_table_checked_like_the_perception_nodes(tmp_path, logs):
    assert [p.name for p in PLAYER_PARAMETERS] == [
        "bag",
        "topic",
        "teacher_bundle",
        "student_bundle",
        "teacher_ns",
        "student_ns",
        "out",
        "player",
        "rate",
        "fixed_rate",
        "loops",
        "nodes",
        "distro",
        "start_timeout",
        "drain",
        "gt_prefix",
    ]
    p = _params("b", tmp_path)
    assert (p.player, p.rate, p.drain, p.teacher_ns) == ("internal", 1.0, 5.0, "teacher")
    assert _params("b", tmp_path, rate=2).rate == 2.0  # an int is a fine double
    with pytest.raises(ParamError, match="'bag' is empty"):
        validate_player_params({"teacher_bundle": "t", "student_bundle": "s"})
    with pytest.raises(ParamError, match="'player' = 'vlc': expected one of"):
        _params("b", tmp_path, player="vlc")
    with pytest.raises(ParamError, match="'rate' = 0.0"):
        _params("b", tmp_path, rate=0.0)
    assert player_mode("ros2bag") == "external" and "deprecated" in logs.text  # the launch file's old value
    assert _params("b", tmp_path, player="ros2bag").player == "external"


def test_node_inputs_follow_image_transport_naming():
    assert node_inputs("/cam/image_raw", "sensor_msgs/msg/Image") == ("/cam/image_raw", "raw")
    assert node_inputs("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage") == (
        "/cam/image_raw",
        "compressed",
    )
    with pytest.raises(ValueError, match="does not end in /compressed"):
        node_inputs("/cam/jpeg", "sensor_msgs/msg/CompressedImage")
    with pytest.raises(ValueError, match="not a camera image"):
        node_inputs("/ground_truth/detections", "vision_msgs/msg/Detection2DArray")


def _nodes(player, drop=(), models=("teacher", "student")):
    """``publish`` of two fake perception nodes: the real FrameProcessor on the tiny bundle answers
    every frame on the player's output callback (``drop``: frame indices the student never answers)."""
    types = player.reader.ts.types.__getitem__
    core = FrameProcessor(Perceptor(TINY, backend="onnxruntime", conf=0.01), types)
    sent = []

    def publish(raw):
        msg = player.reader.ts.deserialize_cdr(raw, player.msgtype)
        res = core(msg)
        for model in models:
            if model == "student" and len(sent) in drop:
                continue
            for part, out in res.messages.items():
                player.output(model, part, out)
        sent.append(player.now())

    return publish, sent


def test_a_whole_run_paced_at_the_recorded_rate(bag, tmp_path):
    clock = Clock()
    player = BenchPlayer(_params(bag, tmp_path, rate=2.0, drain=3.0), now=clock.now, sleep=clock.sleep)
    assert player.topic == "/camera/image_raw" and set(player.gt) == {"detections", "drivable"}
    assert set(player.output_topics.values()) == {
        f"/{m}/{p}" for m in ("teacher", "student") for p in ("detections", "drivable_mask", "lane_mask")
    }
    publish, sent = _nodes(player)
    rep = player.play(publish)
    assert np.allclose(np.diff(sent), 0.1)  # 5 fps recorded, played at rate 2
    assert player.finished.is_set() and (tmp_path / "r" / "report.json").is_file()
    for name in ("teacher", "student"):
        assert rep["models"][name]["frames"] == {"total": FRAMES, "processed": FRAMES, "failed": 0, "skipped": 0}
    assert rep["agreement"]["drivable"]["miou"] == pytest.approx(1.0)
    assert rep["ground_truth"]["matching"]["frames_with_all_labels"] == FRAMES
    assert rep["meta"]["mode"] == "live" and rep["meta"]["bag"]["topic"] == "/camera/image_raw"
    assert rep["meta"]["config"]["rate"] == 2.0
    assert player.finish(reason="interrupted") is None  # written once


def test_missing_outputs_are_waited_for_drain_seconds_then_skipped(bag, tmp_path):
    clock = Clock()
    player = BenchPlayer(_params(bag, tmp_path, drain=3.0), now=clock.now, sleep=clock.sleep)
    publish, _ = _nodes(player, drop={1, 3})
    rep = player.play(publish)
    s = rep["models"]["student"]["frames"]
    assert s == {"total": FRAMES, "processed": FRAMES - 2, "failed": 0, "skipped": 2}
    played = (FRAMES - 1) * 0.2
    assert clock.t - 100.0 == pytest.approx(played + 3.0 + 0.5, abs=0.06)  # the whole drain, a last diagnostics


def test_nodes_that_never_subscribe_time_out_and_play_anyway(bag, tmp_path, logs):
    clock = Clock()
    player = BenchPlayer(_params(bag, tmp_path, start_timeout=2.0), now=clock.now, sleep=clock.sleep)
    player.wait_for_nodes(lambda: 1, lambda topic: 1)
    assert 2.0 <= clock.t - 100.0 <= 2.7 and "only 1 of 2 perception nodes" in logs.text
    clock.t = 100.0
    player.wait_for_nodes(lambda: 2, lambda topic: 1)  # everything connected: no wait but the settle time
    assert clock.t - 100.0 == pytest.approx(0.5)


def test_the_external_player_ends_when_every_frame_was_seen_or_it_went_quiet(bag, tmp_path):
    clock = Clock()
    player = BenchPlayer(_params(bag, tmp_path, player="external", drain=2.0), now=clock.now, sleep=clock.sleep)
    assert player.external and not player.external_done()  # nothing seen yet: ros2 bag play has not started
    raws = [bytes(m.raw) for m in player.reader.messages([player.topic])]
    for raw in raws[:2]:
        player.seen(raw)
        clock.sleep(0.2)
    assert not player.external_done()
    clock.sleep(2.5)  # quiet for longer than `drain`
    assert player.external_done() and not player.external_done()  # once
    rep = player.drain()
    assert rep["meta"]["frames_sent"] == 2
    assert rep["models"]["teacher"]["frames"] == {"total": FRAMES, "processed": 0, "failed": 0, "skipped": FRAMES}


def test_distro_comes_from_ros_distro_unless_given(tmp_path):
    """A Jazzy machine's report must not say humble: an empty distro is $ROS_DISTRO."""
    values = {"bag": "b", "teacher_bundle": "t", "student_bundle": "s"}
    assert validate_player_params(values, environ={"ROS_DISTRO": "jazzy"}).distro == "jazzy"
    assert validate_player_params(values, environ={}).distro == "humble"  # no ROS: the old default
    assert validate_player_params({**values, "distro": "humble"}, environ={"ROS_DISTRO": "jazzy"}).distro == "humble"
    with pytest.raises(ParamError, match="ROS_DISTRO='kilted'.*distro:=jazzy"):
        validate_player_params(values, environ={"ROS_DISTRO": "kilted"})
    with pytest.raises(ParamError, match="'distro' = 'iron': expected one of"):
        validate_player_params({**values, "distro": "iron"}, environ={})


def test_player_values_are_the_same_in_the_launch_file_and_the_node():
    """benchmark.launch.py takes its player choices, default and aliases from the node's table."""
    import ast

    src = (Path(__file__).resolve().parents[2] / "launch" / "benchmark.launch.py").read_text()
    literals = {n.value for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not literals & set(PLAYER_VALUES), "benchmark.launch.py spells player values itself"
    assert "PLAYER_VALUES" in src and "player_mode(" in src
    for v in PLAYER_VALUES:
        validate_player_params({"bag": "b", "teacher_bundle": "t", "student_bundle": "s", "player": v}, environ={})
    assert PLAYER_PARAMETERS[[p.name for p in PLAYER_PARAMETERS].index("player")].default == PLAYERS[0]


def test_fixed_rate_loops_restamp_every_frame_and_the_r2b_section_counts_them(bag, tmp_path):
    """fixed_rate paces at exactly 1/rate whatever the recorded times; loops replay the recording with
    new stamps so every frame sent is matched to its own answers; the ros2_benchmark section counts
    exactly what was sent and answered (one student answer dropped)."""
    clock = Clock()
    params = _params(bag, tmp_path, fixed_rate=20.0, loops=3, drain=1.0)
    player = BenchPlayer(params, now=clock.now, sleep=clock.sleep)
    publish, sent = _nodes(player, drop={4})
    rep = player.play(publish)
    n = 3 * FRAMES
    assert len(sent) == n and np.allclose(np.diff(sent), 0.05)  # 20 Hz, across the loop boundaries too
    assert len(player.bench.sent_at) == n  # every stamp distinct
    stamps = sorted(player.bench.sent_at)
    assert stamps[FRAMES] - stamps[FRAMES - 1] >= 1_000_000_000  # the second pass starts past the first's span
    assert rep["models"]["teacher"]["frames"] == {"total": n, "processed": n, "failed": 0, "skipped": 0}
    assert rep["models"]["student"]["frames"]["processed"] == n - 1
    assert rep["ground_truth"]["matching"]["frames_with_all_labels"] == n  # labels restamped with their frames
    r = rep["ros2_benchmark"]
    for model, missed in (("teacher", 0), ("student", 1)):
        m = r[model]
        assert m["BasicPerformanceMetrics.NUM_FRAMES_SENT"] == n
        assert m["BasicPerformanceMetrics.NUM_MISSED_FRAMES"] == missed
        assert m["BasicPerformanceMetrics.MEAN_PLAYBACK_FRAME_RATE"] == pytest.approx(n / ((n - 1) * 0.05))
        assert m["BasicPerformanceMetrics.MIN_LATENCY"] >= 0 and "latency_p99_ms" in m["extra"]
    meta = r["metadata"]
    assert meta["BenchmarkMetadata.BENCHMARK_MODE"] == "fixed rate 20 Hz, 3 loop(s)"
    assert meta["BenchmarkMetadata.INPUT_DATA_HASH"] == rep["meta"]["bag"]["md5"] and meta["BenchmarkMetadata.CONFIG"]
    assert meta["BenchmarkMetadata.DATA_RESOLUTION"] == "{}x{}".format(
        *cv2.imread(str(DATA / "frame.jpg")).shape[1::-1]
    )
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## ros2_benchmark metrics" in md and "| missed frames | 0 | 1 |" in md


def test_one_node_alone_and_what_the_external_player_cannot_do(bag, tmp_path):
    clock = Clock()
    player = BenchPlayer(_params(bag, tmp_path, nodes="student", drain=1.0), now=clock.now, sleep=clock.sleep)
    assert [m.name for m in player.bench.models] == ["student"]
    assert {m for m, _ in player.output_topics} == {"student"}
    publish, _ = _nodes(player, models=("student",))
    rep = player.play(publish)
    assert set(rep["models"]) == {"student"} and rep["models"]["student"]["frames"]["processed"] == FRAMES
    assert set(rep["ros2_benchmark"]) == {"student", "metadata"}
    with pytest.raises(ParamError, match="loops and fixed_rate pace the internal player"):
        BenchPlayer(_params(bag, tmp_path, player="external", loops=2))
    with pytest.raises(ParamError, match="'nodes' = 'all'"):
        _params(bag, tmp_path, nodes="all")
