"""Benchmarks: bundles side by side on frames (engines.py, ``mtc bench-engines``) and the rosbag
replay benchmark (replay.py, ``mtc bench``) with its report (report.py: ReportBuilder, shared with a
live ROS benchmark node; plots.py)."""
