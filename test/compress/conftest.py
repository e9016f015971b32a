"""Fixtures of the offline-half tests: the data tests' tiny synthroad dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest_data import N_TRAIN, N_VAL, SYNTH_SIZE


@pytest.fixture(scope="session")
def synth_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthroad dataset, generated once per session (do not modify it)."""
    from compress.data.synthroad import synthesize  # imported here: this file loads where compress cannot

    root = tmp_path_factory.mktemp("synth") / "ds"
    synthesize(root, n_train=N_TRAIN, n_val=N_VAL, seed=3, size=SYNTH_SIZE, workers=1, progress=False)
    return root


@pytest.fixture
def synth_copy(synth_base: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the tiny synthroad dataset."""
    dst = tmp_path / "ds"
    shutil.copytree(synth_base, dst)
    return dst
