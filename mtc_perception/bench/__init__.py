"""Benchmarks: bundles side by side on frames (engines.py, ``mtc bench-engines``), the rosbag replay
benchmark (replay.py, ``mtc bench``; recording.py, output_bag.py) and the live one (live.py,
player.py: what ``benchmark_node`` does), both writing the same report (report/: ReportBuilder;
plots.py)."""
