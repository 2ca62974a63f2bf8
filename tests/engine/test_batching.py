"""Many streams, one model: a batch of N equals N single steps, on every backend that serves streams.

ONNX Runtime (per-batch exports) and torch eager run by default; torch compile and AOTInductor
(a package per batch size, ~1 min each on 2 cores) are slow; torch CUDA graphs and AOTInductor on
CUDA need a GPU. Batched rows are judged against single-row calls by engine.tolerance's fp32 rule
(the one export and ``icf-engine check`` use), and rows must differ (a mix-up would show)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import runtime
from engine.batching import BatchedStep, export_batches, find_batches, open_sizes
from engine.inputs import random_inputs
from engine.spec import OUTPUT_NAMES
from engine.tolerance import Parity

TOL = 1e-4  # same bound as the export's torch <-> ONNX parity


@pytest.fixture(scope="module")
def batch_exports(tmp_path_factory, exports):
    """The session's icf-tiny export is batch 1; batch 3 is exported here from the same weights."""
    folder = tmp_path_factory.mktemp("batches")
    weights = exports["icf-tiny"].parent / "icf-tiny-weights.safetensors"
    paths = export_batches(folder, [3], checkpoint=weights)
    return folder, {1: exports["icf-tiny"], **paths}


@pytest.fixture(scope="module")
def step(batch_exports):
    _, paths = batch_exports
    backends = {b: runtime.load(p, backend="onnxruntime", threads=1) for b, p in paths.items()}
    s = BatchedStep(backends)
    yield s
    s.close()


def requests(step: BatchedStep, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """n different streams' inputs (own image, audio and rings each)."""
    specs = {k: ((1, *shape[1:]), dt) for k, (shape, dt) in step.backends[1].input_specs.items()}
    rng = np.random.default_rng(seed)
    return [random_inputs(specs, rng) for _ in range(n)]


def single(step: BatchedStep, reqs):
    return [step.backends[1].infer(r) for r in reqs]


def worst(a, b) -> float:
    return max(float(np.abs(x[n] - y[n]).max()) for x, y in zip(a, b) for n in OUTPUT_NAMES)


def test_exports_are_static_per_batch_size(batch_exports):
    folder, paths = batch_exports
    assert sorted(find_batches(folder)) == [3] and paths[3].name == "icf-tiny-weights-b3.onnx"
    be = runtime.load(paths[3], backend="onnxruntime", threads=1)
    assert be.input_specs["image"][0][0] == 3 and be.output_specs["mask_logits"][0][0] == 3
    be.close()


def test_batch_of_n_equals_n_single_steps(step):
    reqs = requests(step, 3)
    batched = step.run(reqs)
    assert step.calls[3] >= 1
    assert worst(batched, single(step, reqs)) <= TOL
    # and the rows really are different streams: a mix-up would show
    assert float(np.abs(batched[0]["mask_logits"] - batched[1]["mask_logits"]).max()) > 10 * TOL


def test_padding_and_splitting_keep_every_row_its_own(step):
    before = dict(step.calls), step.padded_rows
    reqs = requests(step, 5, seed=1)  # 3 + 2 (padded to 3)
    out = step.run(reqs)
    assert len(out) == 5 and all(o["mask_logits"].shape[0] == 1 for o in out)
    assert step.calls[3] - before[0][3] == 2 and step.padded_rows - before[1] == 1
    assert worst(out, single(step, reqs)) <= TOL
    one = step.run(reqs[:1])  # one request takes the batch-1 engine, no padding
    assert step.calls[1] - before[0][1] == 1 and worst(one, single(step, reqs[:1])) <= TOL


def test_backend_for_the_wrong_size_is_refused(step):
    with pytest.raises(ValueError, match="takes batch 1"):
        BatchedStep({2: step.backends[1]})


# ---- every backend: the same parity, padding and isolation checks ----


def assert_rows_match_single_steps(step: BatchedStep, sizes: tuple[int, ...] = (3,), n: int = 5, seed: int = 2) -> None:
    """n streams through the batched step (a full batch, then a padded one) equal n batch-1 calls, by
    the fp32 parity rule; and the rows are different streams."""
    before = dict(step.calls)
    reqs = requests(step, n, seed=seed)
    batched = step.run(reqs)
    assert len(batched) == n and all(o["mask_logits"].shape[0] == 1 for o in batched)
    assert all(step.calls[b] > before[b] for b in sizes), step.calls
    judge = Parity()
    for one, row in zip(single(step, reqs), batched):
        judge.add(one, row)
    verdict = judge.verdict("fp32")
    assert verdict["passed"], verdict["failed"]
    assert float(np.abs(batched[0]["mask_logits"] - batched[1]["mask_logits"]).max()) > 10 * TOL


@pytest.fixture(scope="module")
def tiny_weights(exports):
    return exports["icf-tiny"].parent / "icf-tiny-weights.safetensors"


@pytest.mark.parametrize("mode", ["eager", pytest.param("compile", marks=pytest.mark.slow)])
def test_torch_batches_equal_single_steps(tiny_weights, mode):
    first = runtime.load(tiny_weights, backend="torch", mode=mode, device="cpu", threads=1)
    step = BatchedStep(open_sizes(first, [1, 3], backend="torch"))
    try:
        assert step.backends[3].input_specs["image"][0][0] == 3 and step.backends[3].output_specs["mask_logits"][0][0] == 3
        assert step.backends[3].net is first.net  # one copy of the weights, a static program per size
        assert_rows_match_single_steps(step)
        info = step.info()
        assert info["batch_sizes"] == [1, 3] and info["model_cpu_ms"] > 0
    finally:
        step.close()


def test_onnxruntime_sizes_open_from_artifacts(batch_exports):
    _, paths = batch_exports
    first = runtime.load(paths[1], backend="onnxruntime", threads=1)
    step = BatchedStep(open_sizes(first, [], artifacts={3: paths[3]}, backend="onnxruntime", options={"threads": 1}))
    try:
        assert_rows_match_single_steps(step)
    finally:
        step.close()


def test_a_size_without_artifact_on_a_fixed_shape_backend_is_refused(batch_exports):
    _, paths = batch_exports
    first = runtime.load(paths[1], backend="onnxruntime", threads=1)
    with pytest.raises(ValueError, match="no batch-2 artifact"):
        open_sizes(first, [2], backend="onnxruntime")
    first.close()


@pytest.mark.slow
def test_aotinductor_packages_per_batch_size(tiny_weights):
    """One package per batch size through engine.cache (the test's private cache), then the same checks."""
    from engine import cache

    arts = {b: cache.resolve(tiny_weights, "package", device="cpu", precision="fp32", batch=b) for b in (1, 3)}
    assert arts[1] != arts[3] and arts[3].name.endswith("-b3.pt2")
    assert cache.resolve(tiny_weights, "package", device="cpu", precision="fp32", batch=3) == arts[3]  # cached
    first = runtime.load(arts[1], backend="aotinductor", threads=1)
    step = BatchedStep(open_sizes(first, [], artifacts={3: arts[3]}, backend="aotinductor", options={"threads": 1}))
    try:
        assert step.backends[3].input_specs["image"][0][0] == 3
        assert_rows_match_single_steps(step)
    finally:
        step.close()


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["eager", "cudagraph"])
def test_torch_cuda_batches_equal_single_steps(tiny_weights, mode):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    first = runtime.load(tiny_weights, backend="torch", mode=mode, device="cuda")
    step = BatchedStep(open_sizes(first, [1, 3], backend="torch"))
    try:
        assert_rows_match_single_steps(step)
    finally:
        step.close()
