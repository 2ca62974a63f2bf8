"""What a person at the terminal sees while ``icf-stream live | run | demo | serve`` runs: a start
banner (what runs, the live view's URL, where the outputs go, "Ctrl-C to stop") and a status line
(per stream: state, fps, p50 / p99 capture-to-mask latency, what it hears, drops).

On a terminal the status line is rewritten in place twice a second; otherwise (a log file, CI) a
plain line every STATUS_EVERY_S seconds; nothing with -q. Its numbers come from the live view's
feed (stream/view: every sink offers each result there and never waits), so the status line is
one more consumer of the results, not a second measurement; with ``--view off`` the feed still
runs, without a page.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
from typing import TextIO

from stream.view.server import DEFAULT_HOST, DEFAULT_PORT, ViewError, ViewServer, parse_view

STATUS_EVERY_S = 5.0  # plain lines when the output is not a terminal
TTY_EVERY_S = 0.5


def view_arg(value: str) -> tuple[str, int] | None:
    try:
        return parse_view(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--view {value!r}: ")) from None


def add_view_args(group) -> None:
    group.add_argument("--view", type=view_arg, default=(DEFAULT_HOST, DEFAULT_PORT), metavar="off|PORT|HOST:PORT",
                       help=f"live view in the browser (default http://{DEFAULT_HOST}:{DEFAULT_PORT}, the next free port if busy); "
                            "an address other than loopback gets a token, printed at start")


def status_text(stats: dict[str, dict]) -> list[str]:
    """One short text per stream, from the view's stats."""
    out = []
    for sid, s in sorted(stats.items()):
        def num(key, fmt="{:.0f}", s=s):
            return "-" if s.get(key) is None else fmt.format(s[key])
        hears = s.get("hears") or ((s.get("concepts") or [["-"]])[0][0])
        out.append(f"{sid} {s.get('state', '?')}: {num('fps', '{:.1f}')} fps, p50 {num('p50_ms')} / p99 {num('p99_ms')} ms, "
                   f"hears {hears}, dropped {s.get('dropped') or 0}")
    return out


class Console:
    """``with Console(view, quiet=..., banner=[...]) as c:`` around a run; ``c.feed`` is the address
    every sink's ``view`` option gets (None: nothing to feed)."""

    def __init__(self, view: tuple[str, int] | None, *, quiet: bool = False, title: str = "icf-stream",
                 banner: list[str] | None = None, out: TextIO | None = None) -> None:
        self.view, self.quiet, self.title = view, quiet, title
        self.banner = banner or []
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.server: ViewServer | None = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.width = 0  # of the status line on the terminal (to erase it)

    @property
    def feed(self) -> str | None:
        return self.server.feed_address if self.server is not None else None

    def __enter__(self) -> Console:
        if self.view is not None or not self.quiet:
            host, port = self.view or (DEFAULT_HOST, None)
            try:
                self.server = ViewServer(host, port, title=self.title).start()
            except ViewError as exc:
                if self.view is not None:  # with --view off only the status line is lost: not worth a warning
                    print(f"icf-stream: warning: {exc}", file=sys.stderr)
        lines = list(self.banner)
        if self.server is not None and self.view is not None:
            lines.append(f"  live view: {self.server.url}" + ("  (the token is needed from other machines)" if self.server.token else ""))
        elif self.view is None:
            lines.append("  live view: off")
        lines.append("  Ctrl-C to stop")
        if not self.quiet:
            print("\n".join(lines), flush=True)
        if not self.quiet and self.server is not None:
            self.thread = threading.Thread(target=self._status, name="icf-status", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
        if self.server is not None:
            self.server.stop()

    def _status(self) -> None:
        every = TTY_EVERY_S if self.tty else STATUS_EVERY_S
        while not self.stopping.wait(every):
            texts = status_text({sid: v.stats() for sid, v in list(self.server.streams.items())})
            if not texts:
                continue
            if self.tty:
                cols = shutil.get_terminal_size((100, 20)).columns - 1
                line = " | ".join(texts)[:cols]
                self.out.write("\r" + line.ljust(self.width))
                self.width = len(line)
            else:
                self.out.write("".join(f"status: {t}\n" for t in texts))
            self.out.flush()
        if self.tty and self.width:  # leave the terminal clean for the summary
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()


def run_in_console(run, cfg, *, view: tuple[str, int] | None, quiet: bool, banner: list[str], title: str = "icf-stream"):
    """``run(cfg)`` (a pipeline or a serve) between the start banner and the end, with the live view and the
    status line fed by its sinks. Returns run's report, or None after a one-line error (a PipelineError: the
    graph could not start; the caller exits 2)."""
    from stream.graph.graph import PipelineError

    try:
        with Console(view, quiet=quiet, title=title, banner=banner) as console:
            if console.feed:
                cfg.sink = {**cfg.sink, "view": console.feed}
            return run(cfg)
    except PipelineError as exc:
        print(f"icf-stream: {exc}", file=sys.stderr)
        return None
