"""The machine a figure was measured on: one description for every report and benchmark."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# the libraries whose versions a report records, when the process has imported them
REPORTED_MODULES = ("numpy", "cv2", "onnxruntime", "tensorrt", "torch", "torch_pruning", "rosbags")


def cpu_name() -> str:
    """'AMD EPYC 9B14, 2 logical CPUs': the CPU model (from /proc/cpuinfo where there is one) and the core count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs"


def gpu_names() -> str | None:
    """The GPUs nvidia-smi lists (name, driver), or None without one."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or None


def library_versions() -> dict[str, str]:
    """Python and the versions of the reported libraries this process has imported."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for mod in REPORTED_MODULES:
        if mod in sys.modules:
            try:
                versions[mod] = str(getattr(sys.modules[mod], "__version__", None) or metadata.version(mod))
            except metadata.PackageNotFoundError:
                versions[mod] = "?"
    return versions


def host_info() -> dict[str, Any]:
    """Host name, platform, CPU, GPU and library versions (the `meta` of every report)."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "gpu": gpu_names(),
        "versions": library_versions(),
    }
