"""The README's client section and the commands agree: every option it shows exists, and
every client command has an example there."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

from gateway.client.cli import main as client

README = Path(__file__).parents[2] / "README.md"


def _section() -> str:
    text = README.read_text()
    return text[
        text.index("## The client\n") : text.index("\n## ", text.index("## The client\n") + 5)
    ]


def _invocations() -> list[list[str]]:
    """Every ``gateway ...`` command the section shows, in code blocks or inline."""
    found: list[list[str]] = []
    section = _section()
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    lines += re.findall(r"`(gateway [^`]+)`", section)
    for line in lines:
        line = line.split("#", 1)[0]
        for part in re.split(r"\s\|\s|&&|\|\s", line):
            words = shlex.split(part.replace("[", " ").replace("]", " "))
            if "gateway" in words:
                found.append(words[words.index("gateway") + 1 :])
    return found


def _resolve(words: list[str]) -> tuple[click.Command, list[str], str]:
    command: click.Command = client
    path = []
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words[0]]
        words = words[1:]
    return command, words, " ".join(path)


def _leaves(group: click.Group, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            sub = _leaves(command, path + " ")
            out |= sub if not command.invoke_without_command else sub | {path}
        else:
            out.add(path)
    return out


def test_every_option_the_client_section_shows_exists() -> None:
    shown = _invocations()
    assert len(shown) > 25, shown
    for words in shown:
        command, rest, path = _resolve(words)
        options = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for word in rest:
            if word.startswith("-") and word != "-":
                assert word in options, f"`gateway {path}` has no option {word}"


def test_every_client_command_has_an_example_in_the_client_section() -> None:
    shown = {_resolve(words)[2] for words in _invocations()}
    missing = _leaves(client) - shown
    assert not missing, f"no example in the README's client section: {sorted(missing)}"
