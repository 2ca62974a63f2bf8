"""Typed options of every stream stage: one frozen dataclass per stage, defaults written once.

The graph (stream/graph/graph.py) turns each stage's option dict into its dataclass when it is built,
in the supervisor, so a misspelt or out-of-range option fails there with a message naming the
stage, the option and what it takes, instead of inside a child process. Stages receive the
dataclass (``Stage.Options.parse``), never a dict. This module imports only the standard library,
so checking a graph needs neither zmq, PyAV, OpenCV nor a model.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ClassVar, get_type_hints


class OptionsError(ValueError):
    """A stage option is unknown, missing or out of range: the message says which and what it takes."""


@dataclass(frozen=True)
class StageOptions:
    stage: ClassVar[str] = "stage"

    @classmethod
    def parse(cls, options: dict[str, Any] | StageOptions | None = None) -> StageOptions:
        """The dataclass for ``options``: unknown names, missing required ones and wrong types are
        refused with an OptionsError; numbers are converted (an int where a float is expected)."""
        if isinstance(options, cls):
            return options
        options = dict(options or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise OptionsError(f"{cls.stage}: unknown option(s) {unknown}; it takes {sorted(fields)}")
        missing = [n for n, f in fields.items() if n not in options
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise OptionsError(f"{cls.stage}: option(s) {missing} are required")
        hints = get_type_hints(cls)
        values = {name: _coerce(cls.stage, name, value, hints[name]) for name, value in options.items()}
        return cls(**values)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Ranges and choices; subclasses refuse what cannot work."""

    def _require(self, ok: bool, name: str, what: str) -> None:
        if not ok:
            raise OptionsError(f"{self.stage}: option {name}={getattr(self, name)!r} {what}")


def _coerce(stage: str, name: str, value: Any, hint: Any) -> Any:
    """``value`` as the annotated type: int / float / bool / str / dict, each optionally None."""
    text = " or ".join(getattr(t, "__name__", str(t)) for t in getattr(hint, "__args__", (hint,)))
    if value is None:
        if type(None) in getattr(hint, "__args__", ()):
            return None
        raise OptionsError(f"{stage}: option {name} may not be None")
    kinds = [k for k in (bool, int, float, str, dict, list) if k in getattr(hint, "__args__", (hint,))]
    if isinstance(value, bool) and bool not in kinds:
        raise OptionsError(f"{stage}: option {name}={value!r} must be {text}")
    if str in kinds and isinstance(value, os.PathLike):
        return os.fspath(value)
    for kind in kinds:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind in (str, dict, list) and isinstance(value, kind):
            return value
    if int in kinds and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if float in kinds and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise OptionsError(f"{stage}: option {name}={value!r} must be {text}")


@dataclass(frozen=True)
class SourceOptions(StageOptions):
    """What every source takes."""

    seconds: float | None = None  # stop after this much stream time (None: until the media / forever)
    pace: str = "realtime"  # realtime: frames released at their time; fast: as fast as they are read
    video_subs: int = 1  # subscribers to wait for before frame 0 (the graph fills these in)
    audio_subs: int = 1
    subscriber_timeout_s: float = 10.0  # how long to wait for them

    def check(self) -> None:
        self._require(self.pace in ("realtime", "fast"), "pace", "must be realtime or fast")
        self._require(self.seconds is None or self.seconds > 0, "seconds", "must be > 0 (or None)")
        self._require(self.video_subs >= 0 and self.audio_subs >= 0, "video_subs", "subscriber counts must be >= 0")
        self._require(self.subscriber_timeout_s > 0, "subscriber_timeout_s", "must be > 0")


@dataclass(frozen=True)
class SyntheticOptions(SourceOptions):
    stage: ClassVar[str] = "source.synthetic"
    width: int = 640
    height: int = 480
    fps: int = 30
    mode: str = "single"  # SynthAVS scene mode
    seed: int = 0
    media: str = "synth"  # synth: SynthAVS shapes and tones; stamps: real photos + their recordings (synthavs.stamps),
    #   seen objects on held-out background photos

    def check(self) -> None:
        super().check()
        self._require(self.media in ("synth", "stamps"), "media", "must be synth or stamps")
        self._require(self.width > 0 and self.height > 0, "width", "frame size must be positive")
        self._require(self.fps > 0, "fps", "must be > 0")


@dataclass(frozen=True)
class FileOptions(SourceOptions):
    stage: ClassVar[str] = "source.file"
    video: str = ""  # the media file or a network stream URL, rtsp:// http:// udp:// (required)
    audio: str | None = None  # audio from another file or URL (default: the video's own track)

    def check(self) -> None:
        super().check()
        self._require(bool(self.video), "video", "must name a video file")


@dataclass(frozen=True)
class LiveOptions(SourceOptions):
    stage: ClassVar[str] = "source.live"
    camera: int | str = 0  # index, device path or URL
    mic: int | str | None = None  # "default", an index, a name fragment; None: no microphone (silence)
    width: int | None = None  # requested from the camera (None: its default)
    height: int | None = None
    fps: int | None = None
    retries: int = 5  # reopen attempts before giving up
    backoff_s: float = 0.5  # first wait between attempts, doubling

    def check(self) -> None:
        super().check()
        self._require(self.retries >= 0, "retries", "must be >= 0")
        self._require(self.backoff_s >= 0, "backoff_s", "must be >= 0")


@dataclass(frozen=True)
class ContextOptions(StageOptions):
    stage: ClassVar[str] = "context"
    workers: int = 1  # how many workers to expect (one worker and no hop: the segmenter, MultiOptions)
    audio_wait_ms: float = 30.0  # how long a frame may wait for its audio to arrive
    job_timeout_s: float = 5.0  # a job whose worker never answers is given up
    eos_timeout_s: float = 10.0  # after the source's EOS, how long to wait for workers
    idle_timeout_s: float = 30.0  # a source that sends nothing this long (without an EOS) is gone (docs/protocol.md)

    def check(self) -> None:
        self._require(self.workers >= 1, "workers", "must be >= 1")
        self._require(self.audio_wait_ms >= 0, "audio_wait_ms", "must be >= 0")
        self._require(self.job_timeout_s > 0 and self.eos_timeout_s > 0 and self.idle_timeout_s > 0, "job_timeout_s", "timeouts must be > 0")


@dataclass(frozen=True)
class WorkerOptions(StageOptions):
    stage: ClassVar[str] = "worker"
    backend: dict | None = None  # spec for stream.stages.models.open_backend (required)
    index: int = 0  # worker number
    top_k: int = 3  # concepts named per frame
    send_image: bool = True  # return the frame with the mask (off when nothing draws)

    def check(self) -> None:
        self._require(isinstance(self.backend, dict), "backend", "must be a backend spec (see stream.stages.models)")
        self._require(self.index >= 0 and self.top_k >= 0, "index", "index and top_k must be >= 0")


@dataclass(frozen=True)
class SinkOptions(StageOptions):
    stage: ClassVar[str] = "sink"
    record: str | None = None  # MP4 overlay + audio
    masks: str | None = None  # npz of every mask
    metrics: str | None = None  # JSONL log
    publish: bool = False  # masks on a PUB socket (the masks link)
    publish_hwm: int = 8
    display: bool = False  # a window (only with a display)
    events: str | None = None  # JSONL of started / stopped sounding events (stream/stages/events.py; also published with publish)
    view: str | None = None  # the live view server's feed address (stream/view/feed.py): every result offered, never waited for
    max_age_ms: float = 500.0  # a result older than this is skipped when a newer one waits
    reorder_size: int = 16
    reorder_timeout_ms: float = 500.0
    fps_hint: int = 30  # recording frame rate
    record_audio_from: str | None = None  # media file whose own audio track the recording copies (None: the stream's 16 kHz audio)
    eos_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0  # a segmenter that sends nothing this long (without an EOS) is gone (docs/protocol.md)

    def check(self) -> None:
        self._require(self.idle_timeout_s > 0, "idle_timeout_s", "must be > 0")
        self._require(self.max_age_ms > 0, "max_age_ms", "must be > 0")
        self._require(self.reorder_size >= 1, "reorder_size", "must be >= 1")
        self._require(self.reorder_timeout_ms >= 0, "reorder_timeout_ms", "times must be >= 0")
        self._require(self.fps_hint > 0 and self.publish_hwm > 0, "fps_hint", "fps_hint and publish_hwm must be > 0")
        self._require(self.eos_timeout_s > 0, "eos_timeout_s", "must be > 0")


@dataclass(frozen=True)
class MultiOptions(StageOptions):
    stage: ClassVar[str] = "multi"
    # [{"stream_id", "endpoints"}] one lane per stream; None: one lane, the graph's own stream (the single-stream segmenter)
    streams: list | None = None
    backend: dict | None = None  # batched backend spec (stream/stages/multistream.py; required)
    max_batch: int | None = None  # cap on frames per step (default: the largest batch size the backend has)
    deadline_ms: float = 5.0  # longest a ready frame waits for the other streams
    audio_wait_ms: float = 30.0
    send_image: bool = False  # results carry the frame too (when the sink draws on it)
    top_k: int = 3  # concepts named per frame
    idle_timeout_s: float = 30.0  # a stream whose source sends nothing this long (without an EOS) has ended

    def check(self) -> None:
        self._require(self.idle_timeout_s > 0, "idle_timeout_s", "must be > 0")
        self._require(self.streams is None or isinstance(self.streams, list), "streams", "must be a list of streams")
        self._require(isinstance(self.backend, dict), "backend", "must be a backend spec (see stream.stages.multistream)")
        self._require(self.max_batch is None or self.max_batch >= 1, "max_batch", "must be >= 1")
        self._require(self.top_k >= 0, "top_k", "must be >= 0")
        self._require(self.deadline_ms >= 0 and self.audio_wait_ms >= 0, "deadline_ms", "waits must be >= 0")


SOURCES: dict[str, type[SourceOptions]] = {"synthetic": SyntheticOptions, "file": FileOptions, "live": LiveOptions}
STAGES: dict[str, type[StageOptions]] = {"context": ContextOptions, "worker": WorkerOptions, "sink": SinkOptions,
                                          "multi": MultiOptions}


def options_class(spec: dict[str, Any]) -> type[StageOptions]:
    """The options dataclass of a stage spec ({"type": ..., "kind": ..., "options": {...}})."""
    kind = spec["type"]
    if kind == "source":
        if spec.get("kind") not in SOURCES:
            raise OptionsError(f"unknown source kind {spec.get('kind')!r}; choose one of {sorted(SOURCES)}")
        return SOURCES[spec["kind"]]
    if kind not in STAGES:
        raise OptionsError(f"unknown stage type {kind!r}")
    return STAGES[kind]
