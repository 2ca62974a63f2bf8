"""Where the caches live: one rule, in engine/cache.py, and a failed export leaves no folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import cache
from engine.spec import ArtifactError


def test_cache_folder_rule(tmp_path, monkeypatch):
    for name in ("ICF_ENGINE_CACHE", "ICF_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.user_cache_dir() == tmp_path / "home" / ".cache" / "icf-avs"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.user_cache_dir() == tmp_path / "xdg" / "icf-avs"
    assert cache.cache_dir() == tmp_path / "xdg" / "icf-avs" / "engines"
    monkeypatch.setenv("ICF_CACHE", str(tmp_path / "icf"))
    assert cache.cache_dir() == tmp_path / "icf" / "engines"
    monkeypatch.setenv("ICF_ENGINE_CACHE", str(tmp_path / "engines-here"))
    assert cache.cache_dir() == tmp_path / "engines-here"
    assert not any(tmp_path.iterdir())  # asking creates nothing


def test_failed_export_leaves_no_cache_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("ICF_ENGINE_CACHE", raising=False)
    monkeypatch.delenv("ICF_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "xdg").mkdir()
    monkeypatch.setattr(cache, "_export", lambda *a: (_ for _ in ()).throw(ArtifactError("unknown model 'icf-huge'")))
    with pytest.raises(ArtifactError, match="icf-huge"):
        cache.onnx_for_model("icf-huge")
    assert [p.name for p in tmp_path.rglob("*")] == ["xdg"]  # the user's cache folder stays, nothing of ours in it
    keep = tmp_path / "xdg" / "icf-avs" / "engines" / "onnx" / "other-entry"
    keep.mkdir(parents=True)
    with pytest.raises(ArtifactError):
        cache.onnx_for_model("icf-huge")
    assert keep.is_dir() and not (keep.parent / "registry-icf-huge-seed0").exists()  # other entries are left alone
    assert Path(tmp_path / "xdg").is_dir()
