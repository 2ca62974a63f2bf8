"""The shared command-line conventions (icfcli): flag spelling, validated types, one-line errors, -v/-q anywhere,
and the same conventions present in all four CLIs."""

from __future__ import annotations

import argparse
import importlib

import pytest

from icfcli import UserError, make_parser, normalise_flags, positive_int, run, size_wh


def test_flag_names_take_the_config_key_spelling_values_do_not_change():
    assert normalise_flags(["--batch_size=8", "--out_dir", "a_b", "--", "--x_y"]) == ["--batch-size=8", "--out-dir", "a_b", "--", "--x_y"]


def test_types_refuse_bad_values():
    assert size_wh("640x480") == (640, 480) and positive_int("3") == 3
    for bad in ("0x480", "640", "axb"):
        with pytest.raises(argparse.ArgumentTypeError):
            size_wh(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int("0")


def test_run_turns_user_errors_into_one_line_and_exit_codes(capsys):
    p, sub = make_parser("icf-x", "test")

    def boom(args):
        raise UserError("the file x is missing")

    def interrupted(args):
        raise KeyboardInterrupt

    sub.add_parser("boom").set_defaults(func=boom)
    sub.add_parser("stop").set_defaults(func=interrupted)
    sub.add_parser("ok").set_defaults(func=lambda args: {"a report": 1})
    assert run(p, ["boom", "-q"]) == 2
    assert capsys.readouterr().err.strip() == "icf-x boom: error: the file x is missing"
    assert run(p, ["-v", "stop"]) == 130
    assert run(p, ["ok", "-v"]) == 0  # a command that returns its report still exits 0


@pytest.mark.parametrize("module", ["stream", "training", "engine", "bench"])
def test_every_cli_has_version_verbosity_and_subcommand_dispatch(module, capsys):
    mod = importlib.import_module(f"{module}.__main__")
    parser = getattr(mod, "build_parser", None) or mod._parser
    p = parser()
    with pytest.raises(SystemExit) as exc:
        p.parse_args(["--version"])
    assert exc.value.code == 0 and "0." in capsys.readouterr().out
    for name, sp in p._subparsers._group_actions[0].choices.items():
        args = p.parse_args([name, *_required(sp), "-q"])
        assert callable(args.func) and args.quiet, name


def _required(sp: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for a sub-command's required arguments (parsing only, nothing runs)."""
    out = []
    for g in sp._mutually_exclusive_groups:
        if g.required:
            out += [g._group_actions[0].option_strings[0], "x"]
    for a in sp._actions:
        if a.required and a.option_strings:
            out += [a.option_strings[0], "x"]
        elif not a.option_strings and a.nargs not in ("?", "*", argparse.SUPPRESS) and a.dest != "help":
            out += ["x"]
    return out
