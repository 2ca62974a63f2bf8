"""Typed stage options (checked when the graph is built) and the context stage's dispatcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stream import PipelineConfig, PipelineError, run_pipeline
from stream.graph.graph import stage_specs
from stream.stages.context_stage import ContextStage
from stream.stages.dispatch import Dispatcher
from stream.stages.options import ContextOptions, FileOptions, OptionsError, SinkOptions, SyntheticOptions


def test_defaults_and_conversions():
    o = SinkOptions.parse({"record": Path("out/x.mp4"), "max_age_ms": 300})
    assert o.record == "out/x.mp4" and o.max_age_ms == 300.0 and isinstance(o.max_age_ms, float)
    assert o.reorder_size == 16 and o.publish is False
    assert SyntheticOptions.parse({}).fps == 30 and SyntheticOptions.parse({"seconds": 2}).seconds == 2.0
    with pytest.raises(AttributeError):
        o.max_age_ms = 1  # frozen


@pytest.mark.parametrize(("cls", "options", "message"), [
    (SinkOptions, {"max_age": 10}, r"sink: unknown option\(s\) \['max_age'\]; it takes \[.*'max_age_ms'"),
    (SinkOptions, {"reorder_size": "many"}, r"sink: option reorder_size='many' must be int"),
    (SinkOptions, {"publish": 1}, r"sink: option publish=1 must be bool"),
    (ContextOptions, {"workers": 0}, r"context: option workers=0 must be >= 1"),
    (SyntheticOptions, {"pace": "slow"}, r"source.synthetic: option pace='slow' must be realtime or fast"),
    (FileOptions, {}, r"source.file: option video='' must name a video file"),
])
def test_bad_options_are_named(cls, options, message):
    with pytest.raises(OptionsError, match=message):
        cls.parse(options)


def test_stage_refuses_bad_options_when_built():
    with pytest.raises(OptionsError, match="context: unknown option"):
        ContextStage(workerz=2)


def test_graph_checks_options_in_the_supervisor():
    """A misspelt option fails before any process starts, with a message naming it."""
    cfg = PipelineConfig(source={"kind": "synthetic", "seconds": 1}, backend={"kind": "null"},
                         transport="ipc", sink={"max_age": 100})
    with pytest.raises(PipelineError, match=r"bad pipeline configuration: sink: unknown option\(s\) \['max_age'\]"):
        run_pipeline(cfg)
    with pytest.raises(PipelineError, match="unknown source kind 'webcam'"):
        stage_specs(PipelineConfig(source={"kind": "webcam"}, backend={"kind": "null"}))
    specs = stage_specs(PipelineConfig(source={"kind": "file", "video": "a.mp4"}, backend={"kind": "null"}, workers=2, record="r.mp4"))
    assert sorted(specs) == ["context", "sink", "source", "worker0", "worker1"]
    assert specs["source"]["options"]["audio_subs"] == 2 and specs["worker1"]["options"]["index"] == 1


def text(v: float) -> tuple[np.ndarray, np.ndarray]:
    return np.full((1, 2), v, np.float32), np.full((1, 2), -v, np.float32)


def test_dispatcher_keeps_dispatch_order_and_gives_up_on_silent_workers():
    d = Dispatcher(expected_workers=2, job_timeout_ns=100)
    for w in (b"a", b"b"):
        d.join(w)
        d.answered(w, None, None)  # first credit
    assert d.next_worker() == b"a"
    d.sent(seq=1, pts_ns=10, now_ns=0)
    assert d.next_worker() == b"b"
    d.sent(seq=2, pts_ns=20, now_ns=0)
    assert d.next_worker() is None  # no credit left: the next frame waits (and newer ones supersede it)
    d.answered(b"b", 2, text(2))  # the later job answers first ...
    assert list(d.settled(now_ns=50)) == []  # ... but texts apply in dispatch order: nothing yet
    settled = list(d.settled(now_ns=150))  # job 1's worker never answered: given up, then job 2
    assert [(j.seq, j.done, nxt) for j, nxt in settled] == [(1, False, 20), (2, True, None)]
    assert settled[1][0].texts[0][0, 0] == 2
    assert d.next_worker() == b"b"
    d.eos_to(b"b")
    assert not d.all_ended()  # worker a has had no eos
    d.eos_to(b"a")
    assert d.all_ended()
    d.answered(b"a", None, None)
    assert d.next_worker() is None  # a worker that got its eos gets no more work
