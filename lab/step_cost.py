"""What a full-ICF training step costs against a baseline step, timed in ONE process, interleaved.

    python -m lab.step_cost --model icf-lite --size 128 --batch 4 --frames 6 --steps 8

Both modules train on the same pre-rendered SynthAVS batch (2 frames per segment); each round
times one baseline step then one full step (forward, backward, optimizer), so a busy machine
slows both alike. Prints the median seconds per step of each, their ratio (target <= 1.3) and the
ratio of the fastest steps (least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import model
from training.config import load_config
from training.data import build_dataset, collate, prepare_batch
from training.objective import TrainModule


def _module(cfg_name: str, name: str, size: int, device: torch.device, **over) -> tuple[TrainModule, torch.optim.Optimizer]:
    cfg = load_config(cfg_name, {"model": name, "image_size": [size, size], "device": device.type, **over})
    torch.manual_seed(0)
    over = {"pretrained": False} if name == "icf-lite" else {}
    net = model.build_model(name, **cfg.model_kwargs(), **over).train()
    module = TrainModule(net, cfg).to(device)
    return module, torch.optim.AdamW(module.parameters(), lr=1e-4)


def _step(module: TrainModule, opt: torch.optim.Optimizer, batch: dict, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    loss, _ = module(batch, ramp=1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="icf-lite")
    p.add_argument("--size", type=int, default=128, help="square image size (multiple of 32)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=6, help="frames per clip (2 per second)")
    p.add_argument("--steps", type=int, default=8, help="timed rounds (after 2 warm-up rounds)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: fair on a shared machine, no spin-wait contention)")
    p.add_argument("--baseline", default="synthavs-baseline", help="config of the baseline arm")
    p.add_argument("--full", default="synthavs", help="config of the full-ICF arm")
    p.add_argument("--text-every", type=int, default=1, help="full arm: run the text encoder every N steps")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cpu":
        torch.set_num_threads(a.threads)
    ds = build_dataset("synthavs:mixed,segment_frames=2", split="train", size=(a.size, a.size), frames=a.frames, length=a.batch)
    batch = prepare_batch(collate([ds[i] for i in range(a.batch)]), device, 8)
    arms = {"baseline": _module(a.baseline, a.model, a.size, device), "full": _module(a.full, a.model, a.size, device, text_every=a.text_every)}
    times: dict[str, list[float]] = {k: [] for k in arms}
    for i in range(a.steps + 2):
        for k, (module, opt) in arms.items():
            t = _step(module, opt, batch, device)
            if i >= 2:
                times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}  # the least disturbed step of each (busy machines)
    result = {
        "model": a.model, "text_every": a.text_every, "size": a.size, "batch": a.batch, "frames": a.frames, "device": str(device),
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "baseline_s": round(med["baseline"], 4), "full_s": round(med["full"], 4),
        "ratio": round(med["full"] / med["baseline"], 3), "ratio_of_fastest": round(best["full"] / best["baseline"], 3),
        "ratio_of_means": round(statistics.mean(times["full"]) / statistics.mean(times["baseline"]), 3),  # text_every > 1
        "rounds": a.steps,
        "baseline_all": [round(x, 3) for x in times["baseline"]], "full_all": [round(x, 3) for x in times["full"]],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
