"""Real media: photo cut-outs of real things with recordings of those same things, on real photos.

Debian's ``tuxpaint-stamps-default`` (GPL-2) installs, under /usr/share/tuxpaint/stamps, photo
cut-outs whose PNG alpha channel is an exact object mask, many beside a real recording of that
object (NAME.png + NAME.ogg). CATALOGUE lists the ones used here with the prompt the text bank
embeds for each; the others (spoken descriptions, letters, clip-art, silent recordings, repeated
recordings) are left out. HELDOUT_OBJECTS, a fixed ~20% of them, never appear in training scenes:
the "held-out objects" split shows only those.

Backgrounds are real photos and real video frames from Debian's ``opencv-doc`` (BSD-3-Clause
sample data of OpenCV). Photos without any catalogue object in them are split into training
backgrounds and held-out backgrounds (near-duplicate pairs such as aloeL / aloeR stay on one side).

Nothing here is committed or downloaded: the media are read from the installed packages, and a
missing package is one line naming it (``StampsMissing``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from .config import SAMPLE_RATE
from .media import Media
from .priors import PriorTable
from .sounds import SOURCE_RMS

STAMPS_DIR = Path(os.environ.get("ICF_STAMPS_DIR", "/usr/share/tuxpaint/stamps"))
BACKGROUNDS_DIR = Path(os.environ.get("ICF_BACKGROUNDS_DIR", "/usr/share/doc/opencv-doc/examples/data"))
SPRITE = 160  # canonical sprite side: the photo is fitted into an S x S square, aspect kept

# stamp (path under STAMPS_DIR, no extension) -> the prompt the text bank embeds for it
CATALOGUE: dict[str, str] = {
    "animals/amphibians/frog": "a frog croaking",
    "animals/birds/blackbird": "a blackbird singing",
    "animals/birds/crow": "a crow cawing",
    "animals/birds/cuckoo": "a cuckoo calling",
    "animals/birds/drake": "a drake quacking",
    "animals/birds/duck": "a duck quacking",
    "animals/birds/gander": "a goose honking",
    "animals/birds/hen": "a hen clucking",
    "animals/birds/heron_greatblue_flying": "a heron calling",
    "animals/birds/lark": "a lark singing",
    "animals/birds/owl": "an owl hooting",
    "animals/birds/penguin": "a penguin calling",
    "animals/birds/quetzal": "a quetzal calling",
    "animals/birds/rooster": "a rooster crowing",
    "animals/birds/seagull": "a seagull crying",
    "animals/birds/tucan": "a toucan calling",
    "animals/birds/turkey": "a turkey gobbling",
    "animals/birds/vulture": "a vulture screeching",
    "animals/insects/bee": "a bee buzzing",
    "animals/insects/grasshopper": "a grasshopper chirping",
    "animals/insects/hornet": "a hornet buzzing",
    "animals/insects/xanthia": "a moth fluttering",
    "animals/mammals/apes/chimp": "a chimpanzee screaming",
    "animals/mammals/apes/gorilla": "a gorilla grunting",
    "animals/mammals/aquatic/dolphin": "a dolphin clicking",
    "animals/mammals/aquatic/orca": "an orca calling",
    "animals/mammals/aquatic/sea_lion": "a sea lion barking",
    "animals/mammals/aquatic/whale": "a whale singing",
    "animals/mammals/badger": "a badger growling",
    "animals/mammals/bears/bear": "a bear growling",
    "animals/mammals/bovines/bison": "a bison grunting",
    "animals/mammals/bovines/bull": "a bull bellowing",
    "animals/mammals/bovines/cow": "a cow mooing",
    "animals/mammals/bovines/cow_white": "a white cow lowing",
    "animals/mammals/bovines/goat": "a goat bleating",
    "animals/mammals/bovines/sheep": "a sheep bleating",
    "animals/mammals/bovines/sheep_lamb": "a lamb bleating",
    "animals/mammals/camel/camel": "a camel groaning",
    "animals/mammals/camel/dromedary": "a dromedary grumbling",
    "animals/mammals/cats/lion": "a lion roaring",
    "animals/mammals/cats/tiger": "a tiger growling",
    "animals/mammals/deer/caribou": "a caribou grunting",
    "animals/mammals/deer/deer": "a deer calling",
    "animals/mammals/deer/doe": "a doe bleating",
    "animals/mammals/dogs/dog": "a dog barking",
    "animals/mammals/dogs/fox": "a fox yelping",
    "animals/mammals/elephant": "an elephant trumpeting",
    "animals/mammals/equines/donkey": "a donkey braying",
    "animals/mammals/equines/horse": "a horse neighing",
    "animals/mammals/equines/zebra": "a zebra barking",
    "animals/mammals/ferret": "a ferret chattering",
    "animals/mammals/hippopotamus": "a hippo grunting",
    "animals/mammals/pig": "a pig oinking",
    "animals/mammals/pig_golden": "a piglet squealing",
    "animals/mammals/rodents/mouse": "a mouse squeaking",
    "animals/mammals/rodents/rabbit": "a rabbit squeaking",
    "animals/mammals/rodents/squirrel": "a squirrel chattering",
    "animals/marsupials/koala": "a koala bellowing",
    "hobbies/camera_35mm": "a camera shutter clicking",
    "hobbies/music/percussion/cymbal_crash": "a cymbal crashing",
    "hobbies/music/percussion/drum_tomtom_floor": "a tom-tom drum beating",
    "hobbies/music/percussion/drumkit": "a drum kit playing",
    "hobbies/music/string/cello": "a cello playing",
    "hobbies/music/string/violin": "a violin playing",
    "hobbies/music/wind/bassoon": "a bassoon playing",
    "household/arttools/scissors_small_open": "scissors snipping",
    "household/kettle": "a kettle whistling",
    "household/rubberduck": "a rubber duck squeaking",
    "household/toilet": "a toilet flushing",
    "household/tools/hammer": "a hammer hitting",
    "household/tools/mallet_metal": "a mallet striking",
    "household/tools/saw": "a saw cutting wood",
    "vehicles/emergency/firetruck": "a fire truck siren wailing",
}
# Never in a training scene (photo or recording): the held-out-objects split shows only these. One or two per
# family, none of them in the class priors below.
HELDOUT_OBJECTS: tuple[str, ...] = (
    "blackbird", "turkey", "hornet", "gorilla", "orca", "bison", "sheep_lamb", "dromedary",
    "tiger", "zebra", "squirrel", "koala", "cello", "saw", "toilet",
)  # fmt: skip
# Class priors of the biased / prior-conflict scenes (as SynthAVS v2): LOUD stamp -> its silent companion,
# pairs that share scenes in life (a rooster beside a hen, a drum kit beside a cymbal).
LOUD_COMPANIONS: dict[str, str] = {
    "dog": "rabbit", "rooster": "hen", "cow": "bull", "horse": "donkey",
    "sheep": "goat", "drumkit": "cymbal_crash", "violin": "bassoon", "firetruck": "mallet_metal",
}  # fmt: skip
# Background photos (opencv-doc examples/data) with none of the catalogue's objects in them.
TRAIN_BACKGROUNDS: tuple[str, ...] = (
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "board.jpg", "graf1.png", "graf3.png", "leuvenA.jpg",
    "leuvenB.jpg", "fruits.jpg", "box_in_scene.png", "starry_night.jpg", "stuff.jpg", "ela_original.jpg",
)  # fmt: skip
HELDOUT_BACKGROUNDS: tuple[str, ...] = (
    "building.jpg", "home.jpg", "basketball1.png", "basketball2.png", "rubberwhale1.png", "rubberwhale2.png",
    "licenseplate_motion.jpg",
)  # fmt: skip
TRAIN_VIDEO = "vtest.avi"  # people walking in a hall: VIDEO_FRAMES real video frames join the training backgrounds
VIDEO_FRAMES = 12
DISTRACTOR_DIRS = ("food", "plants", "clothes")  # silent photo cut-outs (no recording) pasted into backgrounds


class StampsMissing(RuntimeError):
    """The real-media packages are not installed (the message names the one to install)."""


def stamp_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def stamp_paths(objects: str) -> list[str]:
    """The catalogue paths of ``objects`` ("seen": the training stamps, "heldout"), in catalogue order
    (for the seen ones: the class index order of the ``stamps`` text bank)."""
    return [p for p in CATALOGUE if (stamp_name(p) in HELDOUT_OBJECTS) == (objects == "heldout")]


def object_names(objects: str) -> list[str]:
    return [stamp_name(p) for p in stamp_paths(objects)]


def seen_names() -> list[str]:
    return object_names("seen")


def seen_prompts() -> list[str]:
    return [CATALOGUE[p] for p in stamp_paths("seen")]


def check_installed() -> None:
    """Raises StampsMissing naming the Debian package when the media are not there."""
    if not (STAMPS_DIR / "animals/mammals/dogs/dog.ogg").is_file():
        raise StampsMissing(
            f"real-media scenes need Debian's tuxpaint-stamps-default (not found under {STAMPS_DIR}): "
            "apt-get install tuxpaint-stamps-default"
        )
    if not (BACKGROUNDS_DIR / TRAIN_BACKGROUNDS[0]).is_file():
        raise StampsMissing(
            f"real-media scenes need Debian's opencv-doc for their background photos (not found under {BACKGROUNDS_DIR}): "
            "apt-get install opencv-doc"
        )


def stamps_available() -> bool:
    try:
        check_installed()
    except StampsMissing:
        return False
    return True


@dataclass(frozen=True)
class Stamp:
    name: str
    prompt: str
    rgb: np.ndarray  # float32 [S, S, 3] 0..255, the photo fitted into the square (aspect kept)
    alpha: np.ndarray  # float32 [S, S] 0..1, the PNG's alpha channel: the exact object mask
    sound: np.ndarray  # float64 [n] at 16 kHz, silences squeezed, RMS SOURCE_RMS over the sounding parts


def _read_rgba(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise StampsMissing(f"cannot read {path}: reinstall tuxpaint-stamps-default (apt-get install --reinstall ...)")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    elif img.shape[2] == 3:
        img = np.dstack([img, np.full(img.shape[:2], 255, img.dtype)])
    if img.dtype != np.uint8:
        img = (img / 257).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


def _fit_square(rgba: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The cut-out (cropped to its alpha box) fitted into a side x side square: (rgb [S,S,3], alpha [S,S])."""
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    if len(ys):
        rgba = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = rgba.shape[:2]
    scale = (side - 2) / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = cv2.resize(rgba.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((side, side, 4), np.float32)
    y0, x0 = (side - nh) // 2, (side - nw) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = small
    return out[..., :3], out[..., 3] / 255.0


def decode_audio(path: Path) -> np.ndarray:
    """Any file PyAV reads -> float64 mono at 16 kHz."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        parts = [g.to_ndarray().reshape(-1) for f in container.decode(stream) for g in resampler.resample(f)]
        parts += [g.to_ndarray().reshape(-1) for g in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def prepare_sound(x: np.ndarray) -> np.ndarray:
    """Squeeze silences longer than 0.25 s down to 0.1 s (a looped recording then sounds in every 1 s
    segment the ground truth says it does) and scale the sounding parts to RMS SOURCE_RMS."""
    if len(x) == 0 or not np.any(x):
        raise ValueError("the recording is silent")
    env = np.sqrt(np.convolve(x**2, np.ones(400) / 400, mode="same"))  # 25 ms RMS envelope
    loud = env > 0.05 * env.max()
    keep = loud.copy()
    quiet_runs = np.flatnonzero(np.diff(np.concatenate([[1], loud.astype(np.int8), [1]])))
    for a, b in zip(quiet_runs[::2], quiet_runs[1::2]):  # [a, b) is a quiet run
        if b - a <= int(0.25 * SAMPLE_RATE):
            keep[a:b] = True
        else:  # a long pause keeps 50 ms at each end
            keep[a : a + 800] = True
            keep[max(a, b - 800) : b] = True
    y = x[keep]
    rms = float(np.sqrt(np.mean(y[env[keep] > 0.05 * env.max()] ** 2)))
    return y * (SOURCE_RMS / max(rms, 1e-9))


@cache
def _stamp(path: str) -> Stamp:
    rgb, alpha = _fit_square(_read_rgba(STAMPS_DIR / f"{path}.png"), SPRITE)
    sound = prepare_sound(decode_audio(STAMPS_DIR / f"{path}.ogg"))
    for a in (rgb, alpha, sound):
        a.setflags(write=False)
    return Stamp(stamp_name(path), CATALOGUE[path], rgb, alpha, sound)


@cache
def _backgrounds(which: str) -> tuple[np.ndarray, ...]:
    names = TRAIN_BACKGROUNDS if which == "train" else HELDOUT_BACKGROUNDS
    out = []
    for name in names:
        img = cv2.imread(str(BACKGROUNDS_DIR / name), cv2.IMREAD_COLOR)
        if img is None:
            raise StampsMissing(f"cannot read background {BACKGROUNDS_DIR / name}: apt-get install --reinstall opencv-doc")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if which == "train":
        import av

        with av.open(str(BACKGROUNDS_DIR / TRAIN_VIDEO)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        out += [frames[i] for i in np.linspace(0, len(frames) - 1, VIDEO_FRAMES).astype(int)]
    return tuple(out)


@cache
def _distractors() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Silent photo cut-outs (no recording beside them), every 4th in sorted order to keep loading fast."""
    paths = sorted(p for d in DISTRACTOR_DIRS for p in (STAMPS_DIR / d).rglob("*.png") if not p.with_suffix(".ogg").exists())
    return tuple(_fit_square(_read_rgba(p), 96) for p in paths[::4])


class StampsMedia(Media):
    """Real cut-outs + real recordings (the classes of ``objects``) on real backgrounds (``backgrounds``)."""

    name = "stamps"

    def __init__(self, stamps: list[Stamp], backgrounds: tuple[np.ndarray, ...], priors: PriorTable) -> None:
        self.stamps = stamps
        self.class_names = [s.name for s in stamps]
        self.prompts = [s.prompt for s in stamps]
        self.backgrounds = backgrounds
        self.priors = priors

    @classmethod
    @cache
    def load(cls, *, objects: str = "seen", backgrounds: str = "train") -> StampsMedia:
        """The library for one split (cached per process: decoding the recordings takes ~2 s)."""
        check_installed()
        heldout = objects == "heldout"
        stamps = [_stamp(p) for p in stamp_paths(objects)]
        names = [s.name for s in stamps]
        if heldout:
            priors = PriorTable(loud=(), quiet=tuple(range(len(names))), companion={}, num_classes=len(names))
        else:
            loud = tuple(names.index(k) for k in LOUD_COMPANIONS)
            companion = {names.index(k): names.index(v) for k, v in LOUD_COMPANIONS.items()}
            quiet = tuple(i for i in range(len(names)) if i not in loud)
            priors = PriorTable(loud=loud, quiet=quiet, companion=companion, num_classes=len(names))
        return cls(stamps, _backgrounds(backgrounds), priors)

    def sprite(self, k: int, angle_deg: float, brightness: float) -> np.ndarray:
        """Photos tilt gently (a third of the drawn angle) and are mirrored when the angle is negative."""
        s = self.stamps[k]
        rgba = np.concatenate([np.clip(s.rgb * brightness, 0, 255), s.alpha[..., None]], axis=2)
        if angle_deg < 0:
            rgba = rgba[:, ::-1]
        rot = cv2.getRotationMatrix2D((SPRITE / 2, SPRITE / 2), angle_deg / 3.0, 1.0)
        return cv2.warpAffine(np.ascontiguousarray(rgba), rot, (SPRITE, SPRITE), flags=cv2.INTER_LINEAR)

    def background(self, rng: np.random.Generator, height: int, width: int, n_distractors: int) -> np.ndarray:
        """A random crop (40-100% of the short side) of one background, maybe mirrored, brightness
        jittered, with up to two silent cut-outs pasted in (a third of the drawn distractor count)."""
        photo = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        ph, pw = photo.shape[:2]
        aspect = width / height
        ch = int(min(ph, pw / aspect) * rng.uniform(0.4, 1.0))
        cw = int(ch * aspect)
        y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        img = cv2.resize(photo[y0 : y0 + ch, x0 : x0 + cw], (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = img * rng.uniform(0.75, 1.2)
        pool = _distractors()
        for _ in range(min(2, n_distractors // 3)):
            rgb, alpha = pool[int(rng.integers(len(pool)))]
            side = int(min(height, width) * rng.uniform(0.15, 0.3))
            cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
            rgb_s = cv2.resize(rgb, (side, side))
            a_s = cv2.resize(alpha, (side, side))[..., None]
            x0, y0 = cx - side // 2, cy - side // 2
            ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
            if ax1 > ax0 and ay1 > ay0:
                sl = (slice(ay0 - y0, ay1 - y0), slice(ax0 - x0, ax1 - x0))
                region = img[ay0:ay1, ax0:ax1]
                img[ay0:ay1, ax0:ax1] = region + a_s[sl] * (rgb_s[sl] - region)
        return np.clip(img, 0, 255)

    def sound(self, k: int, t: np.ndarray, *, pitch: float, offset: float, seed: int) -> np.ndarray:
        """The recording looped from a clip-specific point (``offset`` of a loop), played ``pitch`` times
        faster (pitch and tempo together, about +-8%), linearly interpolated."""
        x = self.stamps[k].sound
        n = len(x)
        pos = np.mod((t + offset * n / SAMPLE_RATE) * pitch * SAMPLE_RATE, n)
        i0 = np.floor(pos).astype(np.int64)
        frac = pos - i0
        return x[i0] * (1.0 - frac) + x[(i0 + 1) % n] * frac


__all__ = [
    "CATALOGUE",
    "HELDOUT_OBJECTS",
    "LOUD_COMPANIONS",
    "StampsMedia",
    "StampsMissing",
    "check_installed",
    "object_names",
    "stamp_paths",
    "seen_names",
    "seen_prompts",
    "stamps_available",
]
