"""How a test module declares the optional packages it needs (read by test/conftest.py without
importing the module; see there why), and which of them are not optional at all.

A *required* package (:data:`REQUIRED`) is one the installed ROS package needs at run time: on a
machine without it the test modules that declare it must not be skipped (``colcon test`` would then
pass having run nothing), so the guard turns its absence into one failing test per module, whose
message names the package and the install command."""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Callable

#: install command of the runtime requirements that are pip-installed (no rosdep key known to us);
#: docs/ROS.md, "Install", explains the PEP 668 form
PIP_ON_ROS = "python3 -m pip install --user --break-system-packages"
#: module -> (what needs it, install command)
REQUIRED: dict[str, tuple[str, str]] = {
    "onnxruntime": (
        "the perception node's default inference backend (backend:=auto without TensorRT)",
        f"{PIP_ON_ROS} onnxruntime  (or: pip install onnxruntime in this project's virtualenv)",
    ),
    "rosbags": (
        "benchmark.launch.py / benchmark_node (reads and plays the recording) and the bag tools",
        f"{PIP_ON_ROS} rosbags  (or: pip install rosbags in this project's virtualenv)",
    ),
}


def _importorskip_calls(nodes: list[ast.stmt] | list[ast.AST]) -> list[tuple[ast.Call, bool]]:
    """(call, at module level) of every ``pytest.importorskip("...")`` call."""
    top = {id(n.value) for n in nodes if isinstance(n, (ast.Expr, ast.Assign))}
    out = []
    for node in ast.walk(ast.Module(body=list(nodes), type_ignores=[])):  # type: ignore[arg-type]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "importorskip"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "pytest"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            out.append((node, id(node) in top))
    return out


def _reason(call: ast.Call, strings: dict[str, str]) -> str:
    for kw in call.keywords:
        if kw.arg == "reason":
            if isinstance(kw.value, ast.Constant):
                return str(kw.value.value)
            if isinstance(kw.value, ast.Name):
                return strings.get(kw.value.id, "")
    return ""


def _module_strings(tree: ast.Module) -> dict[str, str]:
    strings: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            strings.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return strings


def needed_modules(source: str) -> list[tuple[str, str]]:
    """(module, reason) of every module-level ``pytest.importorskip(...)`` in a test file's source."""
    tree = ast.parse(source)
    strings = _module_strings(tree)
    return [
        (str(call.args[0].value), _reason(call, strings) or f"needs {call.args[0].value}")
        for call, top in _importorskip_calls(tree.body)
        if top
    ]


def all_importorskips(source: str) -> list[tuple[str, str, bool]]:
    """(module, reason as written — empty when there is none, at module level) of every
    ``pytest.importorskip`` in the source, also those inside functions."""
    tree = ast.parse(source)
    strings = _module_strings(tree)
    return [(str(call.args[0].value), _reason(call, strings), top) for call, top in _importorskip_calls(tree.body)]


def requirement_message(module: str, test_file: str = "") -> str:
    """The failure text of a missing required package: what needs it and how to install it."""
    why, install = REQUIRED[module]
    where = f"{test_file} needs it; " if test_file else ""
    return (
        f"required dependency missing: {module!r} ({why}). {where}a ROS 2 install of mtc_perception needs it too, "
        f"so this is a failure, not a skip. Install it: {install} — see docs/ROS.md, 'Install'."
    )


def missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return True


def guard(source: str, test_file: str = "", is_missing: Callable[[str], bool] = missing) -> tuple[str, str] | None:
    """What becomes of a test module whose declared packages are not all installed:
    ``("fail", message)`` for a missing :data:`REQUIRED` package (checked first), ``("skip", reason)``
    for a missing optional one, None when everything it declares is there."""
    declared = needed_modules(source)
    for mod, _ in declared:
        if mod.split(".")[0] in REQUIRED and is_missing(mod):
            return "fail", requirement_message(mod.split(".")[0], test_file)
    for mod, reason in declared:
        if is_missing(mod):
            return "skip", reason
    return None
