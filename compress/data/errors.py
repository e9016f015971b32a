"""Exceptions raised for bad input data."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """Bad or inconsistent dataset input (missing file, corrupt image, unknown category, ...).

    The message names the offending file, what was expected and how to fix it.
    """


class DataConfigError(ValueError):
    """A data configuration value is invalid (unknown mapping, missing required path, ...)."""


__all__ += ["DataConfigError"]
