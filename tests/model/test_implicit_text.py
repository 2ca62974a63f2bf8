"""Paper MIT: segment rule from frame times, live segment/video pools, textual inversion through
the frozen encoder, text constants at inference, SC/CDCL leave the exported graph alone (old
legacy-MIT checkpoints are refused: tests/model/test_shipped_weights.py)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import model
from model import AUDIO_SAMPLES, segment_closes
from model.text_encoder import text_encoder_available

ROOT = Path(__file__).resolve().parents[2]


def tiny(**overrides) -> model.ICFNet:
    torch.manual_seed(0)
    return model.build_model("icf-tiny", image_size=(64, 64), frame_ring=4, **overrides)


def clip_inputs(b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, 64, 64, generator=g), 0.3 * torch.randn(b, t, AUDIO_SAMPLES, generator=g)


def test_segment_closes_follows_the_stream_clock():
    assert segment_closes([0, 1, 2, 3, 4]) == [True] * 5  # AVSBench: one frame per second
    assert segment_closes([0.4, 0.9, 1.4, 1.9, 2.4, 2.9]) == [False, True] * 3  # 2 per second
    thirty = segment_closes([i / 30 for i in range(90)])
    assert [i for i, c in enumerate(thirty) if c] == [29, 59, 89]  # the keeper's 30 fps rule
    assert segment_closes([]) == []


def test_segment_and_video_pools_get_gradients_of_the_same_order():
    net = tiny().train()
    images, audio = clip_inputs(2, 6)
    out = net.clip(images, audio, closes=segment_closes([0.4, 0.9, 1.4, 1.9, 2.4, 2.9]))
    target = (torch.rand_like(out.mask_logits) > 0.5).float()
    F.binary_cross_entropy_with_logits(out.mask_logits, target).backward()
    mean = defaultdict(list)
    for name, p in net.named_parameters():
        if p.grad is not None:
            mean[name.split(".")[0]].append(p.grad.abs().mean().item())
    mean = {k: sum(v) / len(v) for k, v in mean.items()}
    rest = sorted(v for k, v in mean.items() if k not in ("segment_corr", "video_corr"))
    median = rest[len(rest) // 2]
    for pool in ("segment_corr", "video_corr"):  # once: exactly 0 (segment) and ~1e-5 x the rest (video)
        assert mean[pool] > 1e-2 * median, (pool, mean[pool], median)
        assert mean[pool] > 0.1 * mean["frame_corr"], (pool, mean)


def test_segment_level_sees_the_segment():
    """With 2 frames per segment the second frame's segment descriptor depends on the first frame;
    with 1 frame per segment it cannot (the ring is cleared)."""
    net = tiny()
    images, audio = clip_inputs(1, 2)
    other = images.clone()
    other[:, 0] = torch.rand_like(other[:, 0])
    with torch.no_grad():
        for closes, moves in (([False, True], True), ([True, True], False)):
            a = net.clip(images, audio, closes=closes).segment_text[1]
            b = net.clip(other, audio, closes=closes).segment_text[1]
            assert ((a - b).abs().max() > 1e-4) == moves


def test_mit_off_has_no_texts_and_still_runs():
    net = tiny(frame_text=False, segment_text=False, video_text=False, text_bridge=False)
    images, audio = clip_inputs(1, 2)
    with torch.no_grad():
        out = net.clip(images, audio)
    assert out.texts is None and torch.isfinite(out.mask_logits).all()


@pytest.mark.skipif(not text_encoder_available(), reason="needs the `text` extra (frozen sentence encoder)")
def test_textual_inversion_trains_tokens_and_bakes_constants():
    from model.text_encoder import load_text_encoder

    net = tiny().train()
    enc = load_text_encoder()
    net.implicit.init_from_words(enc, net.config.concepts)
    before = net.implicit.visual_texts.clone()
    images, audio = clip_inputs(2, 2)
    vectors = net.implicit.encode(enc)
    assert torch.allclose(vectors[0].detach(), net.implicit.visual_texts)  # constants = the encoder's output
    assert torch.allclose(before, net.implicit.visual_texts, atol=1e-5)
    out = net.clip(images, audio, text_vectors=vectors)
    out.mask_logits.pow(2).mean().backward()
    assert net.implicit.tokens_visual.grad.abs().sum() > 0 and net.implicit.tokens_audio.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.parameters())  # the encoder stays frozen
    # inference: no encoder, the stored constants give the same result
    net.eval()
    with torch.no_grad():
        live = net.clip(images, audio, text_vectors=net.implicit.encode(enc)).mask_logits
        baked = net.clip(images, audio).mask_logits
    assert torch.allclose(live, baked, atol=1e-5)


def _onnx_io(net: model.ICFNet, path: Path) -> tuple[list, list, list]:
    import onnx

    from engine import spec

    net = net.eval()
    state = net.initial_state(1)
    example = (torch.rand(1, 3, 64, 64), torch.zeros(1, AUDIO_SAMPLES), *state.as_inputs())
    torch.onnx.export(net, example, str(path), opset_version=17, dynamo=False,
                      input_names=list(spec.INPUT_NAMES), output_names=list(spec.OUTPUT_NAMES))
    graph = onnx.load(str(path)).graph
    dims = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    return ([(i.name, dims(i)) for i in graph.input], [(o.name, dims(o)) for o in graph.output],
            sorted(n.op_type for n in graph.node))


def test_sc_and_cdcl_leave_the_exported_graph_unchanged(tmp_path):
    """A model trained a step with SC + CDCL exports the same graph (inputs, outputs, ops) as one
    trained without them: both are training-only."""
    pytest.importorskip("onnx")
    from training.config import TrainConfig
    from training.objective import TrainModule

    images, audio = clip_inputs(2, 2)
    masks = torch.zeros(2, 2, 64, 64)
    masks[:, :, 16:48, 16:48] = 1
    batch = {"images": images, "audio": audio, "masks": masks, "semantic": masks.long(),
             "gt_valid": torch.ones(2, 2, dtype=torch.bool), "labels": torch.eye(8)[[0, 1]][:, None].expand(2, 2, 8).clone(),
             "label_valid": torch.ones(2, 2, dtype=torch.bool), "frame_times": torch.tensor([[0.5, 1.0]] * 2)}
    graphs = []
    for on in (True, False):
        net = tiny().train()
        cfg = TrainConfig(model="icf-tiny", image_size=(64, 64), sc=on, cdcl=on, text_encoder=False, sc_samples=4, sc_topk=2)
        module = TrainModule(net, cfg)
        loss, parts = module(batch)
        assert ("sc_noise" in parts) == on and ("cdcl_vt" in parts) == on
        loss.backward()
        torch.optim.SGD(module.parameters(), lr=1e-2).step()
        graphs.append(_onnx_io(net, tmp_path / f"sc{on}.onnx"))
    assert graphs[0] == graphs[1]
    assert [n for n, _ in graphs[0][0]] == ["image", "audio", "frame_ring", "frame_valid", "segment_ring", "segment_valid"]


@pytest.mark.skipif(not text_encoder_available(), reason="needs the `text` extra (frozen sentence encoder)")
def test_text_every_runs_the_encoder_every_nth_training_step():
    from training.config import TrainConfig
    from training.objective import TrainModule

    module = TrainModule(tiny().train(), TrainConfig(model="icf-tiny", image_size=(64, 64), text_every=3, sc=False, cdcl=False))
    ran = [module.text_vectors() is not None for _ in range(6)]
    assert ran == [True, False, False, True, False, False]
    assert module.eval().text_vectors() is None  # evaluation uses the stored texts
