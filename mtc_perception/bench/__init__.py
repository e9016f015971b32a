"""Benchmarks: engines side by side (engines.py); the rosbag replay benchmark arrives with issue 6."""
