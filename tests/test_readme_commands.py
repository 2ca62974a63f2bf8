"""The README's commands: scripts/readme_commands.py extracts and runs them all as written (.ci/run, after the
Debian packages); these fast tests check its extractor finds every command, that it skips or shortens only
commands the README shows (and shortens only as the README says), and that every `icf-*` command parses with
that command's own parser (flags, choices, values): a renamed or removed flag breaks this test before it breaks
a reader. The Python snippet runs as written in tests/stream/test_api.py."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_commands", ROOT / "scripts" / "readme_commands.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    return [c for c in runner.readme_commands() if c.startswith("icf-")]


def test_extract_joins_continuations_drops_comments_and_other_blocks():
    text = """intro `icf-stream inline` is not a block
```bash
make demo   # a comment
# a whole-line comment

icf-train fit --a=1 \\
    --b='x # not a comment'   # but this is
pip install 'icf-avs[text]'
```
```python
print("not shell")
```
```sh
icf-engine check --weights x.onnx
```
"""
    assert runner.extract(text) == ["make demo", "icf-train fit --a=1 --b='x # not a comment'", "pip install 'icf-avs[text]'",
                                    "icf-engine check --weights x.onnx"]


def test_extract_finds_every_command_line_of_the_readme():
    """Counted another way: each line of a bash block that is not blank, a comment or a continuation is one command."""
    expected = 0
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        lines = block.splitlines()
        expected += sum(1 for i, ln in enumerate(lines)
                        if ln.strip() and not ln.lstrip().startswith("#") and not (i and lines[i - 1].rstrip().endswith("\\")))
    commands = runner.readme_commands()
    assert len(commands) == expected and len(set(commands)) == len(commands), commands
    assert {c.split()[0] for c in commands} >= {"make", "pip", "icf-stream", "icf-train", "icf-engine", "python"}
    assert all("#" not in c and "\\" not in c for c in commands), commands


def test_skips_and_shortenings_name_only_readme_commands_with_a_reason():
    commands = runner.readme_commands()
    assert set(runner.SKIP) <= set(commands), set(runner.SKIP) - set(commands)
    assert set(runner.SHORTER) <= set(commands), set(runner.SHORTER) - set(commands)
    assert not set(runner.SKIP) & set(runner.SHORTER)
    assert all(len(why) > 20 for why in runner.SKIP.values())
    for command, (extra, words) in runner.SHORTER.items():
        assert words in README, f"the README does not say {words!r}: {command} cannot be shortened"
        assert all(arg.split("=")[0] in words for arg in extra.split() if arg.startswith("--")), (extra, words)
    ran = [line for _, line, _ in runner.plan(commands) if line]
    assert len(ran) >= len(commands) // 2, ran  # most of the README runs


def test_make_demo_is_covered_by_the_icf_stream_demo_the_runner_runs():
    recipe = re.search(r"^demo:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert recipe.strip() == "$(BIN)/icf-stream demo", recipe
    assert "make demo" in runner.SKIP and "icf-stream demo" in runner.readme_commands() and "icf-stream demo" not in runner.SKIP


def test_ci_runs_the_readme_commands_after_the_debian_packages():
    ci = (ROOT / ".ci" / "run").read_text()
    run = ".venv/bin/python scripts/readme_commands.py"
    assert ci.index(run) > ci.index("apt-get install") > ci.index("\nmake test")


def test_the_readme_shows_commands_of_every_tool():
    tools = {c.split()[0] for c in readme_commands()}
    assert {"icf-stream", "icf-train", "icf-engine"} <= tools, tools


def parser_for(tool: str):
    if tool == "icf-stream":
        from stream.cli.main import build_parser
    elif tool == "icf-engine":
        from engine.__main__ import build_parser
    elif tool == "icf-bench":
        from bench.__main__ import build_parser
    else:
        from training.__main__ import _parser as build_parser
    return build_parser()


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
