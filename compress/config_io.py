"""Frozen dataclasses from YAML / dicts, with errors that name the file and the key.

YAML is read with :class:`BoundedLoader` (``yaml.SafeLoader`` that refuses a document whose aliases
expand to more than :data:`MAX_YAML_NODES` nodes, or refer to themselves), and every error shows a value
through :func:`show` (its repr cut at :data:`MAX_SHOWN` characters), so a crafted file can neither
exhaust memory nor flood the message."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mtc_perception.safe_yaml import MAX_SHOWN, MAX_YAML_NODES, BoundedLoader, show

__all__ = ["MAX_SHOWN", "MAX_YAML_NODES", "BoundedLoader", "show"]  # (they live in the runtime: both halves read YAML)

T = TypeVar("T")


class ConfigFileError(ValueError):
    """A config file or override that does not fit its dataclass."""


class FieldError(ConfigFileError):
    """A dataclass field whose value is out of range, raised by its ``__post_init__``:
    :func:`from_dict` prefixes the file and the key path (``recipe.yaml.ablation.seeds: ...``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        for a in non_none:
            try:
                return _coerce(a, value, where)
            except (TypeError, ValueError):
                continue
        raise ConfigFileError(f"{where}: {show(value)} does not fit {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            if isinstance(value, str) and "x" in value:  # "320x192"
                value = [int(v) for v in value.lower().split("x")]
            else:
                raise ConfigFileError(f"{where}: expected a list, got {show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if args and len(args) != len(value):
            raise ConfigFileError(f"{where}: expected {len(args)} values, got {show(list(value))}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value)) if args else tuple(value)
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigFileError(f"{where}: expected a number, got {show(value)}")
        try:
            v = float(value)
        except ValueError as e:
            raise ConfigFileError(f"{where}: expected a number, got {show(value)}") from e
        if tp is int:
            if v != int(v):
                raise ConfigFileError(f"{where}: expected an integer, got {show(value)}")
            return int(v)
        return v
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ConfigFileError(f"{where}: expected true/false, got {show(value)}")
    if tp is str:
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error naming the key."""
    if not isinstance(data, dict):
        raise ConfigFileError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigFileError(
            f"{where}: unknown key(s) {show(unknown)} for {cls.__name__}; known keys: {sorted(fields)}"
        )
    kw = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kw)
    except TypeError as e:
        raise ConfigFileError(f"{where}: {str(e)[:MAX_SHOWN]}") from e
    except ValueError as e:  # a __post_init__ check; ``e.field`` (when set) names the key
        name = getattr(e, "field", None)
        text = (e.message if isinstance(e, FieldError) else str(e))[: MAX_SHOWN * 2]
        raise ConfigFileError(f"{where}.{name}: {text}" if name else f"{where}: {text}") from e


def read_yaml(path: str | Path, what: str = "config file", hint: str = "") -> dict[str, Any]:
    """The mapping in a YAML file, or :class:`ConfigFileError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileError(f"{what} {path} does not exist{hint}")
    try:
        data = yaml.load(path.read_text(), Loader=BoundedLoader) or {}  # a SafeLoader
    except yaml.YAMLError as e:
        raise ConfigFileError(f"{path}: not valid YAML: {str(e)[:MAX_SHOWN]}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def load_yaml(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Load ``cls`` from a YAML file, then apply ``overrides`` (already-parsed values win)."""
    data = read_yaml(path)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(cls, data, str(path))


def to_dict(obj: Any) -> Any:
    """Plain-data view of a (nested) dataclass, with tuples as lists (YAML/JSON/torch-safe)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
