"""The DDS configuration the launch files hand to the nodes (``dds_config:=``), without ROS: which
file ``CYCLONEDDS_URI`` points at, and the socket receive buffer a Cyclone DDS XML asks for (the
test checks the shipped ``config/cyclonedds.xml`` holds two 1920x1080 bgr8 frames)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

#: the file shipped in share/mtc_perception/config/ (``dds_config:=cyclonedds.xml``)
SHIPPED = "cyclonedds.xml"
_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}


class DdsConfigError(ValueError):
    """A ``dds_config:=`` value that names no readable file."""


def cyclonedds_uri(value: str, config_dir: str | Path, existing: str | None = None) -> str | None:
    """``CYCLONEDDS_URI`` for ``dds_config:=value``: empty -> None (the environment is left as it is);
    a file name of the package's config directory (``cyclonedds.xml``) or a path to a file ->
    ``file://<absolute path>``, appended to ``existing`` (the environment's ``CYCLONEDDS_URI``) where
    that is set: Cyclone DDS reads a comma-separated list in order, each adding to the ones before,
    so the user's own settings (network interface, peers, multicast) stay and the shipped file only
    adds its receive buffer. Anything else is an error naming the value and the choices."""
    v = value.strip()
    if not v:
        return None
    for candidate in (Path(v).expanduser(), Path(config_dir) / v):
        if candidate.is_file():
            uri = "file://" + str(candidate.resolve())
            before = (existing or "").strip().rstrip(",")
            return f"{before},{uri}" if before and uri not in before.split(",") else (before or uri)
    raise DdsConfigError(
        f"launch argument dds_config:={value!r}: no such file (as a path, or in {config_dir}); "
        f"use dds_config:={SHIPPED} for the shipped Cyclone DDS configuration, a path to your own, "
        "or leave it empty to keep CYCLONEDDS_URI from the environment"
    )


def parse_size(text: str) -> int:
    """A Cyclone DDS memory size (``10MB``, ``8 MiB``, ``65536``) in bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a Cyclone DDS size: {text!r} (e.g. 10MB, 8MiB, 65536)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def receive_buffer_min(xml_text: str) -> int | None:
    """The ``min`` of ``Domain/Internal/SocketReceiveBufferSize`` (bytes) in a Cyclone DDS XML
    configuration, None where it is not set. Namespaces are ignored."""
    root = ET.fromstring(xml_text)
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "SocketReceiveBufferSize" and el.get("min") not in (None, "default"):
            return parse_size(str(el.get("min")))
    return None
