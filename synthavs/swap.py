"""Audio swap: the same picture with another object's sound. One owner for "make object X the one
that sounds"; two users:

- the swap augmentation (``SceneConfig.swap = p``, spec option ``swap=p``): explicit counterfactual
  training data. With probability p a clip whose sound comes from one in-view object, with at least
  one other object in view, is re-sounded as if another in-view object (drawn uniformly) made the
  sound, in the same segments. Frames and pixels stay as they were; masks, semantic maps, class
  labels and audio follow the new source (SceneGenerator does that by serving the swapped plan);
- the listening metrics' audio-swap test (training.listening.ClipCase.swap_audio): each visible
  object alone, in every segment, over the clip's own noise.

Why uniform and not "prefer the silent companion": the companion is exactly what the prior-conflict
test split makes sound; an augmentation aimed at it would be tuned to the test. Uniform is the
generic competitor: it only breaks "this class / this object always sounds", as any practitioner
would do without knowing the test. (In biased scenes the companion is often the only other object
in view, so it is picked often anyway.)

Clips left unswapped, and why (``SwapChoice.status``): ``one-in-view`` (no other object to give the
sound to), ``no-source`` (nothing in view sounds: silence or off-screen only), ``several-sounding``
(more than one object sounds at some point in the clip: multi-source segments, a switch of source
between segments, or an off-screen source as well; "the" source is then ambiguous, so the clip is
kept as generated), ``kept`` (eligible, not drawn). ``swap_counts`` tallies them over a data set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from .plan import ScenePlan, SwapChoice

SWAP_SALT = 0x5A4B  # the swap draws use SeedSequence([seed, index, SWAP_SALT]): the scene's own draws are untouched
STATUSES = ("swapped", "kept", "one-in-view", "no-source", "several-sounding")


def solo(plan: ScenePlan, instance: int, segments: np.ndarray | None = None) -> ScenePlan:
    """``plan`` with ``instance`` the only source, sounding in ``segments`` (bool [seconds]; default every
    segment) with its own class sound, pitch, rhythm offset and gain. Pictures and noise are unchanged:
    callers that want the clip's SNR held re-derive ``noise_rms`` (SceneGenerator does for the augmentation)."""
    if not 0 <= instance < len(plan.instances):
        raise ValueError(f"instance {instance} is not in the plan (0..{len(plan.instances) - 1})")
    active = np.zeros_like(plan.active)
    active[instance] = True if segments is None else np.asarray(segments, bool)
    return replace(plan, active=active)


def choose_swap(plan: ScenePlan, p: float, rng: np.random.Generator) -> SwapChoice:
    """Whether and how clip ``plan`` is swapped. The two draws (swap?, which object?) are always made,
    so the choice of one clip never depends on another's."""
    draw, pick = rng.random(), rng.random()
    visible = [i for i, inst in enumerate(plan.instances) if inst.visible]
    sources = np.flatnonzero(plan.active.any(axis=1))
    if len(visible) < 2:
        return SwapChoice("one-in-view")
    if not any(plan.instances[i].visible for i in sources):
        return SwapChoice("no-source")
    if len(sources) > 1:
        return SwapChoice("several-sounding")
    source = int(sources[0])
    if draw >= p:
        return SwapChoice("kept", source)
    others = [i for i in visible if i != source]
    return SwapChoice("swapped", source, others[min(int(pick * len(others)), len(others) - 1)])


def apply_swap(plan: ScenePlan, p: float, rng: np.random.Generator) -> ScenePlan:
    """The plan the swap augmentation serves: re-sounded when drawn, ``swap`` recording the choice."""
    choice = choose_swap(plan, p, rng)
    if choice.status == "swapped":
        plan = solo(plan, choice.target, plan.active[choice.source])
    return replace(plan, swap=choice)


def swap_counts(gen, clips: int, seconds: int) -> Counter:
    """How many of clips 0..clips-1 (``seconds`` long) got each status (plans only, nothing rendered)."""
    plans = (gen.plan(i, seconds) for i in range(clips))
    return Counter(plan.swap.status if plan.swap else "off" for plan in plans)
