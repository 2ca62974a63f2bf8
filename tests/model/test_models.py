"""Every registered model: shapes, gradients, finiteness, checkpoints, determinism, clip == step."""

import pytest
import torch

import model
from model import AUDIO_SAMPLES

# Small inputs keep the big variants fast on a 2-core CPU; the graph is the same.
SIZES = {"icf-tiny": (64, 64), "icf-lite": (96, 96), "icf-lite-aisfx": (64, 64), "icf-r50": (64, 64)}
# Pretrained files are not part of these tests (a bare machine has no aisfx weights): random init, same graph.
OFFLINE = {"icf-lite": {"pretrained": False}, "icf-lite-aisfx": {"pretrained": False, "audio_pretrained": False}}
# The aisfx ear is ~0.8 GMAC per window: its multi-frame backward / clip runs (~20 s each on a loaded 2-core CPU)
# run in `make test-all`; the default run still builds, steps, round-trips it (tests/model/test_aisfx.py: a clip).
MULTI_FRAME = [pytest.param(n, marks=pytest.mark.slow) if n == "icf-lite-aisfx" else n for n in model.list_models()]


def small(name: str, **overrides) -> model.ICFNet:
    torch.manual_seed(0)
    return model.build_model(name, image_size=SIZES[name], frame_ring=3, **OFFLINE.get(name, {}), **overrides)


def frames(net: model.ICFNet, b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h, w = net.config.image_size
    images = torch.rand(b, t, 3, h, w, generator=g)
    audio = 0.3 * torch.randn(b, t, AUDIO_SAMPLES, generator=g)
    return images, audio


@pytest.mark.parametrize("name", model.list_models())
def test_step_shapes_and_finite(name):
    net = small(name)
    images, audio = frames(net, 2, 1)
    state = net.initial_state(2)
    with torch.no_grad():
        mask, tau_f, tau_s, concepts = net.step(images[:, 0], audio[:, 0], *state.as_inputs())
    cfg = net.config
    assert mask.shape == (2, cfg.mask_channels, *cfg.image_size)
    assert tau_f.shape == tau_s.shape == (2, cfg.width)
    assert concepts.shape == (2, cfg.num_concepts)
    for out in (mask, tau_f, tau_s, concepts):
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MULTI_FRAME)
def test_backward_reaches_every_trainable_parameter(name):
    net = small(name).train()
    images, audio = frames(net, 2, 4)
    # two frames per segment so both temporal pools see more than one valid item
    out = net.clip(images, audio, frames_per_segment=2)
    loss = out.mask_logits.float().pow(2).mean() + out.concept_logits.pow(2).mean()
    loss.backward()
    # the implicit-text tokens learn through the frozen text encoder (test_implicit_text.py)
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad and not n.startswith("implicit.tokens_")]
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    silent = [n for n, p in trainable if p.grad.abs().sum() == 0]
    assert not silent, f"parameters with exactly zero gradient: {silent[:5]}"


@pytest.mark.parametrize("name", MULTI_FRAME)
def test_clip_equals_t_steps(name):
    net = small(name)
    images, audio = frames(net, 2, 5)
    with torch.no_grad():
        clip = net.clip(images, audio, frames_per_segment=2)
        state = net.initial_state(2)
        for t in range(5):
            mask, tau_f, tau_s, concepts = net.step(images[:, t], audio[:, t], *state.as_inputs())
            assert (mask - clip.mask_logits[:, t]).abs().max() <= 1e-5
            assert (concepts - clip.concept_logits[:, t]).abs().max() <= 1e-5
            state = model.advance(state, tau_f, tau_s, close_segment=(t + 1) % 2 == 0)


@pytest.mark.parametrize("name", model.list_models())
def test_checkpoint_round_trip(name, tmp_path):
    net = small(name)
    path = model.save_checkpoint(net, tmp_path / f"{name}.safetensors")
    assert path.with_suffix(".json").is_file()
    again = model.load_checkpoint(path)
    assert again.config == net.config.replace(pretrained=False)
    images, audio = frames(net, 1, 1)
    state = net.initial_state(1)
    with torch.no_grad():
        a = net.step(images[:, 0], audio[:, 0], *state.as_inputs())[0]
        b = again.step(images[:, 0], audio[:, 0], *state.as_inputs())[0]
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", model.list_models())
def test_deterministic_under_seed(name):
    a, b = small(name), small(name)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    images, audio = frames(a, 1, 1)
    state = a.initial_state(1)
    with torch.no_grad():
        assert torch.equal(a.step(images[:, 0], audio[:, 0], *state.as_inputs())[0], b.step(images[:, 0], audio[:, 0], *state.as_inputs())[0])


def test_wrong_variant_checkpoint_is_refused(tmp_path):
    tiny = small("icf-tiny")
    path = model.save_checkpoint(tiny, tmp_path / "tiny.safetensors")
    lite = small("icf-lite")
    with pytest.raises(ValueError, match="is for model 'icf-tiny', not 'icf-lite'"):
        model.load_weights_into(lite, path)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        model.load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.load_checkpoint(tmp_path / "missing.safetensors")


def test_unknown_model_and_override_are_clear_errors():
    with pytest.raises(ValueError, match="registered models"):
        model.build_model("icf-huge")
    with pytest.raises(ValueError, match="unknown ICF config override"):
        model.build_model("icf-tiny", widht=3)


def test_semantic_head_has_k_plus_one_channels():
    net = small("icf-tiny", semantic=True)
    images, audio = frames(net, 1, 1)
    with torch.no_grad():
        mask = net.step(images[:, 0], audio[:, 0], *net.initial_state(1).as_inputs())[0]
    assert mask.shape[1] == net.config.num_concepts + 1


@pytest.mark.parametrize("switch", ["frame_text", "segment_text", "video_text", "text_bridge"])
def test_ablation_switches_build_and_run(switch):
    net = small("icf-tiny", **{switch: False})
    images, audio = frames(net, 1, 3)
    with torch.no_grad():
        out = net.clip(images, audio)
    assert torch.isfinite(out.mask_logits).all()


def test_baseline_without_mit_ignores_text():
    net = small("icf-tiny", frame_text=False, segment_text=False, video_text=False, text_bridge=False)
    images, audio = frames(net, 1, 2)
    with torch.no_grad():
        out = net.clip(images, audio)
    assert torch.equal(out.audio, out.audio_bridged)
