"""Frozen dataclasses from YAML / dicts, with errors that name the file and the key.

YAML is read with :class:`BoundedLoader` (``yaml.SafeLoader`` that refuses a document whose aliases
expand to more than :data:`MAX_YAML_NODES` nodes, or refer to themselves), and every error shows a value
through :func:`show` (its repr cut at :data:`MAX_SHOWN` characters), so a crafted file can neither
exhaust memory nor flood the message."""

from __future__ import annotations

import dataclasses
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

MAX_YAML_NODES = 100_000  # nodes of a YAML document with every alias expanded (configs here have < 1,000)
MAX_SHOWN = 200  # characters of a value's repr in an error message


def show(value: Any) -> str:
    """``repr(value)`` for an error message, cut at :data:`MAX_SHOWN` characters."""
    r = reprlib.Repr()  # attributes, not keywords: Python 3.10 and 3.11
    r.maxstring = r.maxother = MAX_SHOWN
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 20
    r.maxlevel = 4
    text = r.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts the nodes of each document with its aliases expanded (each
    node counted once per place it appears) before anything is constructed; more than
    :data:`MAX_YAML_NODES`, or an alias inside its own anchor, is a ``yaml.YAMLError``."""

    def compose_document(self) -> Any:
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def size(n: Any) -> int:
            key = id(n)
            if key in sizes:
                if sizes[key] < 0:
                    raise yaml.YAMLError("an alias refers to the node that contains it (a recursive anchor)")
                return sizes[key]
            sizes[key] = -1
            total = 1
            if isinstance(n, yaml.SequenceNode):
                children = n.value
            elif isinstance(n, yaml.MappingNode):
                children = [x for pair in n.value for x in pair]
            else:
                children = []
            for c in children:
                total += size(c)
                if total > MAX_YAML_NODES:
                    raise yaml.YAMLError(
                        f"its aliases expand to more than {MAX_YAML_NODES} nodes (an alias bomb?); "
                        "write the values out or use fewer aliases"
                    )
            sizes[key] = total
            return total

        if node is not None:
            size(node)
        return node


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
