"""The camera subscription's QoS, as plain values (the node maps them to rclpy's policies)."""

from __future__ import annotations

from typing import Any

from .params import ParamError


def qos_settings(reliability: str) -> dict[str, Any]:
    """The camera subscription's QoS: keep-last 1 (the newest frame is all the node wants), volatile,
    best effort by default (sensor-data QoS, matches camera drivers; a reliable subscriber would not
    match a best-effort publisher), reliable on request."""
    if reliability not in ("best_effort", "reliable"):
        raise ParamError(f"reliability {reliability!r}: expected best_effort or reliable")
    return {"history": "keep_last", "depth": 1, "reliability": reliability, "durability": "volatile"}
