"""Every `icf-*` command the README shows parses with that command's own parser (flags, choices, values):
a renamed or removed flag breaks this test before it breaks a reader. Running them is the job of the
tests of each command (the Python snippet runs as written in tests/stream/test_api.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        lines += [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip().startswith("icf-")]
    return lines


def parser_for(tool: str):
    if tool == "icf-stream":
        from stream.__main__ import build_parser
    elif tool == "icf-engine":
        from engine.__main__ import build_parser
    elif tool == "icf-bench":
        from bench.__main__ import build_parser
    else:
        from training.__main__ import _parser as build_parser
    return build_parser()


def test_the_readme_shows_commands_of_every_tool():
    tools = {c.split()[0] for c in readme_commands()}
    assert {"icf-stream", "icf-train", "icf-engine"} <= tools, tools


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    tool, *argv = shlex.split(command)
    parser = parser_for(tool)
    try:
        if tool == "icf-train" and argv[:1] == ["fit"]:
            parser.parse_known_args(argv)  # fit takes --key=value config overrides, checked against the config
            from training.config import load_config

            extras = [a for a in argv[1:] if a.startswith("--") and a.split("=")[0] not in ("--config", "--resume", "--force")]
            name = argv[argv.index("--config") + 1] if "--config" in argv else "synthavs-cpu"
            load_config(name, extras)
        else:
            parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"README command does not parse (exit {exc.code}): {command}")
