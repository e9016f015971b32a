"""Model names of the benchmarks: ``[NAME=]BUNDLE_DIR`` on the command line (``mtc bench --student``,
``mtc bench-engines --bundle``) -> a name per bundle, checked once for both commands.

A name keys the model in the reports (``models.<name>``, ``agreements.<name>``,
``ground_truth.<name>``), prefixes its ``frames.csv`` columns (``<name>_status``) and is the
namespace of its topics in ``mtc bench --output-bag`` (``/<name>/detections``); so a name is a ROS
name token (a letter, then letters, digits and ``_``), not ``matching`` or ``conventions`` (keys of
``ground_truth``), and two models never share one. Without ``NAME=`` the name is the bundle
directory's name, made into such a token (``fast-int8`` -> ``fast_int8``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["RESERVED", "ModelNameError", "check_names", "default_name", "parse_model_spec"]

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
#: keys of the report's ``ground_truth`` section besides the models
RESERVED = ("matching", "conventions")


class ModelNameError(ValueError):
    """A model name that is not a token, is reserved, or is given twice (the message says which)."""


def parse_model_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=DIR`` -> (NAME, DIR); ``DIR`` -> (None, DIR). The text before the first ``=`` is a name
    unless it holds a path separator (``runs/a=b`` is a directory); the name is checked by
    :func:`check_names`."""
    name, sep, path = spec.partition("=")
    if not sep or not name or "/" in name or "\\" in name:
        return None, spec
    if not path:
        raise ModelNameError(f"{spec!r}: no bundle directory after {name}=; write NAME=BUNDLE_DIR or BUNDLE_DIR")
    return name, path


def default_name(path: str | Path) -> str:
    """The bundle directory's name as a token: other characters become ``_``, a leading digit or
    ``_`` gets an ``m`` in front (``2024-int8`` -> ``m2024_int8``)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", Path(str(path).rstrip("/\\")).name) or "model"
    return base if base[0].isalpha() else f"m{base}"


def check_names(names: Iterable[str], what: str = "model") -> None:
    """Every name a token, none reserved, none twice; else a :class:`ModelNameError` naming them and
    the fix (``NAME=DIR``)."""
    names = list(names)
    bad = [n for n in names if not _TOKEN.match(n)]
    if bad:
        raise ModelNameError(
            f"{what} names {bad} are not valid: a name starts with a letter and has only letters, digits and _ "
            "(it becomes a topic namespace and a column prefix); write NAME=BUNDLE_DIR"
        )
    reserved = [n for n in names if n in RESERVED]
    if reserved:
        raise ModelNameError(f"{what} names {reserved} are reserved (report keys {list(RESERVED)}); choose another")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelNameError(
            f"{what} names {dup} are given more than once (in {names}); name each bundle: NAME=BUNDLE_DIR "
            "(a name defaults to the bundle directory's name)"
        )
