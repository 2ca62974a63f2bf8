"""Scene plans and the generator: clips for training / files, an endless stream for live use.

A *plan* is everything random about one clip, drawn from numpy's SeedSequence([seed, index]):
which classes are in view, how each moves and scales, which instance sounds in each 1 s segment,
noise level. Frames and audio are then pure functions of (plan, time), so a clip, a subset of its
frames and any stretch of the stream's audio all agree sample for sample.

Salience: object 0 of every plan is the salient one - clearly the largest and drawn in front.
The bias knob is the chance it is the one sounding; conflict scenes make it always silent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from . import priors as class_priors
from .config import SAMPLE_RATE, SceneConfig
from .media import Media, SynthMedia
from .plan import Instance, ScenePlan, SwapChoice
from .render import render_frame
from .sounds import SOURCE_RMS, gate
from .sounds import noise as sample_noise  # plan_audio has a noise= switch
from .swap import SWAP_SALT, apply_swap

_MIXED_MODES = (("single", 0.45), ("multi", 0.3), ("silence", 0.125), ("offscreen", 0.125))
_DONOR_BASE = 1_000_000_007  # frame mixing: clip i borrows frames from clip _DONOR_BASE + i (never a dataset clip)


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    audio: np.ndarray  # float32 [seconds * 16000] in [-1, 1]
    masks: np.ndarray  # uint8 [T, H, W], 1 = pixel of a sounding object
    semantic: np.ndarray  # uint8 [T, H, W], 0 = background, k + 1 = sounding object of class k
    sounding: np.ndarray  # bool [seconds, K]: classes heard in each 1 s segment (off-screen ones too)
    fps: int
    sample_rate: int
    frame_times: np.ndarray  # float64 [T] seconds of each returned frame
    mode: str  # the resolved mode of this clip
    classes_in_view: tuple[int, ...]  # visible classes, salient first
    offscreen: np.ndarray  # bool [seconds]: an off-screen source is heard and no visible one is
    objects: np.ndarray | None = None  # uint8 [T, H, W]: instance index + 1 owning each pixel (0 = background,
    #   and 0 everywhere on spliced frames); classes of instances in ``object_classes``
    object_classes: tuple[int, ...] = ()  # class of every instance of the plan (off-screen ones too)
    salient: int = 0  # instance index of the salient object
    prior: int = -1  # instance index of the prior (LOUD-class) object, -1 without class priors
    active: np.ndarray | None = None  # bool [n_instances, seconds]: the plan's sounding instances
    spliced: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # bool [T]: frame from another clip
    swap: SwapChoice | None = None  # swap augmentation: the plan's choice (None when config.swap is 0)


@dataclass
class Frame:
    index: int  # global frame number of the stream
    time_s: float  # stream time of the frame (its audio window ends here)
    image: np.ndarray  # uint8 [H, W, 3] RGB
    mask: np.ndarray  # uint8 [H, W]
    semantic: np.ndarray  # uint8 [H, W]
    sounding: np.ndarray  # bool [K]: classes heard in the current 1 s segment


def media_for(config: SceneConfig) -> Media:
    """The library ``config.media`` names (stamps: the objects and backgrounds the config selects)."""
    if config.media == "stamps":
        from .stamps import StampsMedia

        return StampsMedia.load(objects=config.objects, backgrounds=config.backgrounds)
    return SynthMedia(config.num_classes)


def _bounce(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = max(hi - lo, 1e-6)
    m = np.mod(u - lo, 2 * span)
    return lo + np.where(m < span, m, 2 * span - m)


class SceneGenerator:
    def __init__(self, config: SceneConfig | None = None, *, media: Media | None = None) -> None:
        self.config = config or SceneConfig()
        self.media = media or media_for(self.config)  # looks, sounds, backgrounds, class priors
        self._plans: OrderedDict[tuple[int, int], ScenePlan] = OrderedDict()

    # ---------------- plans ----------------
    def plan(self, index: int, seconds: int = 5) -> ScenePlan:
        key = (int(index), int(seconds))
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = self._make_plan(*key)
        self._plans[key] = plan
        while len(self._plans) > 8:  # the stream needs the current episode and a neighbour
            self._plans.popitem(last=False)
        return plan

    def _make_plan(self, index: int, seconds: int) -> ScenePlan:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, index])
        conflict = cfg.conflicting
        priors = cfg.priors_on
        mode = {"conflict": "single", "prior-conflict": "single", "biased": "mixed"}.get(cfg.mode, cfg.mode)
        events = mode == "mixed"
        if mode == "mixed":
            blend = [(m, p) for m, p in _MIXED_MODES if cfg.offscreen_on or m != "offscreen"]
            names, probs = zip(*blend)
            mode = str(rng.choice(names, p=np.asarray(probs) / sum(probs)))
        elif mode == "semantic":
            mode = str(rng.choice(["single", "multi"]))
        k = self.media.num_classes
        # conflict scenes need a silent object and a sounding one; prior-conflict shows three (the prior
        # object, its companion, one more) so a rule that paints the salient or every object scores low
        lo = max(cfg.min_objects, 3 if cfg.mode == "prior-conflict" else 2 if conflict else 1)
        n_visible = int(rng.integers(min(lo, cfg.max_objects), cfg.max_objects + 1))
        want_offscreen = mode == "offscreen" or (events and cfg.offscreen_on)
        n_visible = min(n_visible, k - 1) if want_offscreen and k > 1 else min(n_visible, k)
        n_total = n_visible + (1 if want_offscreen and k > n_visible else 0)
        prior = -1
        if priors:  # silence / off-screen scenes look like the rest of the stream
            classes, prior = class_priors.choose_classes(
                rng, n_visible, n_total, conflict=conflict, companion_prob=cfg.companion_prob, table=self.media.priors
            )
        else:
            classes = rng.choice(k, size=n_total, replace=False)
        h, w = cfg.height, cfg.width
        short = min(h, w)
        instances = []
        for i, c in enumerate(classes):
            visible = i < n_visible
            side = short * (rng.uniform(0.4, 0.52) if i == 0 else rng.uniform(0.2, 0.3))  # instance 0 = salient
            margin = side * 0.35  # centres stay this far inside: objects may clip the border a little
            instances.append(
                Instance(
                    cls=int(c),
                    visible=visible,
                    side=float(side),
                    pos0=(float(rng.uniform(margin, w - margin)), float(rng.uniform(margin, h - margin))),
                    vel=tuple(float(v) for v in rng.uniform(-0.12, 0.12, size=2) * short),
                    wobble=(float(rng.uniform(0, 0.05) * short), float(rng.uniform(1, 4)), float(rng.uniform(0, 6.3))),
                    breathe=(float(rng.uniform(0, 0.15)), float(rng.uniform(0.5, 2.5)), float(rng.uniform(0, 6.3))),
                    sprite=self.media.sprite(int(c), float(rng.uniform(-25, 25)), float(rng.uniform(0.85, 1.1)))
                    if visible
                    else None,
                    pitch=float(rng.uniform(0.92, 1.08)),
                    offset=float(rng.uniform(0, 1)),
                    gain=float(rng.uniform(0.7, 1.2)),
                )
            )
        classes = np.asarray(classes)
        active = self._sounding(rng, mode, conflict, events, n_visible, n_total, seconds, classes if priors else None, prior)
        n_distract = int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))
        bg = np.clip(self.media.background(rng, h, w, n_distract), 0, 255).astype(np.uint8)
        snr = float(cfg.snr_db[0]) if cfg.snr_db[0] == cfg.snr_db[1] else float(rng.uniform(*cfg.snr_db))
        plan = ScenePlan(
            index=index,
            seconds=seconds,
            mode=mode,
            conflict=conflict,
            instances=tuple(instances),
            active=active,
            background=bg,
            noise_rms=0.0,
            noise_seed=int(rng.integers(0, 2**31 - 1)),
            prior=prior,
        )
        if cfg.swap > 0:  # own draws, so the scene is the same with and without the option
            plan = apply_swap(plan, cfg.swap, np.random.default_rng([cfg.seed, index, SWAP_SALT]))
        return replace(plan, noise_rms=self._signal_rms(plan) * 10 ** (-snr / 20))  # the SNR holds after a swap

    def _signal_rms(self, plan: ScenePlan) -> float:
        """RMS of the clean soundtrack over the segments where something sounds (SOURCE_RMS when none):
        the reference the SNR knob is measured against, so ``snr=20`` is 20 dB on the generated audio."""
        on = plan.active.any(axis=0)
        if not on.any():
            return SOURCE_RMS
        clean = self.plan_audio(plan, 0, plan.seconds * SAMPLE_RATE, noise=False).astype(np.float64)
        keep = np.repeat(on, SAMPLE_RATE)
        return float(np.sqrt(np.mean(clean[keep] ** 2)))

    def _sounding(
        self, rng, mode: str, conflict: bool, events: bool, n_vis: int, n_total: int, seconds: int, classes, prior: int
    ) -> np.ndarray:
        """active[i, s]: instance i sounds in segment s. Sticky: a choice is redrawn with switch_prob."""
        cfg = self.config
        active = np.zeros((n_total, seconds), bool)
        others = np.arange(1, n_vis)
        current = None
        for s in range(seconds):
            if current is None or rng.random() < cfg.switch_prob:
                pick = np.zeros(n_total, bool)
                if classes is not None and mode in ("single", "multi"):
                    pick = class_priors.pick_sounding(
                        rng, mode=mode, conflict=conflict, classes=classes, prior=prior, n_vis=n_vis, n_total=n_total,
                        bias=cfg.bias, table=self.media.priors,
                    )  # fmt: skip
                elif mode == "single":
                    salient = n_vis == 1 or (not conflict and rng.random() < cfg.bias)
                    pick[0 if salient else int(rng.choice(others))] = True
                elif mode == "multi":
                    pick[0] = (not conflict) and (n_vis == 1 or rng.random() < cfg.bias)
                    pick[1:n_vis] = rng.random(n_vis - 1) < (0.5 if conflict else 1.0 - cfg.bias)  # v1: always 0.5
                    if not pick.any():  # MS3 segments always have a source
                        pick[int(rng.choice(others)) if len(others) else 0] = True
                elif mode == "offscreen" and n_total > n_vis:
                    pick[n_vis] = True
                current = pick
            seg = current.copy()
            if events and mode in ("single", "multi") and rng.random() < cfg.event_prob:
                seg[:] = False
                if n_total > n_vis and cfg.offscreen_on and rng.random() < 0.5:
                    seg[n_vis] = True
            active[:, s] = seg
        return active

    # ---------------- rendering ----------------
    def _geometry(self, plan: ScenePlan, t: float) -> list[tuple[int, float, float, float]]:
        """(instance, cx, cy, side) of the visible instances at time t, back to front."""
        cfg = self.config
        out = []
        for i, inst in enumerate(plan.instances):
            if not inst.visible:
                continue
            amp, rate, ph = inst.wobble
            side = inst.side * (1 + inst.breathe[0] * np.sin(inst.breathe[1] * t + inst.breathe[2]))
            m = side * 0.35
            cx = _bounce(np.float64(inst.pos0[0] + inst.vel[0] * t + amp * np.sin(rate * t + ph)), m, cfg.width - m)
            cy = _bounce(np.float64(inst.pos0[1] + inst.vel[1] * t + amp * np.cos(rate * t + ph)), m, cfg.height - m)
            out.append((i, float(cx), float(cy), float(side)))
        out.sort(key=lambda g: plan.instances[g[0]].side)  # larger = nearer = drawn later (on top)
        return out

    def render(self, plan: ScenePlan, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image uint8 [H, W, 3], mask uint8 [H, W], semantic uint8 [H, W]) at clip time t."""
        return self.render_owner(plan, t)[:3]

    def render_owner(self, plan: ScenePlan, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """render() plus owner int16 [H, W]: the instance index on top of each pixel, -1 background."""
        seg = min(int(t), plan.seconds - 1)
        geometry = self._geometry(plan, t)
        sprites = [plan.instances[i].sprite for i, *_ in geometry]
        image, owner = render_frame(plan.background, geometry, sprites)
        lut = np.zeros(len(plan.instances) + 1, np.uint8)  # owner -1 (background) -> slot 0
        for i, inst in enumerate(plan.instances):
            if plan.active[i, seg] and inst.visible:
                lut[i + 1] = inst.cls + 1
        semantic = lut[owner + 1]
        return image, (semantic > 0).astype(np.uint8), semantic, owner

    # ---------------- audio ----------------
    def plan_audio(self, plan: ScenePlan, start: int, n: int, *, noise: bool = True) -> np.ndarray:
        """Samples [start, start + n) of the plan's soundtrack (outside the clip: noise only).
        ``noise=False``: the clean sources alone (what the SNR is measured against)."""
        t = (start + np.arange(n)) / SAMPLE_RATE
        out = np.zeros(n, np.float64)
        for i, inst in enumerate(plan.instances):
            if not plan.active[i].any():
                continue
            g = gate(plan.active[i].astype(np.float64), n, SAMPLE_RATE, start_sample=start)
            on = np.nonzero(g > 0)[0]
            if len(on):
                seed = plan.noise_seed + 7919 * (i + 1)
                out[on] += inst.gain * g[on] * self.media.sound(inst.cls, t[on], pitch=inst.pitch, offset=inst.offset, seed=seed)
        if noise and plan.noise_rms > 0:
            out += sample_noise(t, plan.noise_seed) * (np.sqrt(3.0) * plan.noise_rms)  # uniform noise with that RMS
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    # ---------------- public API ----------------
    def clip(self, index: int, seconds: int = 5, frame_indices: Sequence[int] | None = None) -> Clip:
        """Clip ``index`` (deterministic in (config.seed, index)). ``frame_indices`` renders only those
        frames (0 .. seconds * fps - 1), e.g. one per segment for AVSBench-style training."""
        cfg = self.config
        plan = self.plan(index, seconds)
        total = seconds * cfg.fps
        idx = np.arange(total) if frame_indices is None else np.asarray(frame_indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= total):
            raise ValueError(f"frame_indices must lie in 0..{total - 1} for a {seconds} s clip at {cfg.fps} fps")
        times = idx / cfg.fps
        frames = np.empty((len(idx), cfg.height, cfg.width, 3), np.uint8)
        masks = np.empty((len(idx), cfg.height, cfg.width), np.uint8)
        semantic = np.empty_like(masks)
        objects = np.empty_like(masks)
        for j, t in enumerate(times):
            frames[j], masks[j], semantic[j], owner = self.render_owner(plan, float(t))
            objects[j] = (owner + 1).astype(np.uint8)
        spliced = self.spliced_frames(index, len(idx))
        if spliced.any():
            self._splice(plan, index, times, spliced, frames, masks, semantic, objects)
        return Clip(
            frames=frames,
            audio=self.plan_audio(plan, 0, seconds * SAMPLE_RATE),
            masks=masks,
            semantic=semantic,
            sounding=self._class_sounding(plan),
            fps=cfg.fps,
            sample_rate=SAMPLE_RATE,
            frame_times=times,
            mode=plan.mode,
            classes_in_view=tuple(inst.cls for inst in plan.instances if inst.visible),
            offscreen=self._offscreen(plan),
            objects=objects,
            object_classes=tuple(inst.cls for inst in plan.instances),
            salient=0,
            prior=plan.prior,
            active=plan.active,
            spliced=spliced,
            swap=plan.swap,
        )

    def spliced_frames(self, index: int, n_frames: int) -> np.ndarray:
        """bool [n_frames]: which frames of clip ``index`` come from another clip (frame mixing).
        Clip i gets floor(m n (i + 1)) - floor(m n i) of them (m = config.mix), so clips 0..N-1 hold
        exactly floor(m n N) spliced frames: the ratio is exact whenever m n N is a whole number."""
        mix = self.config.mix
        out = np.zeros(n_frames, bool)
        if mix <= 0 or n_frames == 0:
            return out
        count = int(np.floor(round(mix * n_frames * (index + 1), 9))) - int(np.floor(round(mix * n_frames * index, 9)))
        rng = np.random.default_rng([self.config.seed, index, 0x5E1])
        out[rng.choice(n_frames, size=count, replace=False)] = True
        return out

    def _splice(self, plan: ScenePlan, index: int, times, spliced, frames, masks, semantic, objects) -> None:
        """Replace the spliced frames by the donor clip's frames at the same times. The soundtrack stays
        the host's, so the ground truth there is the donor's objects of a class the host audio plays."""
        donor = self.plan(_DONOR_BASE + index, plan.seconds)
        heard = self._class_sounding(plan)
        for j in np.flatnonzero(spliced):
            t = float(times[j])
            image, _, _, owner = self.render_owner(donor, t)
            cls = np.array([inst.cls for inst in donor.instances] + [-1])[owner]  # owner -1 -> class -1
            seg = min(int(t), plan.seconds - 1)
            on = np.isin(cls, np.flatnonzero(heard[seg]))
            frames[j] = image
            masks[j] = on
            semantic[j] = np.where(on, cls + 1, 0)
            objects[j] = 0

    def _class_sounding(self, plan: ScenePlan) -> np.ndarray:
        out = np.zeros((plan.seconds, self.media.num_classes), bool)
        for i, inst in enumerate(plan.instances):
            out[:, inst.cls] |= plan.active[i]
        return out

    @staticmethod
    def _offscreen(plan: ScenePlan) -> np.ndarray:
        vis = np.array([inst.visible for inst in plan.instances])
        return plan.active[~vis].any(axis=0) & ~plan.active[vis].any(axis=0)

    def stream(self, seconds: float | None = None) -> Iterator[Frame]:
        """Frames of an endless (``seconds=None``) stream: a playlist of ``episode_seconds`` clips
        (clip 0, 1, 2 ...). Yields as fast as asked; pacing to real time is the caller's job."""
        cfg = self.config
        per_episode = cfg.fps * cfg.episode_seconds
        n = 0
        while seconds is None or n < int(round(seconds * cfg.fps)):
            episode, local = divmod(n, per_episode)
            plan = self.plan(episode, cfg.episode_seconds)
            image, mask, semantic = self.render(plan, local / cfg.fps)
            sounding = self._class_sounding(plan)[min(local // cfg.fps, cfg.episode_seconds - 1)]
            yield Frame(index=n, time_s=n / cfg.fps, image=image, mask=mask, semantic=semantic, sounding=sounding)
            n += 1

    def audio_between(self, t0_s: float, t1_s: float) -> np.ndarray:
        """The stream's audio for [t0_s, t1_s) (sample-exact: round(t * 16000)); times < 0 are silence."""
        a, b = int(round(t0_s * SAMPLE_RATE)), int(round(t1_s * SAMPLE_RATE))
        if b < a:
            raise ValueError(f"audio_between: t1_s {t1_s} < t0_s {t0_s}")
        out = np.zeros(b - a, np.float32)
        episode_len = self.config.episode_seconds * SAMPLE_RATE
        pos = max(a, 0)
        while pos < b:
            episode, local = divmod(pos, episode_len)
            take = min(b - pos, episode_len - local)
            plan = self.plan(episode, self.config.episode_seconds)
            out[pos - a : pos - a + take] = self.plan_audio(plan, local, take)
            pos += take
        return out


def audio_window(audio: np.ndarray, end_sample: int, length: int) -> np.ndarray:
    """The ``length`` samples ending at ``end_sample`` (exclusive), zero-padded before the start."""
    start = end_sample - length
    out = np.zeros(length, np.float32)
    lo = max(start, 0)
    hi = min(end_sample, len(audio))
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out
