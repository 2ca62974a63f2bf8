"""Sounding events: "started sounding" / "stopped sounding" per stream, for alerts.

A stream sounds when the model hears a concept (stream/stages/hearing.py's verdict is a concept name, not
"nothing" or "unsure") AND paints it (its mask covers at least hearing.MASK_EMPTY of the frame).
A change counts once it has held for HOLD_FRAMES delivered frames in a row, so one odd frame never
fires a started / stopped pair. A change of concept while sounding is a "stopped" for the old one
and a "started" for the new one.

Each event: ``{"event": "started" | "stopped", "stream", "concept", "pts_ms" (stream time of the
frame that confirmed it), "time" (wall clock, ISO 8601 UTC), "mask_area" (share of the frame: the
confirming frame's for started, the largest while it sounded for stopped), "seq"}``, plus
``"duration_s"`` (stream time) and ``"started_pts_ms"`` for stopped. The sink writes them as JSON
lines (``events`` option) and publishes them on the PUB socket as ``event`` messages (a header
only; docs/protocol.md), next to the masks.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stream.stages.hearing import MASK_EMPTY

HOLD_FRAMES = 3  # delivered frames a change must hold before it is an event (0.1 s at 30 fps)
QUIET = ("nothing", "unsure", None, "")


class SoundingEvents:
    """Feed every delivered frame of one stream in order (``update``); get back the events it confirms."""

    def __init__(self, stream: str, hold: int = HOLD_FRAMES) -> None:
        self.stream, self.hold = stream, max(int(hold), 1)
        self.current: str | None = None  # the concept sounding now (None: silence)
        self.started_pts_ns = 0
        self.peak_area = 0.0
        self.candidate: str | None = None
        self.run = 0  # frames in a row the candidate has held
        self.count = 0

    @staticmethod
    def sounding(hears: str | None, mask_area: float) -> str | None:
        return None if hears in QUIET or mask_area < MASK_EMPTY else hears

    def _event(self, kind: str, concept: str, seq: int, pts_ns: int, area: float) -> dict[str, Any]:
        self.count += 1
        return {"event": kind, "stream": self.stream, "concept": concept, "seq": seq, "pts_ms": round(pts_ns / 1e6, 3),
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "mask_area": round(area, 5)}

    def update(self, seq: int, pts_ns: int, hears: str | None, mask_area: float) -> list[dict[str, Any]]:
        now = self.sounding(hears, mask_area)
        if now == self.current:
            self.candidate, self.run = None, 0
            if now is not None:
                self.peak_area = max(self.peak_area, mask_area)
            return []
        self.run = self.run + 1 if now == self.candidate else 1
        self.candidate = now
        if self.run < self.hold:
            return []
        return self._switch(now, seq, pts_ns, mask_area)

    def _switch(self, now: str | None, seq: int, pts_ns: int, area: float) -> list[dict[str, Any]]:
        out = []
        if self.current is not None:
            ev = self._event("stopped", self.current, seq, pts_ns, self.peak_area)
            ev.update(started_pts_ms=round(self.started_pts_ns / 1e6, 3), duration_s=round((pts_ns - self.started_pts_ns) / 1e9, 3))
            out.append(ev)
        if now is not None:
            out.append(self._event("started", now, seq, pts_ns, area))
        self.current, self.started_pts_ns, self.peak_area = now, pts_ns, (area if now is not None else 0.0)
        self.candidate, self.run = None, 0
        return out

    def finish(self, seq: int, pts_ns: int) -> list[dict[str, Any]]:
        """At the stream's end: a sound still going stops there."""
        return self._switch(None, seq, pts_ns, 0.0) if self.current is not None else []


class EventLog:
    """Events as JSON lines, line-buffered (a crash keeps what was written)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", buffering=1)

    def write(self, event: dict[str, Any]) -> None:
        self.file.write(json.dumps(event, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.file.close()
