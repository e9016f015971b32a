"""How a test module declares the optional packages it needs (read by test/conftest.py without
importing the module; see there why)."""

from __future__ import annotations

import ast
import importlib.util


def needed_modules(source: str) -> list[tuple[str, str]]:
    """(module, reason) of every module-level ``pytest.importorskip(...)`` in a test file's source."""
    tree = ast.parse(source)
    strings: dict[str, str] = {}
    found = []
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            strings.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
        if not (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "importorskip"
            and isinstance(value.func.value, ast.Name)
            and value.func.value.id == "pytest"
            and value.args
            and isinstance(value.args[0], ast.Constant)
        ):
            continue
        reason = ""
        for kw in value.keywords:
            if kw.arg == "reason":
                if isinstance(kw.value, ast.Constant):
                    reason = str(kw.value.value)
                elif isinstance(kw.value, ast.Name):
                    reason = strings.get(kw.value.id, "")
        found.append((str(value.args[0].value), reason or f"needs {value.args[0].value}"))
    return found


def missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return True
