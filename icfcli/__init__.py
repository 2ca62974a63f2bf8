"""One command-line language for icf-stream, icf-train, icf-engine and icf-bench (standard library only,
so every package may import it without breaking the layering).

What every CLI gets from here:
- ``--version``, ``-v/--verbose`` (repeat for debug) and ``-q/--quiet``, before or after the sub-command;
- hyphenated flags that also accept the config-key spelling (``--batch_size`` == ``--batch-size``);
- sub-commands as ``sub.add_parser(...)`` + ``set_defaults(func=...)``: a new one is one self-contained hunk;
- user errors (``UserError`` and the CLI's own list) as one line and exit 2, Ctrl-C as exit 130, never a traceback.

Validation before side effects: argument types here (``positive_int``, ``size_wh``, ...) fail in the parser,
before a command opens or writes anything; a command checks the rest first, then acts.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

__all__ = ["UserError", "Parser", "make_parser", "run", "positive_int", "non_negative_int", "positive_float",
           "size_wh", "version"]


class UserError(Exception):
    """A mistake the user can fix (bad argument, missing file): shown as one line, exit code 2."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("icf-avs")
    except PackageNotFoundError:
        return "0.1.0 (not installed)"


def normalise_flags(argv: Sequence[str]) -> list[str]:
    """``--batch_size=8`` -> ``--batch-size=8``: flags are hyphenated; the config-key form is accepted too.
    Only the flag name changes (values keep their underscores); everything after ``--`` is left alone."""
    out, rest = [], False
    for tok in argv:
        if rest or not tok.startswith("--") or tok == "--":
            rest = rest or tok == "--"
            out.append(tok)
            continue
        name, eq, value = tok.partition("=")
        out.append(name.replace("_", "-") + eq + value)
    return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-wrapped descriptions and epilogs; shows the default of options that have one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (d is not None and d is not False and d is not argparse.SUPPRESS and d != [] and "default" not in text
                and action.option_strings and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    def __init__(self, *a, **kw) -> None:
        kw.setdefault("formatter_class", HelpFormatter)
        kw.setdefault("allow_abbrev", False)  # `--val` must not silently mean --validate; config keys pass through
        super().__init__(*a, **kw)

    def parse_known_args(self, args=None, namespace=None):
        for action in self._subparsers._group_actions if self._subparsers else ():  # -v/-q on every sub-command,
            for sp in (getattr(action, "choices", None) or {}).values():  # including ones added by other modules
                if not any("--quiet" in a.option_strings for a in sp._actions):
                    _verbosity(sp, top=False)
        return super().parse_known_args(normalise_flags(sys.argv[1:] if args is None else args), namespace)


def _verbosity(p: argparse.ArgumentParser, *, top: bool) -> None:
    # sub-commands repeat the options with SUPPRESS defaults so `icf-x demo -v` and `icf-x -v demo` both work
    kw = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("-v", "--verbose", action="count", help="say more (repeat for debug output)", **({"default": 0} if top else kw))
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars", **kw)


def make_parser(prog: str, doc: str | None, epilog: str | None = None) -> tuple[Parser, argparse._SubParsersAction]:
    """The top-level parser with --version / -v / -q, and its sub-command registry (dest ``command``)."""
    p = Parser(prog=prog, description=doc, epilog=epilog)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    _verbosity(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    return p, sub


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None, errors: tuple[type[BaseException], ...] = (),
        log_format: str = "%(name)s: %(message)s", default_level: int = logging.WARNING, extra_ok: tuple[str, ...] = ()) -> int:
    """Parse, set logging from -v/-q, call ``args.func(args)``; user errors become one line and exit 2.
    Sub-commands named in ``extra_ok`` receive unknown ``--key=value`` pairs as ``args.extra`` (config overrides)."""
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) not in extra_ok:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    verbose, quiet = getattr(args, "verbose", 0) or 0, getattr(args, "quiet", False)
    level = logging.WARNING if quiet else max(logging.DEBUG, default_level - 10 * verbose)
    logging.basicConfig(level=level, format=log_format)
    name = f"{parser.prog} {getattr(args, 'command', '')}".strip()
    try:
        rc = args.func(args)
        return rc if isinstance(rc, int) else 0  # some commands return their report
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except (UserError, *errors) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"{name}: error: {msg}", file=sys.stderr)
        return 2


# ---- argument types: bad values fail in the parser, before anything is opened or written ----
def _number(kind: Callable, test: Callable, what: str) -> Callable[[str], object]:
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
        if not test(v):
            raise argparse.ArgumentTypeError(f"'{text}' is not {what}")
        return v

    parse.__name__ = what
    return parse


positive_int = _number(int, lambda v: v > 0, "a whole number > 0")
non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = _number(float, lambda v: v > 0, "a number > 0")


def size_wh(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w > 0 and h > 0:
            return w, h
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"size '{text}' is not WxH (e.g. 640x480)")
