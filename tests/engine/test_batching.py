"""Many streams, one model: a batch of N equals N single steps (ONNX Runtime, per-batch exports)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import runtime
from engine.batching import BatchedStep, export_batches, find_batches
from engine.inputs import random_inputs
from engine.spec import OUTPUT_NAMES

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
