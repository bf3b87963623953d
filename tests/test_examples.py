"""examples/ci: the jobs parse, and every `cpin` command they run is one the CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from cpin.cli import _parser

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "ci"
JOBS = sorted(EXAMPLES.glob("*.yml"))


def _commands(text: str) -> list[list[str]]:
    found = []
    for match in re.finditer(r"cpin (certify|report verify) [^\n;|]*", text):
        words = shlex.split(match.group(0).replace('"$bundle"', "reports/x"))
        found.append(words[1:])
    return found


@pytest.mark.parametrize("job", JOBS, ids=[job.name for job in JOBS])
def test_job_parses_and_its_cpin_commands_are_valid(job: Path) -> None:
    text = job.read_text(encoding="utf-8")
    assert yaml.safe_load(text)
    commands = _commands(text)
    assert any(command[0] == "certify" for command in commands)
    for command in commands:
        _parser().parse_args(command)
