"""Every test module that imports an optional package at module level declares it first with
``pytest.importorskip``, in a form test/conftest.py recognises, so a machine without the package
(a ROS 2 machine under colcon test, the numpy-1.x run without torch) skips that module with its
reason instead of failing or ending the collection."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from import_guards import REQUIRED, all_importorskips, guard, needed_modules

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


@pytest.mark.parametrize("path", sorted(TESTS.rglob("test_*.py")), ids=lambda p: p.relative_to(TESTS).as_posix())
def test_every_skip_says_why_and_no_required_package_is_skipped_inside_a_test(path: Path) -> None:
    """A reasonless skip hides what a machine lacks; a required package (onnxruntime, rosbags) skipped
    inside a test would let ``colcon test`` pass without it (only module-level guards fail loudly)."""
    for mod, reason, top in all_importorskips(path.read_text()):
        assert reason, f"{path.name}: pytest.importorskip({mod!r}) has no reason="
        assert top or mod.split(".")[0] not in REQUIRED, (
            f"{path.name}: pytest.importorskip({mod!r}) inside a test skips a required package; "
            "declare it at module level (a failure where it is missing) or import it plainly"
        )


SRC = 'import pytest\npytest.importorskip("rosbags", reason="bags")\npytest.importorskip("torch", reason="offline half")\n'


def test_a_missing_required_package_fails_with_the_install_command() -> None:
    kind, text = guard(SRC, "test_x.py", is_missing=lambda m: True)
    assert kind == "fail"
    assert "'rosbags'" in text and "test_x.py" in text and "--break-system-packages rosbags" in text
    assert "docs/ROS.md" in text


def test_a_missing_optional_package_skips_with_its_reason() -> None:
    assert guard(SRC, is_missing=lambda m: m == "torch") == ("skip", "offline half")
    assert guard(SRC, is_missing=lambda m: False) is None


def test_the_required_packages_are_the_runtime_requirements_declared_for_ros_users() -> None:
    """What the guard enforces is what setup.py's `ros` extra and docs/ROS.md tell a user to install."""
    root = TESTS.parent
    setup = (root / "setup.py").read_text()
    ros_extra = re.search(r'"ros": \[([^\]]*)\]', setup)
    assert ros_extra, "setup.py has no `ros` extra"
    assert set(REQUIRED) <= {re.split(r"[<>=]", s.strip().strip('"'))[0] for s in ros_extra.group(1).split(",")}
    doc = (root / "docs" / "ROS.md").read_text()
    for mod in REQUIRED:
        assert "--break-system-packages" in doc and mod in doc, mod


def test_colcon_collects_a_failure_not_an_empty_pass(tmp_path: Path) -> None:
    """The conftest hook end to end, in a child pytest: a module declaring a required package that is
    absent (hidden here by a plugin) is one failed test and exit 1, its message naming the package;
    an absent optional package is a skip (pytest's exit 5: nothing ran)."""
    for name, mod, code, word in (
        ("test_req.py", "rosbags", 1, "required dependency missing: 'rosbags'"),
        ("test_opt.py", "no_such_optional_pkg_xyz", 5, "1 skipped"),
    ):
        d = tmp_path / name[:-3]
        d.mkdir()
        shutil.copy(TESTS / "conftest.py", d / "conftest.py")
        shutil.copy(TESTS / "import_guards.py", d / "import_guards.py")
        (d / "hide_rosbags.py").write_text("import sys\n\nsys.modules['rosbags'] = None  # find_spec -> None\n")
        (d / name).write_text(
            f'import pytest\n\npytest.importorskip("{mod}", reason="r")\n\n\ndef test_x():\n    pass\n'
        )
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "hide_rosbags", "-rA", name],
            cwd=d,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(d), str(TESTS.parent)])},
        )
        assert r.returncode == code, r.stdout + r.stderr
        assert word in r.stdout, r.stdout
