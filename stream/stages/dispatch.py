"""Who gets the next job: the context stage's bookkeeping of workers, credit and jobs in flight.

Workers ask for work (a ``ready`` message is one credit); a job is cut only when a worker is idle,
so it always carries the newest frame. Jobs in flight are kept in dispatch order, because their
texts must enter the text context in that order (a job whose worker never answers is given up
after ``job_timeout_ns``). At the end of the stream every worker gets exactly one ``eos``.
No sockets here: the stage sends, this class decides and remembers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

Texts = tuple[np.ndarray, np.ndarray]  # (frame_text [1, D], segment_text [1, D]) of one answered job


@dataclass
class Job:
    """One frame sent to a worker, until its texts are applied to the context."""

    seq: int  # the frame's sequence number
    pts_ns: int  # its stream time (the context's clock)
    sent_ns: int  # when it was sent (for the timeout)
    texts: Texts | None = None  # the worker's answer; None if it failed or never answered
    done: bool = False  # answered (successfully or not)


class Dispatcher:
    """Credit, idle workers, jobs in flight and end of stream for one context stage."""

    def __init__(self, expected_workers: int, job_timeout_ns: int) -> None:
        self.expected_workers = expected_workers
        self.job_timeout_ns = job_timeout_ns
        self.workers: set[bytes] = set()  # every worker that has registered
        self.refused: set[bytes] = set()  # workers whose model differs from the stream's: never given work
        self.idle: deque[bytes] = deque()  # workers with a credit, oldest first
        self.in_flight: deque[Job] = deque()  # dispatch order
        self.eos_sent: set[bytes] = set()

    def join(self, worker: bytes) -> None:
        self.workers.add(worker)

    def refuse(self, worker: bytes) -> None:
        """A worker whose ``ready`` names a different (or no) geometry: it never gets a job."""
        self.refused.add(worker)

    def lose(self, worker: bytes) -> None:
        """A worker that cannot be reached any more."""
        self.workers.discard(worker)

    def answered(self, worker: bytes, seq: int | None, texts: Texts | None) -> None:
        """A ``ready`` message: the answer to job ``seq`` (if any) and one credit."""
        for job in self.in_flight:
            if job.seq == seq and not job.done:
                job.texts, job.done = texts, True
        if worker not in self.idle and worker not in self.eos_sent:
            self.idle.append(worker)

    def has_credit(self) -> bool:
        return bool(self.idle)

    def next_worker(self) -> bytes | None:
        """The idle worker to send the next message to (its credit is used), or None."""
        return self.idle.popleft() if self.idle else None

    def sent(self, seq: int, pts_ns: int, now_ns: int) -> None:
        self.in_flight.append(Job(seq, pts_ns, now_ns))

    def settled(self, now_ns: int) -> Iterator[tuple[Job, int | None]]:
        """Jobs answered or timed out, oldest first, each with the pts of the job after it (None
        if none is in flight): the caller applies their texts strictly in this order."""
        while self.in_flight and (self.in_flight[0].done or now_ns - self.in_flight[0].sent_ns > self.job_timeout_ns):
            job = self.in_flight.popleft()
            yield job, self.in_flight[0].pts_ns if self.in_flight else None

    def eos_to(self, worker: bytes) -> None:
        self.eos_sent.add(worker)

    def all_ended(self) -> bool:
        """Every worker (at least as many as expected) has had its eos and nothing is in flight."""
        return len(self.eos_sent) >= max(self.expected_workers, len(self.workers)) and not self.in_flight
