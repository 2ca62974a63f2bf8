"""Listening metrics on SynthAVS: does a network follow the sound or paint what usually sounds?

Every number here comes from the same clips as the official mIoU / F (clip i of the split), one
clip per metric batch, so per-clip values can be paired between two weights (training.compare).

Rows (each a dict with mIoU, F and the rates below where they apply):
  model      the clips as generated (official mIoU / F, one clip = one batch);
  shuffled   clip i with the audio of clip N + i of the same split (never one of the N scored): a
             listening model drops;
  silent     each clip with all-zero audio: a listening model predicts empty masks (empty_rate);
  salient-only, all-objects   reference "models" made from ground truth alone: they paint the
             salient object / every visible object whatever the audio. They show what a model that
             never listens scores on this split.
Rates (frames counted over the split, then divided):
  prior_capture  conflict frames (a LOUD-class prior object in view and silent, another object
                 sounding) where the prediction covers >= 50% of the silent prior object's pixels;
                 prior_capture_not_salient: the same on clips where the prior object is not the salient
                 one (so size cannot explain the capture: that is the class prior at work);
  follow         audio-swap test: same video, each visible object's audio in turn (that object
                 alone sounds, every segment); a frame follows when IoU(prediction, played object) > 0.5;
  salient_capture  swap frames where a non-salient object plays and the prediction still covers
                 >= 50% of the salient object;
  iou_by_size    mean IoU with the played object, binned by its area (fraction of the frame).
"""

from __future__ import annotations

import numpy as np
import torch

from synthavs import SceneGenerator, audio_window
from synthavs.swap import solo

from .data.common import AUDIO_SAMPLES, SAMPLE_RATE
from .data.synth import window_ends
from .metrics import f_score, mask_iou

SIZE_BINS = ((0.0, 0.03, "small <3%"), (0.03, 0.08, "medium 3-8%"), (0.08, 1.01, "large >=8%"))
CAPTURE = 0.5  # an object is captured when the prediction covers at least this share of its pixels
FOLLOW_IOU = 0.5
REFERENCES = ("salient-only", "all-objects")


class _Tally:
    """Per-clip numbers of one row: mIoU, F, and hit / total counts of every rate."""

    def __init__(self, n: int) -> None:
        self.miou = np.full(n, np.nan)
        self.f = np.full(n, np.nan)
        self.hits: dict[str, np.ndarray] = {}
        self.totals: dict[str, np.ndarray] = {}
        self.bins = {name: [] for *_, name in SIZE_BINS}
        self.empty = [0, 0]  # frames predicted empty, frames

    def count(self, key: str, clip: int, hits: int, total: int) -> None:
        n = len(self.miou)
        self.hits.setdefault(key, np.zeros(n))[clip] += hits
        self.totals.setdefault(key, np.zeros(n))[clip] += total

    def summary(self) -> dict:
        out = {"mIoU": _mean(self.miou), "F": _mean(self.f), "clips": int(np.isfinite(self.miou).sum())}
        for key in self.hits:
            total = self.totals[key].sum()
            out[key] = float(self.hits[key].sum() / total) if total else None
            out[f"{key}_frames"] = int(total)
        if any(self.bins.values()):
            out["iou_by_size"] = {k: (_mean(np.array(v)) if v else None) for k, v in self.bins.items()}
        if self.empty[1]:
            out["empty_rate"] = self.empty[0] / self.empty[1]
        return out

    def per_clip(self) -> dict:
        """Arrays for paired statistics: mIoU, F and each rate's hits / totals per clip."""
        out = {"mIoU": self.miou.tolist(), "F": self.f.tolist()}
        for key in self.hits:
            out[f"{key}_hits"] = self.hits[key].tolist()
            out[f"{key}_total"] = self.totals[key].tolist()
        return out


def _mean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 1.0


def _covers(pred: np.ndarray, obj: np.ndarray) -> bool:
    return bool(np.logical_and(pred, obj).sum() >= CAPTURE * obj.sum())


class ClipCase:
    """One clip of the split as the model sees it: segment-end frames, per-segment audio windows,
    the instance map and the plan, so its audio can be rebuilt with other sources playing."""

    def __init__(self, gen: SceneGenerator, index: int, frames: int) -> None:
        fps = gen.config.fps
        self.gen, self.index, self.frames = gen, index, frames
        self.clip = gen.clip(index, seconds=frames, frame_indices=[(s + 1) * fps - 1 for s in range(frames)])
        self.plan = gen.plan(index, frames)
        self.audio = self.windows(self.clip.audio)
        self.seg = np.minimum(self.clip.frame_times.astype(int), frames - 1)  # segment of each frame

    def windows(self, audio: np.ndarray) -> np.ndarray:
        fps = self.gen.config.fps
        ends = window_ends([(s + 1) * fps - 1 for s in range(self.frames)], fps)
        return np.stack([audio_window(audio, int(e), AUDIO_SAMPLES) for e in ends]).astype(np.float32)

    def foreign_audio(self, index: int) -> np.ndarray:
        """Audio windows of another clip of the same generator (its plan only; no frames rendered)."""
        return self.windows(self.gen.plan_audio(self.gen.plan(index, self.frames), 0, self.frames * SAMPLE_RATE))

    def swap_audio(self, instance: int) -> np.ndarray:
        """Audio windows with only ``instance`` sounding, in every segment (same noise): synthavs.swap.solo,
        the owner the swap augmentation uses too."""
        return self.windows(self.gen.plan_audio(solo(self.plan, instance), 0, self.frames * SAMPLE_RATE))

    def visible(self) -> list[int]:
        return [i for i in range(len(self.clip.object_classes)) if (self.clip.objects == i + 1).any()]


class _Runner:
    """Batches (images, audio) jobs through the network; returns binary predictions per job."""

    def __init__(self, net, device: torch.device, batch_size: int, amp: torch.dtype | None) -> None:
        self.net, self.device, self.batch_size, self.amp = net, device, batch_size, amp

    @torch.no_grad()
    def __call__(self, jobs: list[tuple[np.ndarray, np.ndarray]]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for k in range(0, len(jobs), self.batch_size):
            chunk = jobs[k : k + self.batch_size]
            images = torch.from_numpy(np.stack([j[0] for j in chunk])).to(self.device)
            images = images.permute(0, 1, 4, 2, 3).float().div_(255.0)
            audio = torch.from_numpy(np.stack([j[1] for j in chunk])).to(self.device)
            with torch.autocast(device_type=self.device.type, dtype=self.amp, enabled=self.amp is not None):
                logits = self.net.clip(images, audio, frames_per_segment=1).mask_logits.float()
            out += [logits[i, :, 0].cpu() for i in range(len(chunk))]
        return out


def _score_clip(tally: _Tally, i: int, logits: torch.Tensor, case: ClipCase) -> np.ndarray:
    """Official per-clip mIoU / F plus prior capture; returns the binary prediction [T, H, W]."""
    gt = torch.from_numpy(case.clip.masks)
    tally.miou[i] = mask_iou(logits, gt)
    tally.f[i] = f_score(logits, gt)
    pred = (torch.sigmoid(logits) > 0.5).numpy()
    prior = case.clip.prior
    if prior >= 0:
        hits = total = 0
        active = case.clip.active
        vis = case.visible()
        for t in range(case.frames):
            obj = case.clip.objects[t] == prior + 1
            s = case.seg[t]
            others = any(active[j, s] for j in vis if j != prior)
            if obj.any() and not active[prior, s] and others:
                total += 1
                hits += _covers(pred[t], obj)
        tally.count("prior_capture", i, hits, total)
        if prior != case.clip.salient:
            tally.count("prior_capture_not_salient", i, hits, total)
    return pred


def _score_swap(tally: _Tally, i: int, pred: np.ndarray, case: ClipCase, played: int) -> None:
    hits = total = sal_hits = sal_total = 0
    for t in range(case.frames):
        obj = case.clip.objects[t] == played + 1
        if not obj.any():
            continue
        iou = _iou(pred[t], obj)
        total += 1
        hits += iou > FOLLOW_IOU
        area = obj.mean()
        for lo, hi, name in SIZE_BINS:
            if lo <= area < hi:
                tally.bins[name].append(iou)
        sal = case.clip.objects[t] == case.clip.salient + 1
        if played != case.clip.salient and sal.any():
            sal_total += 1
            sal_hits += _covers(pred[t], sal)
    tally.count("follow", i, hits, total)
    tally.count("salient_capture", i, sal_hits, sal_total)


def _reference_logits(case: ClipCase, kind: str) -> torch.Tensor:
    objects = case.clip.objects
    paint = objects == case.clip.salient + 1 if kind == "salient-only" else objects > 0
    return torch.from_numpy(np.where(paint, 20.0, -20.0).astype(np.float32))


def listening_report(
    net,
    gen: SceneGenerator,
    *,
    clips: int,
    frames: int = 5,
    device: torch.device,
    batch_size: int = 8,
    amp: torch.dtype | None = None,
    references: bool = True,
    full: bool = True,
    meter=None,
    progress=None,
) -> dict:
    """Rows {model, shuffled, silent, salient-only, all-objects} -> summary dicts, and
    ``per_clip`` (the model rows' per-clip arrays) for paired comparisons. ``full=False`` runs only
    the model and reference rows (no swap test, no shuffled / silent audio: 1 pass instead of ~6).
    ``net=None`` computes the reference rows alone. ``meter`` (a training.metrics.BinaryMeter) gets
    every clip of the model row, one clip per batch, so the official numbers need no second pass."""
    cases = [ClipCase(gen, i, frames) for i in range(clips)]
    controls = ("shuffled", "silent") if full and net is not None else ()
    rows = {name: _Tally(clips) for name in ("model", *controls, *(REFERENCES if references else ()))}
    run = _Runner(net, device, batch_size, amp) if net is not None else None
    silence = np.zeros((frames, AUDIO_SAMPLES), np.float32)
    for start in range(0, clips, batch_size):
        group = cases[start : start + batch_size]
        jobs, tags = [], []
        for c in group:
            jobs.append((c.clip.frames, c.audio))
            tags.append((c, "model", -1))
            if not full:
                continue
            jobs += [(c.clip.frames, c.foreign_audio(clips + c.index)), (c.clip.frames, silence)]
            tags += [(c, "shuffled", -1), (c, "silent", -1)]
            for j in c.visible():
                jobs.append((c.clip.frames, c.swap_audio(j)))
                tags.append((c, "swap", j))
        if run is not None:
            for logits, (c, row, played) in zip(run(jobs), tags):
                if row == "swap":
                    _score_swap(rows["model"], c.index, (torch.sigmoid(logits) > 0.5).numpy(), c, played)
                    continue
                pred = _score_clip(rows[row], c.index, logits, c)
                if row == "model" and meter is not None:
                    meter.add(logits, torch.from_numpy(c.clip.masks))
                if row == "silent":
                    rows[row].empty[0] += int((pred.reshape(frames, -1).mean(1) < 0.01).sum())
                    rows[row].empty[1] += frames
        if references:
            for c in group:
                for kind in REFERENCES:
                    pred = _score_clip(rows[kind], c.index, _reference_logits(c, kind), c)
                    for j in c.visible() if full else ():  # a reference paints the same whatever plays
                        _score_swap(rows[kind], c.index, pred, c, j)
        if progress is not None:
            progress(len(group))
    out = {name: t.summary() for name, t in rows.items() if run is not None or name in REFERENCES}
    if run is not None:
        out["per_clip"] = rows["model"].per_clip()
    return out
