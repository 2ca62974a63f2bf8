"""``python -m stream``: the ``icf-stream`` command (stream/cli/main.py)."""

from stream.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
