"""ros2_benchmark's metrics and peak-throughput search (bench.r2b), without ROS: hand-computed cases
for every metric, the search against a simulated node whose sustainable rate is known, CPU sampling."""

import math

import pytest

from mtc_perception.bench.r2b import (
    CpuSampler,
    basic_performance,
    latency_percentiles,
    node_cpu_percent,
    peak_throughput,
    sustainable,
)

B = "BasicPerformanceMetrics."


def test_basic_performance_by_hand():
    sent = {10: 0.0, 11: 0.1, 12: 0.2, 13: 0.3, 14: 0.4}  # 5 frames, 0.4 s apart end to end
    answered = {10: 0.05, 11: 0.17, 13: 0.33, 14: 0.47}  # frame 12 missed; answered out of nothing
    m = basic_performance(sent, answered)
    assert m[B + "NUM_FRAMES_SENT"] == 5 and m[B + "NUM_MISSED_FRAMES"] == 1
    assert m[B + "MEAN_PLAYBACK_FRAME_RATE"] == pytest.approx(5 / 0.4)  # r2b: N over the span, not N - 1
    assert m[B + "RECEIVED_DURATION"] == pytest.approx(420.0)
    assert m[B + "MEAN_FRAME_RATE"] == pytest.approx(4 / 0.42)
    assert m[B + "FIRST_SENT_RECEIVED_LATENCY"] == pytest.approx(50.0)
    assert m[B + "LAST_SENT_RECEIVED_LATENCY"] == pytest.approx(70.0)
    assert m[B + "FIRST_INPUT_LATENCY"] == pytest.approx(50.0) and m[B + "LAST_INPUT_LATENCY"] == pytest.approx(70.0)
    assert m[B + "MIN_LATENCY"] == pytest.approx(30.0) and m[B + "MAX_LATENCY"] == pytest.approx(70.0)
    assert m[B + "MEAN_LATENCY"] == pytest.approx((50 + 70 + 30 + 70) / 4)
    # answer gaps 120, 160, 140 ms -> |second differences| 40, 20
    assert m[B + "MAX_JITTER"] == pytest.approx(40.0) and m[B + "MIN_JITTER"] == pytest.approx(20.0)
    assert m[B + "MEAN_JITTER"] == pytest.approx(30.0) and m[B + "STD_DEV_JITTER"] == pytest.approx(10.0)
    p = latency_percentiles(sent, answered)
    assert p["latency_p50_ms"] == pytest.approx(60.0)


def test_few_answers_leave_out_what_cannot_be_computed():
    m = basic_performance({1: 0.0, 2: 0.1}, {})
    assert m == {
        B + "NUM_FRAMES_SENT": 2,
        B + "NUM_MISSED_FRAMES": 2,
        B + "MEAN_PLAYBACK_FRAME_RATE": pytest.approx(20),
    }
    m = basic_performance({1: 0.0}, {1: 0.01})
    assert B + "MEAN_FRAME_RATE" not in m and B + "MAX_JITTER" not in m and m[B + "MIN_LATENCY"] == pytest.approx(10)
    with pytest.raises(ValueError, match="never sent"):
        basic_performance({1: 0.0}, {2: 0.1})


def simulated_node(service_s: float, seconds: float = 10.0):
    """A probe: frames at ``rate`` for ``seconds`` into a node that takes ``service_s`` per frame and
    keeps only the newest waiting frame (the perception node's slot); what it answers, when."""

    def probe(rate: float) -> dict:
        n = max(int(seconds * rate), 1)
        sent = {i: i / rate for i in range(n)}
        answered, free, waiting = {}, 0.0, None
        for i in range(n + 1):
            t = sent[i] if i < n else math.inf
            while waiting is not None and free <= t:  # the node takes the newest frame when it is free
                start = max(free, sent[waiting])
                free = start + service_s
                answered[waiting] = free
                waiting = None
            if i < n:
                if free <= t:
                    free = t + service_s
                    answered[i] = free
                else:
                    waiting = i  # replaces a waiting frame: that one is missed
        return basic_performance(sent, answered)

    return probe


@pytest.mark.parametrize("service_ms", [12.0, 43.0, 95.0])
def test_peak_search_finds_the_rate_a_simulated_node_sustains(service_ms):
    probe = simulated_node(service_ms / 1e3)
    found = peak_throughput(probe, 1.0, 120.0, terminal_width=2.0, step=1.0)
    true_peak = 1e3 / service_ms  # a node that takes s per frame answers every frame up to 1/s Hz
    assert found.rate_hz <= true_peak * 1.08  # <= ceil(5 %) missed can sit a little above 1/s
    assert found.rate_hz >= true_peak - 2.0 - 1.0  # within the binary window and one linear step
    assert sustainable(probe(found.rate_hz)) and not found.probes[-1][1]  # the last probe is the one that failed
    assert found.as_dict()["BenchmarkMetadata.PEAK_THROUGHPUT_PREDICTION"] == found.rate_hz


def test_peak_search_bounds_and_arguments():
    fast = peak_throughput(simulated_node(0.001), 5.0, 30.0)
    assert fast.rate_hz == 30.0 and fast.at_bound == "upper" and len(fast.probes) == 2
    slow = peak_throughput(simulated_node(1.0), 5.0, 30.0)
    assert slow.rate_hz == 0.0 and len(slow.probes) == 1  # not even the lower bound
    with pytest.raises(ValueError, match="lower <= upper"):
        peak_throughput(simulated_node(0.01), 30.0, 5.0)
    assert not sustainable({B + "NUM_FRAMES_SENT": 100, B + "NUM_MISSED_FRAMES": 6})
    assert sustainable({B + "NUM_FRAMES_SENT": 100, B + "NUM_MISSED_FRAMES": 5})
    assert not sustainable(
        {
            B + "NUM_FRAMES_SENT": 100,
            B + "NUM_MISSED_FRAMES": 0,
            B + "MEAN_FRAME_RATE": 20,
            B + "MEAN_PLAYBACK_FRAME_RATE": 30,
        },
        rate_drop=5.0,
    )


def test_cpu_sampler_and_node_cpu():
    reads = iter([[100, 0, 100, 800, 0, 0, 0], [150, 0, 150, 900, 0, 0, 0], [200, 0, 200, 1000, 0, 0, 0]])
    s = CpuSampler(interval=0.5, read=lambda: next(reads))
    s.sample(), s.sample(), s.sample()
    m = s.metrics()
    assert m["ResourceMetrics.MEAN_OVERALL_CPU_UTILIZATION"] == pytest.approx(50.0)
    assert m["ResourceMetrics.RESOURCE_PROFILING_SAMPLING_RATE"] == 2.0
    assert CpuSampler(read=lambda: None).start().stop() == {}  # no /proc/stat: nothing, not an error
    real = CpuSampler(interval=0.05).start()
    sum(i * i for i in range(200_000))
    assert 0.0 <= real.stop().get("ResourceMetrics.MEAN_OVERALL_CPU_UTILIZATION", 0.0) <= 100.0
    assert node_cpu_percent({"cpu_s": "1.0", "monotonic_s": "10"}, {"cpu_s": "2.5", "monotonic_s": "12"}) == 75.0
    assert node_cpu_percent({}, {"cpu_s": "1"}) is None


def test_peak_driver_runs_one_launch_per_probe_and_reads_its_report(tmp_path, monkeypatch):
    """Glue only (the search itself is tested above): each probe is `ros2 launch ... nodes:= fixed_rate:=
    loops:=` long enough for --seconds, its report's ros2_benchmark section decides; here a stand-in
    for ros2 launch writes the report a node of 40 ms per frame would give."""
    import json

    from mtc_perception.bench import peak

    monkeypatch.setattr(peak, "frames_per_pass", lambda bag, topic, distro: 24)
    node = simulated_node(0.040)
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        args = dict(a.split(":=", 1) for a in cmd[4:] if ":=" in a)
        rate = float(args["fixed_rate"])
        assert int(args["loops"]) * 24 >= 10 * rate and args["nodes"] == "student" and args["reliability"] == "reliable"
        out = tmp_path / "p" / f"{rate:.2f}hz"
        out.mkdir(parents=True)
        (out / "report.json").write_text(json.dumps({"ros2_benchmark": {"student": node(rate)}}))

    monkeypatch.setattr(peak.subprocess, "run", fake_run)
    peak.main(["--bag", "b", "--teacher-bundle", "t", "--student-bundle", "s", "--node", "student", "--upper", "60",
               "--out", str(tmp_path / "p"), "--quiet", "reliability:=reliable"])  # fmt: skip
    doc = json.loads((tmp_path / "p" / "peak.json").read_text())
    assert 20.0 <= doc["BenchmarkMetadata.PEAK_THROUGHPUT_PREDICTION"] <= 27.0 and len(doc["probes"]) == len(calls)
    assert calls[0][:4] == ["ros2", "launch", "mtc_perception", "benchmark.launch.py"]


def test_peak_driver_refuses_a_bad_window_naming_it(monkeypatch, capsys):
    from mtc_perception.bench import peak

    monkeypatch.setattr(peak, "frames_per_pass", lambda bag, topic, distro: 24)
    argv = ["--bag", "b", "--teacher-bundle", "t", "--student-bundle", "s", "--node", "student"]
    with pytest.raises(SystemExit) as e:
        peak.main([*argv, "--lower", "30", "--upper", "5", "--out", "/tmp/mtc_peak_bad_window"])
    assert e.value.code == 2 and "lower=30.0, upper=5.0" in capsys.readouterr().err
