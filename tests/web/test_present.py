"""How the dashboard shows sizes, times, names and commands."""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta

import pytest

from gateway.web import present
from gateway.web.present import Person

NOW = datetime(2026, 11, 26, 12, 0, 0)


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (None, "—"),
        (0, "0 B"),
        (285, "285 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (256 << 20, "256 MiB"),
        (268501176, "256 MiB"),
        (2 << 30, "2.00 GiB"),
        (15 << 30, "15.0 GiB"),
        (3 << 50, "3.00 PiB"),
        (5000 << 50, "5000 PiB"),
    ],
)
def test_sizes_are_human(n: int | None, shown: str) -> None:
    assert present.size(n) == shown


def test_times_are_utc_to_the_minute_and_the_log_to_the_second() -> None:
    t = datetime(2026, 11, 27, 4, 18, 25)
    assert present.utc(t) == "2026-11-27 04:18 UTC"
    assert present.utc_seconds(t) == "2026-11-27 04:18:25 UTC"
    assert present.utc(None) == "—"


@pytest.mark.parametrize(
    ("delta", "relative", "ends"),
    [
        (timedelta(days=3, hours=5), "in 3 days", "ends in 3 days"),
        (timedelta(days=1), "in 1 day", "ends in 1 day"),
        (timedelta(hours=2, minutes=59), "in 2 hours", "ends in 2 hours"),
        (timedelta(minutes=45), "in 45 minutes", "ends in 45 minutes"),
        (timedelta(seconds=20), "just now", "ends in 20 seconds"),
        (timedelta(seconds=-20), "just now", "ended just now"),
        (-timedelta(hours=2), "2 hours ago", "ended 2 hours ago"),
        (-timedelta(days=40), "40 days ago", "ended 40 days ago"),
    ],
)
def test_relative_hints(delta: timedelta, relative: str, ends: str) -> None:
    assert present.relative(NOW + delta, NOW) == relative
    assert present.ends(NOW + delta, NOW) == ends


def test_people_are_shown_by_name_and_organisation() -> None:
    people = {"prn_1": Person("eve", "agency-a")}
    assert present.person(people, "prn_1") == "eve (agency-a)"
    assert present.person(people, "cli") == "the operator"
    assert present.person(people, "prn_gone") == "prn_gone"
    assert present.person(people, None) == "—"


def test_the_pull_command_is_safe_to_paste_whatever_the_name() -> None:
    command = present.pull_command("art_1", "m; rm -rf ~ $(x) `y`", "weights")
    assert shlex.split(command) == [
        "gateway",
        "pull",
        "art_1",
        "-o",
        "m; rm -rf ~ $(x) `y`",
        "-i",
        "evaluator.agekey",
    ]
    assert shlex.split(present.pull_command("art_1", "../../.ssh", "weights"))[4] == "_.._.ssh"
    assert present.pull_command("art_2", "token", "credential") == (
        "gateway pull art_2 -o - -i evaluator.agekey"
    )


def test_actions_read_as_words() -> None:
    assert present.action("content.download") == "downloaded"
    assert present.action("something.new") == "something.new"
