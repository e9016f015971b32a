"""Every test module that imports an optional package at module level declares it first with
``pytest.importorskip``, in a form test/conftest.py recognises, so a machine without the package
(a ROS 2 machine under colcon test, the numpy-1.x run without torch) skips that module with its
reason instead of failing or ending the collection."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from import_guards import needed_modules

TESTS = Path(__file__).resolve().parents[1]
# optional package -> the package whose guard covers it (compress needs torch)
OPTIONAL = {
    "torch": "torch",
    "torch_pruning": "torch",
    "compress": "torch",
    "onnxruntime": "onnxruntime",
    "rosbags": "rosbags",
    "rclpy": "rclpy",
    "launch_testing": "launch_testing",
    "launch_testing_ros": "launch_testing",
    "matplotlib": "matplotlib",
    "pycocotools": "pycocotools",
}


def _module_level_imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_recognises_every_form() -> None:
    src = (
        'R = "needs ROS"\n'
        'pytest.importorskip("a", reason="one line")\n'
        'pytest.importorskip(\n    "b",\n    reason="split "\n    "over lines",\n)\n'
        'c = pytest.importorskip("c", reason=R)\n'
        'pytest.importorskip("d.e")\n'
        'def f():\n    pytest.importorskip("inside")\n'
    )
    assert needed_modules(src) == [
        ("a", "one line"),
        ("b", "split over lines"),
        ("c", "needs ROS"),
        ("d.e", "needs d.e"),
    ]


@pytest.mark.parametrize("path", sorted(TESTS.rglob("test_*.py")), ids=lambda p: p.relative_to(TESTS).as_posix())
def test_optional_imports_are_guarded(path: Path) -> None:
    src = path.read_text()
    guarded = {m.split(".")[0] for m, _ in needed_modules(src)}
    unguarded = sorted(
        m for m in _module_level_imports(ast.parse(src)) if m in OPTIONAL and OPTIONAL[m] not in guarded | {m}
    )
    assert not unguarded, f"{path.name} imports {unguarded} at module level without pytest.importorskip of it first"
