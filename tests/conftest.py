"""Shared fixtures. Area-specific helpers live in the area's own test files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_data_dir() -> Path:
    return REPO_ROOT / "sample_data"
