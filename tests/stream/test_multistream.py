"""Many streams, one model: real processes and sockets, one lane (text context) per stream."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.graph.multistream_serve import ServeConfig, run_serve
from stream.graph.pipeline import PipelineError


def test_each_stream_keeps_its_own_outputs(media, tmp_path):
    """An audible synthetic stream and a silent file share one batched (null) model, end to end in
    real processes: each stream's sink gets its own frames, at its own size, in order."""
    cfg = ServeConfig(sources=[{"kind": "synthetic", "seconds": 1.5, "width": 320, "height": 240, "stream_id": "loud"},
                               {"kind": "file", "video": str(media["silent"]), "stream_id": "quiet"}],
                      backend={"kind": "null", "image_size": [64, 64], "batch_sizes": [1, 2], "frame_ring_rate": 10},
                      out_dir=str(tmp_path), deadline_ms=20)
    report = run_serve(cfg)
    assert report["ok"], report["errors"]
    loud, quiet = report["streams"]["loud"], report["streams"]["quiet"]
    batching = report["batching"]
    assert sum(int(k) * v for k, v in batching["histogram"].items()) == sum(s["lane"]["counters"]["dispatched"] for s in (loud, quiet))
    for sid, s in report["streams"].items():
        assert s["processed"] > 10 and s["frames"]["accounted"], s["frames"]
        lines = [json.loads(x) for x in (tmp_path / f"{sid}.jsonl").read_text().splitlines()]
        assert len(lines) == s["processed"]
        masks = np.load(tmp_path / f"{sid}.npz")
        assert masks["masks"].shape[0] == s["processed"] and (np.diff(masks["seq"]) > 0).all()
    assert np.load(tmp_path / "loud.npz")["masks"].shape[1:] == (240, 320)
    assert np.load(tmp_path / "quiet.npz")["masks"].shape[1:] == (240, 320)  # the silent file is 320x240 too


class _RingSpy:
    """Test double around the segmenter's lanes: records, per stream, the first feature of every
    valid frame-ring entry each row it ran was given (what the model saw of that stream's context)."""

    def __init__(self) -> None:
        from stream.stages.multistream import MultiSegmenterStage

        seen: dict[str, set] = {}

        class SpiedSegmenter(MultiSegmenterStage):
            def open(self, ctx, env) -> None:
                super().open(ctx, env)
                for lane in self.lanes:
                    lane.take = self._spy(lane, lane.take)

            @staticmethod
            def _spy(lane, take):
                def spied(core, *args):
                    row = take(core, *args)
                    if row is not None:
                        arrays = row[2]
                        valid = arrays["frame_valid"][0].astype(bool)
                        seen.setdefault(lane.sid, set()).update(np.round(arrays["frame_ring"][0, valid, 0], 6).tolist())
                    return row
                return spied

        self.Stage, self.seen = SpiedSegmenter, seen


def test_each_stream_keeps_its_own_context(media, tmp_path):
    """The same two streams with the segmenter's lanes watched by a test double (every stage in a
    thread of this process, real ipc sockets). The null model's frame text is the row's audio
    level, so the silent stream's rings must hold exact zeros and the audible one real levels: a
    loud row in a quiet ring shows. (The model samples its frame ring 10 times a second, so the
    rings hold entries mid-segment; the levels are what every row was given, not only the last
    one's. The loud stream may hold one exact zero too: frame 0's audio window lies wholly before
    the stream began.)"""
    import dataclasses
    import threading

    import zmq

    from stream.graph.node import build_stage
    from stream.stages.stage import StageEnv, run_stage
    from stream.wire.transport import Endpoints, make_endpoints

    spy = _RingSpy()
    sources = {"loud": {"type": "source", "kind": "synthetic", "options": {"seconds": 1.5, "width": 160, "height": 120}},
               "quiet": {"type": "source", "kind": "file", "options": {"video": str(media["silent"])}}}
    ctx = zmq.Context()
    stop, abort, go = threading.Event(), threading.Event(), threading.Event()
    go.set()
    envs = {}
    for sid in sources:
        (tmp_path / sid).mkdir()
        envs[sid] = StageEnv(Endpoints(make_endpoints("ipc", run_dir=str(tmp_path / sid))), stop, abort, go, stream_id=sid)
    multi = spy.Stage(streams=[{"stream_id": sid, "endpoints": env.endpoints} for sid, env in envs.items()], deadline_ms=20,
                      backend={"kind": "null", "image_size": [64, 64], "batch_sizes": [1, 2], "frame_ring_rate": 10})
    stages = [(multi, dataclasses.replace(envs["loud"], stream_id="multi"))]
    for sid, spec in sources.items():
        spec["options"].update(video_subs=1, audio_subs=1)
        stages += [(build_stage(spec), envs[sid]), (build_stage({"type": "sink", "options": {}}), envs[sid])]
    reports: list = [None] * len(stages)
    threads = [threading.Thread(target=lambda i=i, st=st, env=env: reports.__setitem__(i, run_stage(st, ctx, env)), daemon=True)
               for i, (st, env) in enumerate(stages)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
    finally:
        abort.set()
        for th in threads:
            th.join(10)
        ctx.destroy(linger=0)
    assert not any(th.is_alive() for th in threads)
    assert all("error" not in r for r in reports), [r.get("error") for r in reports]
    assert sum(v > 0.01 for v in spy.seen.get("loud", ())) >= 3, spy.seen
    assert spy.seen.get("quiet") == {0.0}, spy.seen


def test_masks_of_every_stream_on_one_pub_socket_keyed_by_stream():
    import threading

    import zmq

    from stream.wire.transport import free_tcp_port

    addr = f"tcp://127.0.0.1:{free_tcp_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(addr)
    sub.setsockopt(zmq.SUBSCRIBE, b'{"kind":"mask"')
    got: dict[str, int] = {}
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            if sub.poll(100):
                head = json.loads(sub.recv_multipart()[0])
                got[head["stream"]] = got.get(head["stream"], 0) + 1

    th = threading.Thread(target=listen)
    th.start()
    try:
        report = run_serve(ServeConfig(sources=[{"kind": "synthetic", "seconds": 1.5, "width": 160, "height": 120, "seed": i} for i in range(2)],
                                       backend={"kind": "null", "image_size": [64, 64]}, publish=addr))
    finally:
        done.set()
        th.join()
        while sub.poll(0):  # what reached the socket after the listener's last look
            head = json.loads(sub.recv_multipart()[0])
            got[head["stream"]] = got.get(head["stream"], 0) + 1
        sub.close(0)
        ctx.term()
    assert report["ok"], report["errors"]
    # every stream's masks, each at most once (how many a stream processes depends on the machine's load:
    # 5-26 of 45 measured with other runs going, on main too, so no count is asserted)
    processed = {sid: s["processed"] for sid, s in report["streams"].items()}
    assert set(got) == {"cam0", "cam1"} and all(0 < n <= processed[sid] for sid, n in got.items()), (got, processed)
    assert report["published"] >= sum(got.values())


@pytest.mark.parametrize("cfg, message", [
    (dict(sources=[]), "at least one source"),
    (dict(sources=[{"kind": "synthetic"}], transport="inproc"), "own process"),
    (dict(sources=[{"kind": "synthetic", "stream_id": "a"}, {"kind": "synthetic", "stream_id": "a"}]), "unique"),
    (dict(sources=[{"kind": "synthetic"}], transport="tcp", shm="on"), "one host"),
])
def test_bad_serve_configs_are_named(cfg, message):
    with pytest.raises(PipelineError, match=message):
        run_serve(ServeConfig(backend={"kind": "null"}, **cfg))


def test_serve_cli_and_streams_bench_smoke(capsys, tmp_path):
    from bench.__main__ import main as bench_main
    from stream.cli.main import main

    assert main(["serve", "--streams", "2", "--null", "--seconds", "1", "--size", "160x120", "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "cam0" in out and "cam1" in out and "batches:" in out
    assert json.loads((tmp_path / "r.json").read_text())["n_streams"] == 2
    assert bench_main(["streams", "--smoke", "--counts", "1", "--seconds", "1", "--out", str(tmp_path), "--no-plots"]) == 0
    doc = json.loads((tmp_path / "streams_320x240_null.json").read_text())
    assert [r["n"] for r in doc["results"]] == [1] and doc["results"][0]["ok"]
    cpu = doc["results"][0]["cpu"]  # every process of the graph, read from /proc while it ran
    assert set(doc["results"][0]["cpu_nodes"]) == {"source-cam0", "segmenter", "sink-cam0", "supervisor"}
    assert cpu["graph_cpu_ms_per_processed_frame"] > 0 and cpu["cpu_ms_per_processed_frame"]["sources"] > 0


class _FakeLane:
    def __init__(self, waited_ns: int | None, now: int, ended: bool = False) -> None:
        from types import SimpleNamespace

        self.latest = None if waited_ns is None else SimpleNamespace(header={"t": {"ctx_recv": now - waited_ns}})
        self.eos_sent, self.eos_header, self.blocked_since = False, ({} if ended else None), None

    def ready(self, now: int) -> bool:
        return self.latest is not None


@pytest.mark.parametrize("waits_ms, max_batch, deadline_ms, expect", [
    ([1, None, None], 4, 5, 0),  # one of three streams ready, fresh: wait for the others
    ([6, None, None], 4, 5, 1),  # ... until the deadline: a slow stream never holds the rest
    ([1, 2, 0], 4, 5, 3),  # every live stream ready: go at once
    ([1, 2, 3], 2, 5, 2),  # capped at max_batch, the longest-waiting first
])
def test_batch_cut_rule(waits_ms, max_batch, deadline_ms, expect):
    from stream.stages.multistream import MultiSegmenterStage
    from stream.wire.transport import stamp

    now = stamp()
    stage = MultiSegmenterStage(streams=[], backend={})
    stage.lanes = [_FakeLane(None if w is None else int(w * 1e6), now) for w in waits_ms]
    stage.max_batch, stage.deadline_ns = max_batch, int(deadline_ms * 1e6)
    cut = stage._cut(now)  # the rule at one instant: no wall-clock time passes inside the test
    assert len(cut) == expect
    if expect == 2:
        assert [lane.latest.header["t"]["ctx_recv"] for lane in cut] == sorted(lane.latest.header["t"]["ctx_recv"] for lane in stage.lanes)[:2]


@pytest.mark.slow
def test_serve_with_batched_onnx_engines(tmp_path):
    """icf-tiny exported for batch 1 and 2 (ONNX Runtime): two streams end to end."""
    from engine.batching import export_batches

    arts = {b: str(p) for b, p in export_batches(tmp_path / "eng", [1, 2], model_name="icf-tiny").items()}
    spec = {"kind": "engine", "artifact": arts[1], "artifacts": arts, "backend": "onnxruntime", "options": {"threads": 1}}
    report = run_serve(ServeConfig(sources=[{"kind": "synthetic", "seconds": 1.5, "width": 320, "height": 240, "seed": i} for i in range(2)],
                                   backend=spec, deadline_ms=20))
    assert report["ok"], report["errors"]
    assert report["model"].startswith("icf-tiny")
    assert all(s["processed"] > 0 and s["frames"]["accounted"] for s in report["streams"].values())
    assert set(report["batching"]["step"]["batch_sizes"]) == {1, 2}


def test_a_killed_source_costs_only_its_own_stream(tmp_path):
    import os
    import signal
    import threading

    from .conftest import node_process, wait_for_lines

    result: dict = {}
    cfg = ServeConfig(sources=[{"kind": "synthetic", "seconds": 3.0, "width": 160, "height": 120, "seed": i} for i in range(2)],
                      backend={"kind": "null", "image_size": [64, 64], "batch_sizes": [1, 2]}, out_dir=str(tmp_path))
    th = threading.Thread(target=lambda: result.update(run_serve(cfg)))
    th.start()
    source = node_process("source-cam1", th.is_alive)
    wait_for_lines(tmp_path / "cam1.partial.jsonl", 3, th.is_alive)  # the stream's metrics while it runs: kill once it has masks
    os.kill(source.pid, signal.SIGKILL)
    th.join(120)
    assert not th.is_alive()
    assert result["ok"], result["errors"]
    assert result["lost"] and result["lost"][0].startswith("source-cam1: ")
    assert not result["streams"]["cam1"]["ok"] and "exited with code -9" in result["streams"]["cam1"]["ended"]
    cam0 = result["streams"]["cam0"]
    assert cam0["sent"] == 90 and cam0["frames"]["accounted"] and cam0["processed"] > 0  # the other stream ran to its end
    assert 0 < result["streams"]["cam1"]["processed"] < 90


def test_each_file_runs_to_its_own_end_and_a_failing_one_ends_only_its_stream(tmp_path):
    """Three files of different lengths: each stream sends every frame of its own file (the
    shortest file's end used to stop every stream). A truncated file in the middle ends its own
    stream only, and the report says which one and why."""
    from .conftest import write_mp4

    files = [write_mp4(tmp_path / f"{n}.mp4", s, size=(160, 120)) for n, s in (("a", 3.0), ("b", 1.0), ("c", 2.0))]
    data = files[0].read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    null = {"kind": "null", "image_size": [64, 64], "batch_sizes": [1, 2, 3]}
    report = run_serve(ServeConfig(sources=[{"kind": "file", "video": str(f)} for f in files], backend=null))
    assert report["ok"] and not report["lost"], (report["errors"], report["lost"])
    for sid, n in zip(("cam0", "cam1", "cam2"), (90, 30, 60)):
        s = report["streams"][sid]
        assert s["sent"] == n and s["frames"]["accounted"] and s["processed"] > 0 and s["ended"] == "the source ended", (sid, s)
    report = run_serve(ServeConfig(sources=[{"kind": "file", "video": str(f)} for f in (files[0], tmp_path / "cut.mp4", files[2])],
                                   backend=null))
    assert not report["errors"], report["errors"]
    assert [w.split(":")[0] for w in report["lost"]] == ["source-cam1"]
    assert not report["streams"]["cam1"]["ok"] and "cut.mp4" in report["streams"]["cam1"]["ended"]
    assert report["streams"]["cam0"]["sent"] == 90 and report["streams"]["cam2"]["sent"] == 60


@pytest.mark.parametrize("shm", ["on", "off"])
def test_a_stopped_or_killed_sink_costs_only_its_own_stream(shm, tmp_path):
    """SIGSTOP of one sink: the segmenter stops running that stream's frames (newest wins) instead
    of waiting on its sink, so the other streams keep every frame's turn. SIGKILL of that sink
    afterwards: the stream ends (its results are lost), the others run to their end, no error."""
    import os
    import signal
    import threading

    from .conftest import lines_in, node_process, wait_for_lines

    cfg = ServeConfig(sources=[{"kind": "synthetic", "seconds": 4.0, "width": 160, "height": 120, "seed": i} for i in range(3)],
                      backend={"kind": "null", "image_size": [64, 64], "batch_sizes": [1, 2, 3]}, shm=shm, out_dir=str(tmp_path))
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(run_serve(cfg)))
    th.start()
    sink = node_process("sink-cam1", th.is_alive).pid
    wait_for_lines(tmp_path / "cam1.partial.jsonl", 3, th.is_alive)  # the stream runs
    os.kill(sink, signal.SIGSTOP)
    for sid in ("cam0", "cam2"):  # the other streams go on meanwhile
        log = tmp_path / f"{sid}.partial.jsonl"
        wait_for_lines(log, lines_in(log) + 20, th.is_alive)
    os.kill(sink, signal.SIGKILL)
    th.join(120)
    assert not th.is_alive()
    assert not result["errors"], result["errors"]
    assert [w.split(":")[0] for w in result["lost"]] == ["sink-cam1"], result["lost"]
    cam1 = result["streams"]["cam1"]
    assert not cam1["ok"] and "exited with code -9" in cam1["ended"]
    for sid in ("cam0", "cam1", "cam2"):
        # before: the segmenter waited on the stopped sink's ring / socket (every stream lost ~1/3 of
        # its frames meanwhile), then ended the run with "the sink ... is gone". Now it never waits on
        # a sink at all: a lane whose sink cannot take a result skips its frames (newest wins)
        lane = result["streams"][sid]["lane"]["counters"]
        assert not lane.get("result_slot_waits") and not lane.get("result_send_waits"), (sid, lane)
    for sid in ("cam0", "cam2"):
        s = result["streams"][sid]
        assert s["ok"] and s["sent"] == 120 and s["frames"]["accounted"] and s["processed"] > 0, (sid, s["frames"])


@pytest.mark.slow
def test_serve_on_the_torch_backend(tiny_onnx):
    """Two streams through icf-tiny on torch eager, a static program per batch size over one copy of
    the weights (engine.batching.open_sizes), chosen the way ``icf-stream serve --backend torch`` does."""
    from pathlib import Path

    from engine import spec as engine_spec
    from stream.cli.serve_cli import backend_spec

    weights = engine_spec.resolve_checkpoint(engine_spec.read_sidecar(tiny_onnx), Path(tiny_onnx))
    spec = backend_spec(null=False, weights=str(weights), model=None, sizes=[1, 2], threads=1, backend="torch", torch_mode="eager",
                        device="cpu")
    assert spec["backend"] == "torch" and spec["batch_sizes"] == [1, 2] and "artifacts" not in spec
    report = run_serve(ServeConfig(sources=[{"kind": "synthetic", "seconds": 1.5, "width": 320, "height": 240, "seed": i} for i in range(2)],
                                   backend=spec, deadline_ms=20))
    assert report["ok"], report["errors"]
    assert report["model"] == "icf-tiny:torch"
    assert all(s["processed"] > 0 and s["frames"]["accounted"] for s in report["streams"].values())
    assert set(report["batching"]["step"]["batch_sizes"]) == {1, 2} and report["batching"]["step"]["mode"] == "eager"
