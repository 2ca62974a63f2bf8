"""What every stage shares: the environment it runs in and the open / process / close lifecycle.

A stage is driven by ``run_stage``: ``open(ctx, env)`` once (bind / connect, load models, warm
up), then ``process()`` until it returns False (finished: end of stream, EOS seen) or the abort
event is set, then ``close()`` (always, also after an error). ``stop`` is the graceful request
(Ctrl-C, SIGTERM, --seconds): sources end their stream with an EOS message and everything
downstream drains and finalises its outputs. ``abort`` means leave now.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, ClassVar

import zmq

from stream.stages.options import StageOptions
from stream.wire.transport import Endpoints

log = logging.getLogger("icf-stream")


@dataclass
class StageEnv:
    endpoints: Endpoints
    stop: Any  # threading.Event or multiprocessing.Event: graceful end requested
    abort: Any  # leave now
    go: Any  # set once every stage is open: sources start producing
    stream_id: str = "cam0"
    ended: dict = field(default_factory=dict)  # stream id -> its stop event (multi-stream serve): that stream is over


class StageError(RuntimeError):
    """A stage cannot run (bad file, missing device, model that does not load): a clear message for the user."""


class Stage:
    """Base class. Subclasses document inputs, outputs and options in their docstring."""

    name = "stage"
    Options: ClassVar[type[StageOptions]] = StageOptions  # the stage's typed options (stream/stages/options.py)

    def __init__(self, **options: Any) -> None:
        self.options = self.Options.parse(options)  # an OptionsError names a bad option before anything opens
        self.counters: dict[str, Any] = {}

    def open(self, ctx: zmq.Context, env: StageEnv) -> None:
        self.ctx, self.env = ctx, env

    def process(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def report(self) -> dict[str, Any]:
        return {"stage": self.name, "counters": dict(self.counters)}

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n


def run_stage(stage: Stage, ctx: zmq.Context, env: StageEnv, opened: threading.Event | None = None,
              errors: list | None = None) -> dict[str, Any]:
    """Runs one stage to completion in the calling thread and returns its report. An exception
    in open / process is recorded (not raised): the caller decides how the pipeline ends."""
    report: dict[str, Any] = {"stage": stage.name}
    ok_open = False
    try:
        stage.open(ctx, env)
        ok_open = True
        if opened is not None:
            opened.set()
        while not env.abort.is_set():
            if not stage.process():
                break
    except Exception as exc:  # noqa: BLE001 - reported to the supervisor with the stage's name
        msg = str(exc) if isinstance(exc, (StageError, FileNotFoundError)) else f"{type(exc).__name__}: {exc}"
        report["error"] = f"{stage.name}: {msg}"
        if not isinstance(exc, StageError):
            report["traceback"] = traceback.format_exc()[-4000:]
        if errors is not None:
            errors.append(report["error"])
        env.stop.set()
    finally:
        try:
            stage.close()
        except Exception as exc:  # noqa: BLE001 - e.g. an output that could not be finished: the run failed
            msg = f"{stage.name}: {exc}" if isinstance(exc, StageError) else f"{stage.name}: close failed: {exc}"
            if "error" not in report:
                report["error"] = msg
                if errors is not None:
                    errors.append(msg)
        if opened is not None:
            opened.set()  # never leave the supervisor waiting on a stage that failed to open
    try:
        report.update(stage.report())
    except Exception as exc:  # noqa: BLE001 - a report bug must not cost the run its other reports
        report.setdefault("error", f"{stage.name}: report failed: {type(exc).__name__}: {exc}")
    report["opened"] = ok_open
    report["pid"] = os.getpid()  # the process that ran it: its shared-memory rings are named icf-ring-<pid>-*
    return report


IDLE_S = 30.0  # a peer that sent nothing for this long, once it has sent something, is gone (docs/protocol.md: liveness)
STARTUP_S = 120.0  # before its first message: peers on other machines start when they start


class Liveness:
    """A receiver's deadline on the peer it waits for: ``silent()`` names the peer once nothing came
    for ``idle_s`` (``startup_s`` before the first message). The clock starts when the run goes
    (``env.go``), so model loading and warm-up never count."""

    def __init__(self, env: StageEnv, peer: str, idle_s: float = IDLE_S, startup_s: float = STARTUP_S) -> None:
        self.env, self.peer = env, peer
        self.idle_ns, self.startup_ns = int(idle_s * 1e9), int(startup_s * 1e9)
        self.last: int | None = None
        self.heard_any = False

    def heard(self) -> None:
        self.last, self.heard_any = time.monotonic_ns(), True

    def silent(self) -> str | None:
        if not self.env.go.is_set():
            return None
        now = time.monotonic_ns()
        if self.last is None:
            self.last = now
        limit = self.idle_ns if self.heard_any else self.startup_ns
        if now - self.last <= limit:
            return None
        return (f"nothing from {self.peer} for {limit / 1e9:g} s{' (nothing at all since the start)' if not self.heard_any else ''}: "
                "it stopped or died without an end of stream")


def sleep_until(t_ns: int, *events: Any) -> bool:
    """Sleeps until monotonic time ``t_ns`` in short slices; False if an event interrupted it."""
    while True:
        if any(e.is_set() for e in events):
            return False
        left = (t_ns - time.monotonic_ns()) / 1e9
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))

