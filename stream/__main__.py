"""``python -m stream``: the ``icf-stream`` command (stream/cli/main.py)."""

from stream.cli.main import build_parser, main  # noqa: F401  (build_parser: every package's __main__ offers it)

if __name__ == "__main__":
    raise SystemExit(main())
