"""Leaf helpers every room of stream/ may import (it imports nothing of ours): the one warning format."""

import sys


def warn(message: str) -> None:
    print(f"icf-stream: warning: {message}", file=sys.stderr, flush=True)
