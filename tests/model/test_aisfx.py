"""The aisfx audio arm: our CNN equals aisfx's, our 16 kHz in-graph front end is close to aisfx's own,
missing weights are one clear line.

Reference (tests/model/data/aisfx_reference.npz, built by scripts/aisfx_fixture.py): aisfx 0.1.2's own
front ends (librosa 0.9.2 path and essentia path, each in a throwaway venv) and its own EmbeddingNet on
three synthetic 16 kHz clips. Tests that need the published weights skip unless
`pip install --no-deps aisfx==0.1.2` (what .ci/run installs to run them) is present.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest
import torch

from model import AUDIO_SAMPLES
from model.aisfx_logmel import FRAMES, AisfxLogMel
from model.audio_pretrained import AisfxCNN, load_aisfx_weights

REFERENCE = Path(__file__).parent / "data" / "aisfx_reference.npz"
# Measured on these clips (docs/results/audio_arms.md has the real recordings): mean |log-mel diff| 0.008
# against the librosa path (values span 0..0.92), embedding cosine 0.974-0.999 against either path.
LOGMEL_MEAN_TOL = 0.02
EMBEDDING_COS_MIN = 0.96


def _installed() -> bool:
    try:
        return distribution("aisfx").version == "0.1.2"
    except PackageNotFoundError:
        return False


needs_aisfx = pytest.mark.skipif(not _installed(), reason="aisfx 0.1.2 not installed (pip install --no-deps aisfx==0.1.2)")


def reference_clips() -> np.ndarray:
    """Three 15,600-sample 16 kHz clips: a vibrato tone complex, noise bursts, decaying percussive hits."""
    n = AUDIO_SAMPLES
    t = np.arange(n) / 16000
    rng = np.random.default_rng(20)
    phase = 2 * np.pi * np.cumsum(440 * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t))) / 16000
    tone = sum(0.5 / k * np.sin(k * phase) for k in range(1, 8))
    bursts = (np.sin(2 * np.pi * 3 * t) > 0) * np.exp(-((t * 3) % 1) * 4) * rng.standard_normal(n) * 0.3
    hits = np.zeros(n)
    for s in range(0, n, 4000):
        m = np.arange(min(2000, n - s))
        hits[s : s + m.size] += np.exp(-m / 300) * np.sin(2 * np.pi * 180 * m / 16000)
    hits = 0.8 * hits + 0.01 * rng.standard_normal(n)
    return np.stack([tone, bursts, hits]).astype(np.float32)


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE, allow_pickle=False))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    from model.aisfx_convert import convert_installed_weights

    return convert_installed_weights(tmp_path_factory.mktemp("aisfx") / "embedding.safetensors")


def test_front_end_close_to_aisfx_librosa_path(reference):
    """Same clip at aisfx's level (it peak-normalises at 44.1 kHz): our 16 kHz log-mel vs aisfx's."""
    clips = reference_clips() / reference["librosa_peak"][:, None]
    with torch.no_grad():
        ours = AisfxLogMel()(torch.from_numpy(clips)).numpy()
    ref = reference["librosa_spec"]
    assert ours.shape == ref.shape == (3, FRAMES, 96)
    assert np.abs(ours - ref).mean() <= LOGMEL_MEAN_TOL
    assert np.abs(ours[:, :, :60] - ref[:, :, :60]).mean() <= LOGMEL_MEAN_TOL / 2  # bands well below 8 kHz agree closer


@needs_aisfx
def test_cnn_equals_aisfx_embedding_net(converted):
    from aisfx.models.cnn2d import EmbeddingNet  # the reference implementation; model/ never imports it
    from safetensors.torch import load_file

    theirs = EmbeddingNet("max", 3, 1, 64)
    theirs.load_state_dict(load_file(str(converted)))
    ours = AisfxCNN()
    load_aisfx_weights(ours, converted)
    assert sum(p.numel() for p in ours.parameters()) == 4_686_144
    spec = torch.rand(2, 42, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours.eval()(spec), theirs.eval()(spec), atol=1e-5, rtol=1e-5)


@needs_aisfx
def test_embeddings_match_aisfx_reference(converted, reference):
    cnn = AisfxCNN()
    load_aisfx_weights(cnn, converted)
    cnn.eval()
    clips = torch.from_numpy(reference_clips())
    with torch.no_grad():
        # the CNN alone on aisfx's own spectrograms: equal to the stored embeddings
        for kind in ("librosa", "essentia"):
            got = cnn(torch.from_numpy(reference[f"{kind}_spec"]))
            assert torch.allclose(got, torch.from_numpy(reference[f"{kind}_embedding"]), atol=1e-4, rtol=1e-4)
        # the whole arm from 16 kHz samples (raw level, as the stream feeds it) vs aisfx's whole pipeline
        ours = cnn(AisfxLogMel()(clips))
    for kind in ("librosa", "essentia"):
        cos = torch.nn.functional.cosine_similarity(ours, torch.from_numpy(reference[f"{kind}_embedding"]))
        assert cos.min() >= EMBEDDING_COS_MIN, (kind, cos)


def test_missing_weights_name_the_install(tmp_path, monkeypatch):
    import model

    monkeypatch.setenv("ICF_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps aisfx==0\.1\.2.*python -m model\.aisfx_convert"):
        model.build_model("icf-tiny", audio_encoder="aisfx", audio_pretrained=True)
    assert not (tmp_path / "empty").exists()


def test_convert_without_package_is_one_line(tmp_path, monkeypatch, capsys):
    import importlib.metadata

    from model import aisfx_convert

    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    monkeypatch.setenv("ICF_CACHE", str(tmp_path))
    assert aisfx_convert.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install --no-deps aisfx==0.1.2" in err
    assert not any(tmp_path.iterdir())


def test_frozen_arm_keeps_published_statistics():
    import model

    net = model.build_model("icf-tiny", image_size=(64, 64), audio_encoder="aisfx", audio_frozen=True).train()
    cnn = net.audio_encoder.cnn
    assert not cnn.training and not any(p.requires_grad for p in cnn.parameters())
    assert net.audio_encoder.to_token[0].weight.requires_grad
    before = cnn.conv_block1.bn1.running_mean.clone()
    net.clip(torch.rand(1, 2, 3, 64, 64), 0.3 * torch.randn(1, 2, AUDIO_SAMPLES), frames_per_segment=2)
    assert torch.equal(before, cnn.conv_block1.bn1.running_mean)


def test_old_configs_default_to_vggish():
    from model import ICFConfig

    stored = ICFConfig(name="icf-tiny", concepts=("a",)).to_dict()
    for key in ("audio_encoder", "audio_pretrained", "audio_frozen", "audio_peak_floor"):
        stored.pop(key)
    assert ICFConfig.from_dict({**stored, "mit_mode": "paper"}).audio_encoder == "vggish"
    with pytest.raises(ValueError, match="'vggish' or 'aisfx'"):
        ICFConfig(audio_encoder="panns")


def test_peak_floor_makes_the_front_end_level_invariant():
    clips = torch.from_numpy(reference_clips())
    front = AisfxLogMel(peak_floor=0.01)
    with torch.no_grad():
        assert torch.allclose(front(clips), front(0.1 * clips), atol=1e-4)  # float32 rounding: 1.6e-5 measured
        assert torch.equal(front(torch.zeros(1, AUDIO_SAMPLES)), torch.zeros(1, FRAMES, 96))  # silence stays silent
        raw = AisfxLogMel()
        assert not torch.allclose(raw(clips), raw(0.1 * clips), atol=1e-2)
