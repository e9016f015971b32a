"""Typed records from JSON objects: a field-by-field reader whose errors name the file, the field's
path, what was expected and the fix, and the dataclass -> JSON conversion back.

Used by :mod:`mtc_perception.bundle` (bundle.json); standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

OMIT_NONE = {"omit_none": True}  # dataclass field metadata: left out of to_dict() while None


def show(v: object) -> str:
    """A JSON rendering of a value for an error message (``null``, ``"vehicle"``), cut at 60 characters."""
    try:
        text = json.dumps(v)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def is_number(v: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _plain(v: object) -> object:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return to_dict(v)
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass tree -> plain JSON data (tuples as lists; ``OMIT_NONE`` fields dropped while None)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None and f.metadata.get("omit_none"):
            continue
        out[f.name] = _plain(v)
    return out


class ObjectReader:
    """One JSON object, read field by field. ``path``: the object's field path (``""`` at the top);
    ``where``: the file, named in every error; ``known``: its field names (others are an error);
    ``error``: the exception raised; ``fix``: how to repair the file, appended to every message."""

    def __init__(
        self, data: object, path: str, where: str, known: tuple[str, ...], error: type[Exception], fix: str
    ) -> None:
        self.path, self.where, self.known, self.error, self.fix = path, where, known, error, fix
        if not isinstance(data, dict):
            self.fail("", "a JSON object", data)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise error(
                f"{where}: unknown field(s) {unknown} in {path or 'the top level'}; expected only {list(known)}: "
                f"remove them or {fix}"
            )
        self.d: dict[str, Any] = data

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path and key else (key or self.path)

    def fail(self, key: str, expected: str, got: object) -> NoReturn:
        what = self.name(key) or "the top level"
        raise self.error(f"{self.where}: {what} must be {expected}, got {show(got)}; fix it or {self.fix}")

    def get(self, key: str, required: bool) -> Any:
        if key not in self.d:
            if required:
                raise self.error(f"{self.where}: missing field {self.name(key)!r}; {self.fix}")
            return None
        return self.d[key]

    def sub(self, key: str, known: tuple[str, ...], required: bool = True) -> ObjectReader | None:
        """The reader of the object in field ``key`` (None where optional and absent or null)."""
        v = self.get(key, required)
        if v is None and not required:
            return None
        return ObjectReader(v, self.name(key), self.where, known, self.error, self.fix)

    # -- typed fields: None only where optional and absent / null --------------------------------
    def text(self, key: str, required: bool = True, choices: tuple[str, ...] = ()) -> Any:
        v = self.get(key, required)
        if v is None and not required:
            return None
        if not isinstance(v, str) or not v or (choices and v not in choices):
            self.fail(key, f"one of {list(choices)}" if choices else "a non-empty string", v)
        return v

    def integer(self, key: str, required: bool = True, low: int = 1, high: int | None = None) -> Any:
        v = self.get(key, required)
        if v is None and not required:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            what = "a positive integer" if low == 1 and high is None else f"an integer in [{low}, {high or 'inf'}]"
            self.fail(key, what, v)
        return v

    def number(self, key: str, required: bool = True, positive: bool = False) -> Any:
        v = self.get(key, required)
        if v is None and not required:
            return None
        if not is_number(v) or (positive and v <= 0):
            self.fail(key, "a positive number" if positive else "a finite number", v)
        return float(v)

    def flag(self, key: str, default: bool) -> bool:
        v = self.get(key, False)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.fail(key, "true or false", v)
        return v

    def mapping(self, key: str) -> Any:
        """An optional JSON object kept as it is (free-form reports)."""
        v = self.get(key, False)
        if v is not None and not isinstance(v, dict):
            self.fail(key, "a JSON object or null", v)
        return v

    def numbers(self, key: str, n: int | None = None, positive: bool = False) -> tuple[float, ...]:
        """A list of ``n`` numbers (any non-empty list without ``n``), each > 0 with ``positive``."""
        v = self.get(key, True)
        ok = isinstance(v, list) and (len(v) == n if n else len(v) > 0)
        if not ok or not all(is_number(x) and (x > 0 or not positive) for x in v):
            what = f"a list of {n} numbers" if n else "a non-empty list of numbers"
            self.fail(key, what + (", each > 0" if positive else ""), v)
        return tuple(float(x) for x in v)
