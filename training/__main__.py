"""icf-train: make SynthAVS data, train ICF networks, evaluate checkpoints.

    icf-train synth --out DIR --mode single --seed 0 --count 100 --format avsbench-s4
    icf-train fit --config synthavs [--key=value ...] [--resume]
    icf-train eval --data synthavs:conflict,split=test --weights weights/icf-lite-synthavs.safetensors --json out.json
    icf-train eval --data synthavs:prior-conflict --compare A.safetensors B.safetensors

Multi-GPU / multi-process: torchrun --nproc_per_node=N -m training fit --config ...
"""

from __future__ import annotations

import argparse
import json
import sys

from synthavs import MODES

DATA_HELP = (
    "data spec: synthavs[:MODE][,key=value...] | avsbench-s4:PATH | avsbench-ms3:PATH | avss:PATH | folder:PATH "
    "(path specs take ,split=NAME)"
)
FIT_EPILOG = """configs: training/configs/*.json (synthavs, synthavs-baseline, synthavs-no-mit, synthavs-no-sc,
synthavs-no-cdcl, synthavs-cpu, s4, ms3, avss). Common overrides:
  --steps=N --max_minutes=M --batch_size=B --lr=X --device=cpu|cuda --workers=N --out_dir=DIR
  --train_data=SPEC --val_data=SPEC --synth_bias=0.8 --init=CKPT --train_size=[128,128]
  ablations: --sc=false --cdcl=false --frame_text=false --segment_text=false --video_text=false --text_bridge=false
several GPUs / processes: torchrun --nproc_per_node=N -m training fit --config synthavs
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icf-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "synth",
        help="write SynthAVS clips to disk",
        description="Write SynthAVS clips (AVSBench S4/MS3 folders or MP4 + npz masks).",
    )
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--mode", default="single", choices=MODES, help="scene mode (default single)")
    s.add_argument("--seed", type=int, default=0, help="base seed; clip i is deterministic in (seed, i)")
    s.add_argument("--count", type=int, default=100, help="number of clips (default 100)")
    s.add_argument("--start", type=int, default=0, help="first clip index (default 0)")
    s.add_argument("--format", default="avsbench-s4", choices=["avsbench-s4", "avsbench-ms3", "mp4"], help="output layout")
    s.add_argument("--bias", type=float, default=0.5, help="chance the salient object is the sounding one")
    s.add_argument(
        "--split", default=None, choices=["train", "val", "test"], help="AVSBench split for every clip (default 80/10/10)"
    )
    s.add_argument("--width", type=int, default=640, help="mp4 frame width (AVSBench layouts are 224x224)")
    s.add_argument("--height", type=int, default=480, help="mp4 frame height")
    s.add_argument("--fps", type=int, default=30, help="frames per second")
    s.add_argument("--seconds", type=int, default=5, help="mp4 clip length (AVSBench clips are 5 s)")

    f = sub.add_parser(
        "fit",
        help="train a network",
        description="Train an ICF network. Unknown --key=value pairs override config fields (see training/config.py).",
        epilog=FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("--config", default="synthavs", help="config file or name in training/configs (default synthavs)")
    f.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.safetensors + last.opt.pt")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    e = sub.add_parser(
        "eval",
        help="evaluate a checkpoint",
        description="Evaluate a checkpoint: mIoU / F (official AVSBench definitions) and the empty rate. "
        "SynthAVS specs also print the listening rows (audio swap follow rate, salient capture, IoU by object size, "
        "shuffled and silent audio, prior capture on conflict frames) and the reference rows of two models that "
        "never listen (salient-only, all-objects), computed from ground truth.",
    )
    e.add_argument("--data", required=True, action="append", help=DATA_HELP + "; repeat for several")
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--weights", help="checkpoint .safetensors")
    who.add_argument(
        "--compare", nargs=2, metavar=("A", "B"),
        help="two checkpoints on the same clips: paired bootstrap 95%% interval of A - B (mIoU, F, listening rates)",
    )  # fmt: skip
    e.add_argument(
        "--listening", default=None, choices=["full", "basic", "off"],
        help="SynthAVS listening rows: full (swap test, shuffled/silent audio, references; ~6 passes), basic (model + "
        "reference rows, 1 pass), off. Default full, or basic with --compare",
    )  # fmt: skip
    e.add_argument("--json", default="", help="write the results here")
    e.add_argument("--split", default="test", help="split for path specs (default test)")
    e.add_argument("--clips", type=int, default=0, help="evaluate only the first N clips (SynthAVS default 200)")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--workers", type=int, default=2)
    e.add_argument("--device", default="auto", help="auto, cpu, cuda")
    return p


def main(argv: list[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    if args.command != "fit" and extra:
        _parser().error(f"unrecognised arguments: {' '.join(extra)}")
    try:
        if args.command == "synth":
            from .synth_to_disk import run_synth

            root = run_synth(
                args.out, fmt=args.format, mode=args.mode, seed=args.seed, count=args.count, bias=args.bias, width=args.width,
                height=args.height, fps=args.fps, seconds=args.seconds, split=args.split, start=args.start,
            )  # fmt: skip
            print(f"wrote {args.count} clips to {root}")
        elif args.command == "fit":
            from .config import load_config

            cfg = load_config(args.config, extra)
            if args.print_config:
                print(json.dumps(cfg.to_dict(), indent=2))
                return 0
            from .trainer import fit

            result = fit(cfg, resume=args.resume, quiet=args.quiet)
            print(json.dumps(result, indent=2))
        else:
            from .evaluate import evaluate_spec, format_table, write_json
            from .run_setup import pick_device

            device = pick_device(args.device)
            common = dict(device=device, split=args.split, clips=args.clips, batch_size=args.batch_size, workers=args.workers)
            if args.compare:
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
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"icf-train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
