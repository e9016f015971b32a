"""Refuse a ``model.pt2`` (a torch.export archive) that could run code when torch loads it.

``torch.export.load`` runs code from an archive in several places (torch 2.13,
``torch/export/pt2_archive/_package.py`` and ``torch/_export/serde/serialize.py``): a weight or
tensor constant whose payload config says ``use_pickle`` is read with ``torch.load(weights_only=False)``;
``custom_obj_*`` / ``opaque_obj_*`` constants go through ``torch._C._pickle_load_obj`` / ``pickle.loads``;
legacy ``data/weights/<model>.pt`` files and the pre-2.8 zip layout are unpickled; the sample inputs are
unpickled with a fallback to ``weights_only=False``; ``data/aotinductor/`` loads a compiled shared library;
symbolic shapes (``expr_str``) are parsed by ``sympy.sympify`` (Python ``eval``); ``guards_code`` is
compiled into a Python function by ``program.module()``; and node targets may name any ``torch.*`` callable.

:func:`check_program` reads the archive with torch's own zip reader (so it sees what the loader sees) and
accepts only what an honest export of this project contains: the listed members, raw (non-pickled) tensor
payloads, sample inputs readable with ``weights_only=True``, no symbolic expressions, no guards code, ATen
operators and ``getitem`` only, names of letters, digits, ``_`` and ``.`` (FX writes parameter and
buffer names into the Python source it generates), no control characters that could end a comment there.
:func:`no_unpickling` is the second line: while the program loads, ``torch.load`` is forced to
``weights_only=True`` and the pickle entry points the loader uses raise, so a path this check missed
fails instead of running a payload.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtc_perception.bundle import BundleError

MODEL = "model"  # torch.export.save's model name
FIXED_MEMBERS = {
    "archive_format",
    "archive_version",
    "byteorder",
    ".data/version",
    ".data/serialization_id",
    f"models/{MODEL}.json",
    f"data/weights/{MODEL}_weights_config.json",
    f"data/constants/{MODEL}_constants_config.json",
    f"data/sample_inputs/{MODEL}.pt",
}
WEIGHT = re.compile(r"weight_[0-9]+")
CONSTANT = re.compile(r"tensor_[0-9]+")
ALLOWED_TARGETS = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+|_operator\.getitem")
NAME = re.compile(r"[A-Za-z0-9_.]*")  # node, parameter, buffer and constant names (FX pastes them into code)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")
MAX_JSON = 64 << 20  # a model.json or payload config larger than this is refused unread


class _Refused(Exception):
    """Raised inside torch's loader when it tries to unpickle (never a RuntimeError: torch.export.load
    would catch that and retry the legacy, pickled layout)."""


def _refuse(path: Path, found: str, fix: str) -> BundleError:
    return BundleError(f"{path}: refused to load the torch program: {found}; {fix}")


def _json(reader: Any, name: str, path: Path, fix: str) -> Any:
    size = reader.archive_file.get_record_size(name)
    if size > MAX_JSON:
        raise _refuse(path, f"archive member {name} is {size} bytes (more than {MAX_JSON})", fix)
    try:
        return json.loads(reader.read_string(name))
    except (ValueError, UnicodeDecodeError) as e:
        raise _refuse(path, f"archive member {name} is not valid JSON ({e})", fix) from e


def _payloads(
    cfg: Any, kind: str, pattern: re.Pattern[str], directory: str, members: set[str], path: Path, fix: str
) -> None:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("config"), dict) or set(cfg) != {"config"}:
        raise _refuse(path, f"the {kind} config is not a JSON object {{'config': {{...}}}}", fix)
    for fqn, meta in cfg["config"].items():
        if not NAME.fullmatch(fqn):
            raise _refuse(path, f"{kind} name {fqn[:80]!r} has characters other than letters, digits, _ and .", fix)
        name = meta.get("path_name") if isinstance(meta, dict) else None
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise _refuse(path, f"{kind} {str(fqn)[:80]!r} is stored with pickle (use_pickle is not false)", fix)
        if not isinstance(name, str) or not pattern.fullmatch(name):
            raise _refuse(
                path, f"{kind} {str(fqn)[:80]!r} is stored as {str(name)[:80]!r} (a pickled or opaque object)", fix
            )
        if directory + name not in members or not isinstance(meta.get("tensor_meta"), dict):
            raise _refuse(path, f"{kind} {str(fqn)[:80]!r} names {name!r}, which the archive lacks", fix)


def _walk_program(node: Any, path: Path, fix: str, key: str = "") -> None:
    """Every value of models/model.json: no symbolic expressions, only ATen targets, no control characters."""
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(k, str) or CONTROL.search(k) or "\n" in k:
                raise _refuse(path, f"model.json has the key {str(k)[:80]!r} (control characters)", fix)
            if k in ("expr_str", "as_expr", "as_custom_obj", "as_graph") and v is not None:
                raise _refuse(path, f"model.json has {k!r} (symbolic shapes, custom objects or subgraphs)", fix)
            if (k in ("name", "fqn") or k.endswith("_name")) and isinstance(v, str) and not NAME.fullmatch(v):
                raise _refuse(path, f"model.json has the {k} {v[:80]!r} (only letters, digits, _ and .)", fix)
            if k == "target" and isinstance(v, str) and not ALLOWED_TARGETS.fullmatch(v):
                raise _refuse(path, f"model.json calls {v[:80]!r} (only ATen operators are accepted)", fix)
            _walk_program(v, path, fix, k)
    elif isinstance(node, list):
        for v in node:
            _walk_program(v, path, fix, key)
    elif isinstance(node, str) and (CONTROL.search(node) or ("\n" in node and key != "stack_trace")):
        raise _refuse(path, f"model.json field {key!r} holds control characters ({node[:60]!r})", fix)


def check_program(data: bytes, path: Path, fix: str) -> None:
    """Raise :class:`BundleError` naming ``path``, what was found and ``fix`` unless the archive ``data``
    holds nothing that torch would unpickle or execute (see the module docstring)."""
    import torch
    from torch.export.pt2_archive._package import PT2ArchiveReader

    try:
        reader = PT2ArchiveReader(io.BytesIO(data))
        members = set(reader.get_file_names())
    except Exception as e:  # any failure of the zip reader is a refused file
        raise _refuse(path, f"not a torch.export archive ({str(e)[:200]})", fix) from e
    odd = sorted(
        m
        for m in members - FIXED_MEMBERS
        if not (
            (m.startswith("data/weights/") and WEIGHT.fullmatch(m[len("data/weights/") :]))
            or (m.startswith("data/constants/") and CONSTANT.fullmatch(m[len("data/constants/") :]))
        )
    )
    if odd:
        shown = ", ".join(repr(m[:80]) for m in odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
        raise _refuse(path, f"the archive holds members an export does not write ({shown})", fix)
    missing = sorted(FIXED_MEMBERS - members - {".data/serialization_id"})
    if missing:
        raise _refuse(path, f"the archive lacks {missing}", fix)
    _payloads(
        _json(reader, f"data/weights/{MODEL}_weights_config.json", path, fix),
        "weight",
        WEIGHT,
        "data/weights/",
        members,
        path,
        fix,
    )
    _payloads(
        _json(reader, f"data/constants/{MODEL}_constants_config.json", path, fix),
        "constant",
        CONSTANT,
        "data/constants/",
        members,
        path,
        fix,
    )
    program = _json(reader, f"models/{MODEL}.json", path, fix)
    if not isinstance(program, dict):
        raise _refuse(path, "models/model.json is not a JSON object", fix)
    if program.get("guards_code"):
        raise _refuse(path, "models/model.json carries guards_code (Python source torch would compile)", fix)
    if program.get("range_constraints"):
        raise _refuse(path, "models/model.json has range constraints (symbolic shapes; exports here are static)", fix)
    _walk_program(program, path, fix)
    try:
        torch.load(io.BytesIO(reader.read_bytes(f"data/sample_inputs/{MODEL}.pt")), weights_only=True)
    except Exception as e:  # what the safe unpickler refuses, torch would retry unsafely
        raise _refuse(path, f"the sample inputs are not plain tensors ({str(e)[:200]})", fix) from e


@contextlib.contextmanager
def no_unpickling(path: Path, fix: str) -> Iterator[None]:
    """While the program loads: ``torch.load`` only with ``weights_only=True``; the loader's
    ``pickle.loads`` and ``torch._C._pickle_load_obj`` raise."""
    import torch
    import torch.export.pt2_archive._package as package

    real_load, real_obj, real_pickle = torch.load, torch._C._pickle_load_obj, package.pickle

    def safe_load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("weights_only") is False:
            raise _Refused("torch.load(weights_only=False)")
        kwargs["weights_only"] = True
        return real_load(f, *args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _Refused("unpickling a custom or opaque object")

    class NoPickle:
        loads = load = staticmethod(refuse)

    torch.load, torch._C._pickle_load_obj, package.pickle = safe_load, refuse, NoPickle  # type: ignore[assignment]
    try:
        yield
    except _Refused as e:
        raise _refuse(path, f"torch tried {e} while loading it", fix) from None
    finally:
        torch.load, torch._C._pickle_load_obj, package.pickle = real_load, real_obj, real_pickle
