"""The peak-throughput search of a perception node on ROS 2, ros2_benchmark's way: the highest
camera rate at which it misses fewer than 5 % of the frames (:func:`~mtc_perception.bench.r2b.
peak_throughput`: a binary search, then a linear scan). Each probe is one run of
``benchmark.launch.py`` with one node (``nodes:=``) at a fixed rate (``fixed_rate:=``), looped to
last about ``--seconds``; its report's ``ros2_benchmark`` section decides::

    python -m mtc_perception.bench.peak --bag B --teacher-bundle T --student-bundle S \\
        --node student --lower 2 --upper 60 --seconds 10 --out runs/bench/peak_student \\
        -- dds_config:=cyclonedds.xml reliability:=reliable

Writes ``<out>/peak.json`` (``BenchmarkMetadata.PEAK_THROUGHPUT_PREDICTION`` and every probe) and
each probe's report under ``<out>/<rate>hz/``. Needs a sourced ROS 2 with this package built.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..bags import BagReader
from .r2b import PeakSearch, peak_throughput
from .recording import choose_topic


def probe_command(args: argparse.Namespace, rate: float, loops: int, out: Path) -> list[str]:
    """The ``ros2 launch`` command line of one probe."""
    return [
        "ros2",
        "launch",
        "mtc_perception",
        "benchmark.launch.py",
        f"bag:={args.bag}",
        f"teacher_bundle:={args.teacher_bundle}",
        f"student_bundle:={args.student_bundle}",
        f"nodes:={args.node}",
        f"fixed_rate:={rate:g}",
        f"loops:={loops}",
        f"out:={out}",
        *args.launch_args,
    ]


def frames_per_pass(bag: str, topic: str | None, distro: str) -> int:
    with BagReader(bag, distro) as reader:
        return int(reader.topics[choose_topic(reader, topic)].count or 0)


def run(args: argparse.Namespace) -> PeakSearch:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_pass = frames_per_pass(args.bag, args.topic, args.distro)
    if per_pass == 0:
        raise SystemExit(f"{args.bag}: the camera topic has no frames")

    def probe(rate: float) -> dict[str, Any]:
        loops = max(1, math.ceil(args.seconds * rate / per_pass))
        d = out / f"{rate:.2f}hz"
        cmd = probe_command(args, rate, loops, d)
        print(f"probe {rate:.2f} Hz ({loops} x {per_pass} frames): {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL if args.quiet else None, timeout=args.timeout)
        report = d / "report.json"
        if not report.is_file():
            print(f"  no report at {report}: counted as not sustainable", flush=True)
            return {}
        return dict(json.loads(report.read_text())["ros2_benchmark"].get(args.node, {}))

    def show(rate: float, ok: bool, m: Any) -> None:
        sent = m.get("BasicPerformanceMetrics.NUM_FRAMES_SENT")
        missed = m.get("BasicPerformanceMetrics.NUM_MISSED_FRAMES")
        print(f"  {rate:.2f} Hz: {missed} of {sent} missed -> {'sustained' if ok else 'not sustained'}", flush=True)

    result = peak_throughput(
        probe, args.lower, args.upper, terminal_width=args.width, step=args.step, loss_fraction=0.05, on_probe=show
    )
    doc = {
        "node": args.node,
        "bag": str(Path(args.bag).resolve()),
        "seconds_per_probe": args.seconds,
        **result.as_dict(),
    }
    (out / "peak.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"peak throughput of {args.node}: {result.rate_hz:.2f} Hz {result.at_bound and '(at the ' + result.at_bound + ' bound)'}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bag", required=True)
    ap.add_argument("--teacher-bundle", required=True)
    ap.add_argument("--student-bundle", required=True)
    ap.add_argument("--node", choices=("teacher", "student"), required=True, help="the model whose peak is searched")
    ap.add_argument("--topic", default=None, help="camera topic of the bag (default: found in the bag)")
    ap.add_argument("--distro", default="jazzy", help="message definitions to read the bag with")
    ap.add_argument("--lower", type=float, default=1.0, help="lowest rate probed (Hz)")
    ap.add_argument("--upper", type=float, default=60.0, help="highest rate probed (Hz)")
    ap.add_argument("--width", type=float, default=2.0, help="binary search until the window is this wide (Hz)")
    ap.add_argument("--step", type=float, default=1.0, help="then scan upwards in this step (Hz)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each probe")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a probe's launch is abandoned")
    ap.add_argument("--quiet", action="store_true", help="hide the launch output")
    ap.add_argument("--out", required=True)
    ap.add_argument("launch_args", nargs="*", help="further benchmark.launch.py arguments (after --)")
    args = ap.parse_args(argv)
    try:
        run(args)
    except ValueError as e:  # a bad search window, an unreadable bag: say which, no traceback
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
