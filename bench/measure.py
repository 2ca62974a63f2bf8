"""Time one runner and turn it into a report row; pick the best row; compute the reported ratios.

torch + NumPy only (bench/gpu.py uses it). A runner that cannot run here becomes a "skipped" row
with the reason, one that fails an "error" row with the message: a sweep never dies half-way.
"""

from __future__ import annotations

import gc
import time
import traceback

import numpy as np

from .backends import Artifacts, RunSpec, open_runner, skip_reason
from .stats import rounded_samples, summarize
from .timing import time_cuda, time_host


def base_row(spec: RunSpec, model: str, resolution: tuple[int, int], device: str) -> dict:
    return {
        "model": model,
        "resolution": f"{resolution[0]}x{resolution[1]}",
        "label": spec.label,
        "backend": spec.backend,
        "mode": spec.mode,
        "precision": spec.precision,
        "channels_last": spec.channels_last,
        "compile_mode": spec.compile_mode,
        "freezing": spec.freezing,
        "device": device,
    }


def measure(
    spec: RunSpec,
    *,
    model: str,
    resolution: tuple[int, int],
    artifacts: Artifacts | None,
    sets: list[dict[str, np.ndarray]],
    device: str,
    warmup: int,
    iters: int,
    threads: int | None = None,
    budget_s: float | None = None,
    reference: np.ndarray | None = None,
    allow_cpu_half: bool = False,
) -> tuple[dict, np.ndarray | None]:
    """(row, mask logits of input set 0 from this runner or None). Never raises for a backend failure."""
    row = base_row(spec, model, resolution, device)
    reason = skip_reason(spec, device, allow_cpu_half=allow_cpu_half)
    if reason:
        return {**row, "status": "skipped", "reason": reason}, None
    runner = None
    try:
        runner = open_runner(spec, artifacts=artifacts, sets=sets, device=device, threads=threads)
        out = runner.mask(0)
        loop = time_cuda if runner.timer == "cuda" else time_host
        t0 = time.perf_counter()
        samples = loop(runner.call, list(range(len(sets))), warmup=warmup, iters=iters, budget_s=budget_s)
        row.update(
            status="ok",
            via=runner.via,
            timer="cuda-events" if runner.timer == "cuda" else "perf_counter",
            setup_s=round(runner.setup_s, 3),
            timing_s=round(time.perf_counter() - t0, 3),
            input_sets=len(sets),
            **summarize(samples),
            samples_ms=rounded_samples(samples),
            info={k: v for k, v in runner.info.items() if isinstance(v, (str, int, float, bool, list, type(None)))},
        )
        if reference is not None and out is not None and out.shape == reference.shape:
            diff = np.abs(out.astype(np.float64) - reference.astype(np.float64))
            row["max_abs_diff"] = float(diff.max())
            row["rel_l2_diff"] = float(np.linalg.norm(diff) / max(np.linalg.norm(reference), 1e-12))
        return row, out
    except Exception as exc:  # a backend failing must not lose the rest of the sweep; keep why
        tb = traceback.format_exc(limit=6)
        return {**row, "status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": tb[-3000:]}, None
    finally:
        if runner is not None:
            try:
                runner.close()
            except Exception:  # closing is best effort; the row is already recorded
                pass
        release_memory(device)


def release_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def ok_rows(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok" and all(r.get(k) == v for k, v in match.items())]


def best_row(rows: list[dict], **match) -> dict | None:
    """The fastest (lowest p50) successful row that matches, e.g. best_row(rows, model="icf-lite")."""
    cands = [r for r in ok_rows(rows, **match) if r["backend"] != "baseline"]
    return min(cands, key=lambda r: r["p50_ms"]) if cands else None


def parse_resolution(text: str) -> tuple[int, int]:
    """'224' -> (224, 224); '480x640' -> (480, 640) as (H, W)."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    if len(parts) == 2:
        return int(parts[0]), int(parts[1])
    raise ValueError(f"resolution '{text}' must be N or HxW")


# Targets from the issue (reported with their gap, never asserted).
GPU_TARGETS_MS = {"icf-lite": 0.5, "icf-r50": 1.0}  # best backend, batch 1, 224 x 224
CPU_ORT_TARGETS_MS = {"icf-lite": 15.0}  # ONNX Runtime p50 on the 2-core CPU
SPEEDUP_TARGET = 5.0  # best vs the same model in eager PyTorch


def model_ratios(rows: list[dict], target_resolution: str = "224x224") -> tuple[list[dict], list[dict]]:
    """(ratio lines, target lines) per ICF model and resolution: best backend vs eager fp32, best vs
    the baseline network in eager (fp32, and fp16 on a GPU) when it was measured. Targets are
    only checked at ``target_resolution`` (the issue's numbers are for 224 x 224)."""
    from .stats import ratio, target_check

    ratios, targets = [], []
    pairs = sorted({(r["model"], r["resolution"]) for r in rows if r["backend"] != "baseline"}, key=lambda p: (p[1], p[0]))
    for name, res in pairs:
        best = best_row(rows, model=name, resolution=res)
        if best is None:
            continue
        eager = next(iter(ok_rows(rows, model=name, resolution=res, backend="torch", mode="eager", precision="fp32")), None)
        line = {"model": name, "resolution": res, "best": best["label"], "best_p50_ms": best["p50_ms"], "device": best["device"]}
        if eager:
            line["eager_fp32_p50_ms"] = eager["p50_ms"]
            line["speedup_vs_eager_fp32"] = ratio(eager["p50_ms"], best["p50_ms"])
        for base in sorted(ok_rows(rows, backend="baseline", resolution=res), key=lambda r: r["precision"]):
            line[f"baseline_eager_{base['precision']}_p50_ms"] = base["p50_ms"]
            line[f"speedup_vs_baseline_eager_{base['precision']}"] = ratio(base["p50_ms"], best["p50_ms"])
        ratios.append(line)
        if res != target_resolution:
            continue
        if best["device"].startswith("cuda"):
            if name in GPU_TARGETS_MS:
                targets.append(target_check(f"{name} best backend p50 (GPU)", best["p50_ms"], GPU_TARGETS_MS[name]))
            if "speedup_vs_eager_fp32" in line:
                targets.append(target_check(f"{name} best vs eager fp32 (GPU)", line["speedup_vs_eager_fp32"], SPEEDUP_TARGET, "x",
                                            higher_is_better=True))
        elif name in CPU_ORT_TARGETS_MS:
            ort = next(iter(ok_rows(rows, model=name, resolution=res, backend="onnxruntime")), None)
            if ort:
                targets.append(target_check(f"{name} ONNX Runtime p50 (CPU)", ort["p50_ms"], CPU_ORT_TARGETS_MS[name]))
    return ratios, targets


def ratios_md(ratios: list[dict]) -> str:
    from .report import md_table

    if not ratios:
        return ""
    keys = sorted({k for r in ratios for k in r} - {"model", "resolution", "best", "device"})
    rows = [[r["model"], r["resolution"], r["best"], *[r.get(k) for k in keys]] for r in ratios]
    return "### Ratios (p50 over p50)\n\n" + md_table(["model", "res", "best backend", *keys], rows)
