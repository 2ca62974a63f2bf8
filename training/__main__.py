"""icf-train: make SynthAVS data, train ICF networks, evaluate checkpoints.

    icf-train synth --out DIR --mode single --seed 0 --count 100 --format avsbench-s4
    icf-train fit [--config synthavs] [--key=value ...] [--resume]     # no --config on a CPU: the CPU recipe
    icf-train eval --data synthavs:conflict,split=test --weights weights/icf-lite-synthavs.safetensors --json out.json
    icf-train eval --data synthavs:prior-conflict --compare A.safetensors B.safetensors

Multi-GPU / multi-process: torchrun --nproc_per_node=N -m training fit --config ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from icfcli import UserError, make_parser, non_negative_int, positive_int, run
from synthavs import MODES

DATA_HELP = (
    "data spec: synthavs[:MODE][,key=value...] | stamps[:MODE][,key=value...,objects=seen|heldout] | "
    "avsbench-s4:PATH | avsbench-ms3:PATH | avss:PATH | folder:PATH "
    "(path specs take ,split=NAME)"
)
FIT_EPILOG = """configs: training/configs/*.json (synthavs, synthavs-baseline, synthavs-no-mit, synthavs-no-sc,
synthavs-no-cdcl, synthavs-cpu, s4, ms3, avss). Common overrides:
  --steps=N --max_minutes=M --batch_size=B --lr=X --device=cpu|cuda --workers=N --out_dir=DIR
  --train_data=SPEC --val_data=SPEC --synth_bias=0.8 --init=CKPT --train_size=[128,128]
  ablations: --sc=false --cdcl=false --frame_text=false --segment_text=false --video_text=false --text_bridge=false
several GPUs / processes: torchrun --nproc_per_node=N -m training fit --config synthavs
"""


def _config_keys() -> str:
    from dataclasses import fields

    from .config import TrainConfig

    keys = [f"{f.name}={json.dumps(f.default) if not callable(f.default_factory) else '{}'}" for f in fields(TrainConfig)]
    lines, line = [], " "
    for k in keys:
        if len(line) + len(k) > 110:
            lines.append(line)
            line = " "
        line += " " + k
    return "\n".join([*lines, line])


def add_synth(sub) -> None:
    s = sub.add_parser("synth", help="write SynthAVS clips to disk",
                       description="Write SynthAVS clips (AVSBench S4/MS3 folders or MP4 + npz masks).")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--mode", default="single", choices=MODES, help="scene mode (default single)")
    s.add_argument("--seed", type=non_negative_int, default=0, help="base seed; clip i is deterministic in (seed, i)")
    s.add_argument("--count", type=positive_int, default=100, help="number of clips (default 100)")
    s.add_argument("--start", type=non_negative_int, default=0, help="first clip index (default 0)")
    s.add_argument("--format", default="avsbench-s4", choices=["avsbench-s4", "avsbench-ms3", "mp4"], help="output layout")
    s.add_argument("--bias", type=float, default=0.5, help="chance the salient object is the sounding one")
    s.add_argument("--split", default=None, choices=["train", "val", "test"],
                   help="AVSBench split for every clip (default 80/10/10; fewer than 10 clips: the last two are val and test)")
    s.add_argument("--width", type=positive_int, default=640, help="mp4 frame width (AVSBench layouts are 224x224)")
    s.add_argument("--force", action="store_true", help="write into a folder that already holds files (adds to a dataset)")
    s.add_argument("--height", type=positive_int, default=480, help="mp4 frame height")
    s.add_argument("--fps", type=positive_int, default=30, help="frames per second")
    s.add_argument("--seconds", type=positive_int, default=5, help="mp4 clip length (AVSBench clips are 5 s)")
    s.set_defaults(func=cmd_synth)


def add_fit(sub) -> None:
    f = sub.add_parser("fit", help="train a network",
                       description="Train an ICF network. --key=value (or --key value) pairs override config fields; "
                                   "keys are the config's, written with - or _.",
                       epilog=FIT_EPILOG + "\nconfig keys and their defaults (training/config.py says what each does):\n" + _config_keys())
    f.add_argument("--config", default=None,
                   help="config file or name in training/configs (default: synthavs with a CUDA GPU, synthavs-cpu without)")
    f.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.safetensors + last.opt.pt")
    f.add_argument("--force", action="store_true",
                   help="start afresh in an OUT_DIR that already holds a run (its checkpoints and logs are removed first)")
    f.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    f.set_defaults(func=cmd_fit)


def add_eval(sub) -> None:
    from weights import SHIPPED, weights_arg  # package data: found from any directory

    e = sub.add_parser(
        "eval",
        help="evaluate a checkpoint, or compare two",
        description="Evaluate a checkpoint: mIoU / F (official AVSBench definitions) and the empty rate. "
        "SynthAVS specs also print the listening rows (audio swap follow rate, salient capture, IoU by object size, "
        "shuffled and silent audio, prior capture on conflict frames) and the reference rows of two models that "
        "never listen (salient-only, all-objects), computed from ground truth.",
    )
    e.add_argument("--data", required=True, action="append", help=DATA_HELP + "; repeat for several")
    who = e.add_mutually_exclusive_group()
    who.add_argument("--weights", default=str(SHIPPED), type=weights_arg,
                     help="checkpoint .safetensors (default: the shipped weights; "
                          "icf-lite-stamps and icf-lite-synthavs name them from any directory)")
    who.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), type=weights_arg,
        help="two checkpoints on the same clips: paired bootstrap 95%% interval of A - B (mIoU, F, listening rates); "
        "or two recipes, each a comma-separated list of checkpoints (one per training seed): paired by seed, "
        "the interval over seeds (paired t and bootstrap) and the pre-registered rule",
    )  # fmt: skip
    e.add_argument(
        "--listening", default=None, choices=["full", "basic", "off"],
        help="SynthAVS listening rows: full (swap test, shuffled/silent audio, references; ~6 passes), basic (model + "
        "reference rows, 1 pass), off. Default full, or basic with --compare",
    )  # fmt: skip
    e.add_argument("--json", default="", help="write the results here")
    e.add_argument("--split", default="test", help="split for path specs (default test)")
    e.add_argument("--clips", type=non_negative_int, default=0, help="evaluate only the first N clips (SynthAVS default 200)")
    e.add_argument("--batch-size", type=positive_int, default=8, help="clips per batch")
    e.add_argument("--workers", type=non_negative_int, default=2, help="DataLoader worker processes")
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run")
    e.set_defaults(func=cmd_eval)


def _parser() -> argparse.ArgumentParser:
    p, sub = make_parser("icf-train", __doc__)
    for add in (add_synth, add_fit, add_eval):  # a new sub-command: an add_x(sub) + one entry here
        add(sub)
    return p


def cmd_synth(args) -> int:
    from .synth_to_disk import run_synth

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UserError(f"--out {out} already holds files; give an empty or new folder, or add these clips to it with --force")
    kw = dict(fmt=args.format, mode=args.mode, seed=args.seed, bias=args.bias, width=args.width, height=args.height,
              fps=args.fps, seconds=args.seconds, progress=not args.quiet)
    if args.split or args.format == "mp4" or args.count >= 10 or args.count < 3:
        root = run_synth(args.out, count=args.count, split=args.split, start=args.start, **kw)
    else:  # too few clips for 80/10/10 by index: still one val and one test clip, so the default eval works
        root = _synth_small(args, kw)
    print(f"wrote {args.count} clips to {root}")
    return 0


def _synth_small(args, kw: dict) -> Path:
    from .synth_to_disk import run_synth

    n_train, rows, root = args.count - 2, [], None
    for split, start, count in (("train", args.start, n_train), ("val", args.start + n_train, 1), ("test", args.start + n_train + 1, 1)):
        root = run_synth(args.out, count=count, split=split, start=start, **kw)
        csv = next(root.glob("*_meta_data.csv"))  # each call writes the table of its own clips
        lines = csv.read_text().splitlines()
        rows += lines[1:]
    csv.write_text("\n".join([lines[0], *rows]) + "\n")
    return root


def _device_type(name: str) -> str:
    if name.startswith("cuda"):
        return "cuda"
    if name == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# The shipped SynthAVS CPU recipe (synthavs-cpu: icf-lite, full ICF, 800 steps x 4 clips x 6 frames at 128x128)
# took 50 min on 2 shared cores; other configs are scaled from it by frames x pixels seen and a per-model cost
# factor (GFLOPs ratio).
_CPU_RECIPE = (800 * 4 * 6 * 128 * 128, 50 / 60)
_MODEL_COST = {"icf-tiny": 0.1, "icf-lite": 1.0, "icf-r50": 13.0}


def _cpu_hours(cfg) -> float:
    """A rough wall-time estimate of a training run on this kind of 2-core CPU, for the warning only."""
    h, w = cfg.effective_train_size
    hours = cfg.steps * cfg.batch_size * cfg.frames * h * w * _MODEL_COST.get(cfg.model, 1.0) / _CPU_RECIPE[0] * _CPU_RECIPE[1]
    return min(hours, cfg.max_minutes / 60) if cfg.max_minutes else hours  # a time cap ends the run sooner


def cmd_fit(args) -> int:
    from .config import load_config, parse_overrides

    extra = [_config_key(t) for t in args.extra]
    device = _device_type(str(parse_overrides(extra).get("device", "auto")))  # unknown keys fail here, before any work
    config = args.config
    if config is None:
        config = "synthavs" if device == "cuda" else "synthavs-cpu"
        if device == "cpu":
            print("icf-train fit: no CUDA GPU here: using the CPU recipe --config synthavs-cpu (about 50 min on 2 cores); "
                  "--config synthavs is the GPU-sized run", file=sys.stderr)
    cfg = load_config(config, extra)
    hours = _cpu_hours(cfg)
    if _device_type(cfg.device) == "cpu" and hours > 2 and not args.print_config:
        th, tw = cfg.effective_train_size  # what a step trains at (image_size is only what the weights are saved for)
        print(f"icf-train fit: warning: config '{config}' is sized for a GPU ({cfg.steps} steps, batch {cfg.batch_size}, "
              f"{cfg.frames} frames at {th}x{tw}, {cfg.model}): about {hours:.0f} h on a 2-core CPU; "
              "--config synthavs-cpu / stamps-cpu are the CPU recipes (--max_minutes=M caps any run)", file=sys.stderr)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    out = Path(cfg.out_dir)
    _check_out_dir(out, resume=args.resume, force=args.force)
    from .trainer import fit

    result = fit(cfg, resume=args.resume, quiet=args.quiet)
    from .curves import write_curves

    curves = write_curves(out / "log.jsonl")
    print(json.dumps(result, indent=2))
    best, last = out / "best.safetensors", out / "last.safetensors"
    kept = [f"{best} (best validation)"] if best.is_file() else []
    kept += [f"{last} (resume point)"] if last.is_file() else []
    print("checkpoints: " + (", ".join(kept) or "none (no step reached a checkpoint)"))
    print(f"log: {out / 'log.jsonl'}" + (f", curves: {curves} (draw them: icf-bench plot {out})" if curves else ""))
    use = best if best.is_file() else last  # no validation (val_data="") writes no best
    if use.is_file():
        print(f"use it: icf-stream demo --weights {use}")
    return 0


RUN_FILES = ("config.json", "log.jsonl", "curves.csv", "curves.png", "metrics.json", "best.safetensors", "best.json",
             "last.safetensors", "last.json", "last.opt.pt")  # what a fit writes into its out_dir


def _check_out_dir(out: Path, *, resume: bool, force: bool) -> None:
    """A run never silently lands on another: an out_dir holding one needs --resume (continue) or --force (replace)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out_dir {out} is a file, not a folder; give a folder name")
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 judges (the others would see the files it writes)
        return
    if resume:
        if not (out / "last.safetensors").is_file():
            raise UserError(f"--resume: {out} holds no last.safetensors to continue from; leave out --resume to start a run")
        return
    held = [n for n in RUN_FILES if (out / n).exists()]
    if held and not force:
        raise UserError(f"--out_dir {out} already holds a training run ({', '.join(held[:3])}...); continue it with --resume, "
                        "start afresh there with --force, or give another --out_dir")
    for name in held:  # --force: the old run's files go, so its log is not appended to
        (out / name).unlink(missing_ok=True)

def _config_key(token: str) -> str:
    """--batch-size=8 -> --batch_size=8 (flags are hyphenated; config keys have underscores)."""
    if not token.startswith("--"):
        return token
    name, eq, value = token.partition("=")
    return name.replace("-", "_").replace("__", "--", 1) + eq + value


def cmd_eval(args) -> int:
    from .evaluate import evaluate_spec, format_table, write_json
    from .run_setup import pick_device

    compare = [arm.split(",") for arm in args.compare] if args.compare else None
    for w in sum(compare, []) if compare else [args.weights]:  # every checkpoint checked before a model or data loader is built
        if not Path(w).is_file():
            raise UserError(f"weights file {w} not found")
    device = pick_device(args.device)
    common = dict(device=device, split=args.split, clips=args.clips, batch_size=args.batch_size, workers=args.workers,
                  progress=not args.quiet)
    if compare and max(len(arm) for arm in compare) > 1:  # recipes: several seeds per arm
        from .evaluate import compare_seeds, format_compare_seeds

        rows = compare_seeds(*compare, args.data, **common)
        print(format_compare_seeds(rows))
    elif args.compare:
        from .evaluate import compare_specs, format_compare

        rows = compare_specs(*args.compare, args.data, listening=args.listening or "basic", **common)
        print(format_compare(rows))
    else:
        from .evaluate import format_listening

        rows = [evaluate_spec(args.weights, spec, listening=args.listening or "full", **common) for spec in args.data]
        print(format_table(rows, title=f"{args.weights}"))
        listening = format_listening(rows)
        if listening:
            print("\nlistening (prior capture: conflict frames whose silent prior object is >= 50% painted; follow: "
                  "swap-test frames with IoU > 0.5 to the played object)\n")  # fmt: skip
            print(listening)
    if args.json:
        write_json(args.json, rows if len(rows) > 1 else rows[0])
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(_parser(), argv, errors=(ValueError, FileNotFoundError, ImportError, RuntimeError), extra_ok=("fit",))


if __name__ == "__main__":
    sys.exit(main())
