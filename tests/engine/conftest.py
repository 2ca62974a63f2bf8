"""Shared exports for the engine tests: each registry model is exported once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> dict[str, Path]:
    """{"icf-tiny": path/to/icf-tiny.onnx, "icf-lite": ...}, each with sidecar and weights beside."""
    from engine.export import export_model

    root = tmp_path_factory.mktemp("exports")
    return {name: export_model(name, root / name) for name in ("icf-tiny", "icf-lite")}


@pytest.fixture
def tiny_copy(exports, tmp_path) -> Path:
    """A private copy of the icf-tiny export folder, safe to tamper with."""
    src = exports["icf-tiny"].parent
    dst = tmp_path / "tiny"
    shutil.copytree(src, dst)
    return dst / "icf-tiny.onnx"


@pytest.fixture(autouse=True)
def _private_engine_cache(tmp_path, monkeypatch):
    """Never write into the user's ~/.cache from tests."""
    monkeypatch.setenv("ICF_ENGINE_CACHE", str(tmp_path / "engine-cache"))
