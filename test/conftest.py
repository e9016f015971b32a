"""Shared fixtures: a tiny synthroad dataset generated once per test session."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the repository (for `compress`, `scripts`) and this folder (for the shared `helpers`, `conftest_data`
# of test/compress and test/runtime)
for _p in (ROOT, Path(__file__).resolve().parent):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from import_guards import guard

# A test module that needs an optional package says so at module level:
#     pytest.importorskip("torch", reason="...")      (the reason a literal or a module-level string constant)
# Where that package is missing, the module is reported as skipped with that reason without being
# imported. Importing it would raise the skip inside launch_testing's pytest plugin (on a ROS 2
# machine it imports every test module from its collection hook), and a skip raised there ends the
# collection of the whole session instead of one module. The calls are found by parsing the file, so
# any formatting of them (one line or several, a reason split over several strings) is recognised.
# A package the installed nodes need (import_guards.REQUIRED: onnxruntime, rosbags) is declared the
# same way, but its absence is one *failing* test per module, naming the package and its install
# command: `colcon test` on a machine without it must fail, never pass having run nothing.


class _Unavailable(pytest.Module):
    skip_reason = ""

    def collect(self):
        raise pytest.skip.Exception(self.skip_reason, allow_module_level=True)


class _RequirementMissing(pytest.Item):
    message = ""

    def runtest(self) -> None:
        pytest.fail(self.message, pytrace=False)

    def reportinfo(self):
        return self.path, None, self.name


class _Unrunnable(pytest.Module):
    message = ""

    def collect(self):
        item = _RequirementMissing.from_parent(self, name="required_dependency_missing")
        item.message = self.message
        return [item]


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    verdict = guard(Path(module_path).read_text(), Path(module_path).name)
    if verdict is None:
        return None
    kind, text = verdict
    if kind == "fail":
        failing = _Unrunnable.from_parent(parent, path=Path(module_path))
        failing.message = text
        return failing
    node = _Unavailable.from_parent(parent, path=Path(module_path))
    node.skip_reason = text
    return node


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train + 8 val synthroad images at 320x180 (seed 7)."""
    from compress.data.synthroad import synthesize

    root = tmp_path_factory.mktemp("synthroad")
    synthesize(root, n_train=16, n_val=8, seed=7, size=(320, 180), workers=1, progress=False)
    return root


class _Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def clear(self) -> None:
        self.lines.clear()


@pytest.fixture
def logs():
    """What the project's loggers said during the test (``logs.text``). Unlike pytest's caplog it
    does not depend on the root logger: ROS 2's ``launch`` (imported by launch_testing's pytest
    plugin under colcon test) installs a root logger of its own, which caplog then never sees."""
    h = _Logs()
    # every project logger, not only the package roots: under launch's logger class a module
    # logger does not always propagate to its package's logger (lines may then appear twice)
    names = {"mtc", "mtc_perception", "compress"} | {
        n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in ("mtc", "mtc_perception", "compress")
    }
    loggers = [logging.getLogger(n) for n in sorted(names)]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(h)
        lg.setLevel(logging.DEBUG)
    yield h
    for lg, lvl in zip(loggers, old):
        lg.removeHandler(h)
        lg.setLevel(lvl)
