"""A stream's order, judged message by message: ``History`` (a seq / pts far beyond the stream's own recent
history is refused, a stream that really jumped is followed after RESYNC consistent messages) and ``SeqChain``
(the segmenter's frame order: duplicates, late frames, restarts and gaps, counted). Headers are validated first
(stream/wire/protocol.py); this module only orders what passed.
"""

from __future__ import annotations

from typing import Any

MAX_SEQ_JUMP = 30 * 600  # 10 minutes of frames at 30 fps lost in a row: any bigger jump is forged
MAX_PTS_JUMP_NS = 600 * 1_000_000_000  # 10 minutes of stream time
RESYNC = 8  # consistent messages it takes to follow a stream that really jumped


class History:
    """A stream's own recent (seq, pts), against which the next message is judged. A message more
    than MAX_SEQ_JUMP frames or MAX_PTS_JUMP_NS ahead is refused (one forged number must not
    hijack ordering or freeze a recording); going back (a restarted source, reordered results) is
    followed. A stream that really jumped is followed after RESYNC messages consistent with each
    other, so a refusal can never become permanent."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.pts: int | None = None
        self.candidate: tuple[int, int] | None = None
        self.votes = 0
        self.refused = 0
        self.resyncs = 0

    @staticmethod
    def _near(seq: int, pts: int, ref_seq: int, ref_pts: int) -> bool:
        return seq - ref_seq <= MAX_SEQ_JUMP and pts - ref_pts <= MAX_PTS_JUMP_NS

    def accept(self, seq: int, pts: int) -> bool:
        if self.seq is None or self._near(seq, pts, self.seq, self.pts):
            self.seq, self.pts, self.candidate, self.votes = seq, pts, None, 0
            return True
        if self.candidate is not None and self._near(seq, pts, *self.candidate) and seq >= self.candidate[0]:
            self.votes += 1
        else:
            self.votes = 1
        self.candidate = (seq, pts)
        if self.votes >= RESYNC:
            self.resyncs += 1
            self.seq, self.pts, self.candidate, self.votes = seq, pts, None, 0
            return True
        self.refused += 1
        return False


SEQ_WINDOW = 64  # a frame up to this far behind the newest is a duplicate; further back, a restart


class SeqChain:
    """One stream's frame order at the segmenter (the context stage and every multi-stream lane).
    ``admit`` says whether a frame joins the chain, counting why not into ``counters``: a seq / pts
    far beyond the stream's own history is refused (``History``); one up to SEQ_WINDOW behind the
    newest is a duplicate or late (never reordered), unless RESYNC of them arrive in a row, then the
    chain follows them (a wild, forged head must not freeze it); one further back is a restarted
    source; a gap ahead counts the frames lost on the way."""

    def __init__(self) -> None:
        self.history = History()
        self.last_seq: int | None = None
        self.stale_run = 0  # frames in a row behind the newest seq

    def admit(self, seq: int, pts_ns: int, counters: dict[str, Any]) -> bool:
        def count(key: str, n: int = 1) -> None:
            counters[key] = counters.get(key, 0) + n

        if not self.history.accept(seq, pts_ns):
            count("refused_jumps")
            return False
        expected = 0 if self.last_seq is None else self.last_seq + 1
        if expected - SEQ_WINDOW <= seq < expected:
            self.stale_run += 1
            if self.stale_run < RESYNC:
                count("stale")
                return False
            count("seq_resyncs")
        self.stale_run = 0
        if seq < expected:
            count("seq_resets")
        else:
            count("transport_gaps", seq - expected)
        self.last_seq = seq
        return True
