"""Shared fixtures: a tiny synthroad dataset generated once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train + 8 val synthroad images at 320x180 (seed 7)."""
    from compress.data.synthroad import synthesize

    root = tmp_path_factory.mktemp("synthroad")
    synthesize(root, n_train=16, n_val=8, seed=7, size=(320, 180), workers=1, progress=False)
    return root
