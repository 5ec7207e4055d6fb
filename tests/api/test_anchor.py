"""Anchors: signed checkpoints published write-once, and the live log checked against them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import delete, update
from sqlalchemy.sql.expression import Executable

from gateway import events
from gateway.audit import store
from gateway.clock import FrozenClock
from gateway.runtime import Runtime
from gateway.services import anchor
from tests.api.conftest import Lab


def test_publish_when_due_and_only_then(lab: Lab, rt) -> None:
    lab.push(b"w")
    assert anchor.publish(rt) is not None  # the first anchor is due at once (time rule)
    assert anchor.publish(rt) is None  # nothing new
    lab.push(b"w2", name="second")
    assert anchor.publish(rt) is None  # fewer than anchor_every_entries, and too soon
    assert anchor.publish(rt, force=True) is not None
    folder = Path(rt.config.audit.archive_dir)
    names = sorted(os.listdir(folder))
    assert [n.split("-")[0] for n in names].count("checkpoint") == 2
    assert any(n.startswith("entries-000000000000-") for n in names)
    for n in names:
        assert (folder / n).stat().st_mode & 0o777 == 0o400
    report = anchor.check_published(rt)
    assert report.ok and report.checked == 2, report.message


def _log_size(rt: Runtime) -> int:
    with rt.db.session() as session:
        return store.size(session)


def _append(rt: Runtime, n: int) -> None:
    """``n`` more entries in the log, as the operator's CLI records them."""
    for i in range(n):
        with events.fail_closed(rt) as session:
            events.record(rt, session, "admin.org.create", None, details={"org": f"org-{i}"})


def test_publish_by_count_waits_for_that_many_new_entries(rt: Runtime, clock: FrozenClock) -> None:
    every = 3
    counting = Runtime(
        rt.config.replace(**{"audit.anchor_every_entries": every, "audit.anchor_every_minutes": 0}),
        clock=clock,
    )
    try:
        assert _log_size(counting) == 0  # a fresh log: the first anchor counts from entry 0
        published = []
        for batch in (every - 1, 1, every - 1, 1, every + 2):
            _append(counting, batch)
            clock.advance(hours=1)  # time alone never publishes: the time rule is off
            name = anchor.publish(counting)
            published.append(name and int(name.split("-")[1]))
        assert published == [None, every, None, 2 * every, 3 * every + 2]
    finally:
        counting.close()


@pytest.mark.parametrize(
    ("tamper", "phrase"),
    [
        (update(store.Entry).where(store.Entry.index == 1).values(leaf=b"{}"), "rewritten"),
        (delete(store.Entry).where(store.Entry.index == 0), "missing"),
    ],
)
def test_a_log_changed_after_an_anchor_is_caught(
    lab: Lab, rt: Runtime, tamper: Executable, phrase: str
) -> None:
    lab.push(b"w")
    anchor.publish(rt, force=True)
    with rt.db.session() as s:
        s.execute(tamper)
    report = anchor.check_published(rt)
    assert not report.ok and phrase in report.message


def test_a_published_checkpoint_cannot_be_replaced(lab: Lab, rt) -> None:
    from gateway.storage.archive import AlreadyPublished

    lab.push(b"w")
    name = anchor.publish(rt, force=True)
    with pytest.raises(AlreadyPublished):
        anchor.archive(rt).publish(name, b"something else")


def test_anchor_command(lab: Lab, rt) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    lab.push(b"w")
    env = {
        "GATEWAY_DATABASE_URL": rt.config.database.url,
        "GATEWAY_KEYS_DIR": rt.config.keys.dir,
        "GATEWAY_STORAGE_ROOT": str(rt.config.storage.root),
        "GATEWAY_AUDIT_ARCHIVE_DIR": rt.config.audit.archive_dir,
        "GATEWAY_AUDIT_ORIGIN": rt.config.audit.origin,
    }
    runner = CliRunner(env=env)
    r = runner.invoke(main, ["audit", "publish", "--force"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["audit", "anchors"])
    assert r.exit_code == 0 and r.stdout.startswith("OK:"), r.output
    with rt.db.session() as s:
        s.execute(update(store.Entry).where(store.Entry.index == 0).values(leaf=b"x"))
    r = runner.invoke(main, ["audit", "anchors"])
    assert r.exit_code == 1 and "gateway: error:" in r.stderr and "rewritten" in r.stderr


def test_the_sweeper_publishes_anchors(lab: Lab, rt, clock) -> None:
    from gateway.sweeper import sweep_once

    lab.push(b"w")
    assert sweep_once(rt)["anchors_published"] == 1
    assert sweep_once(rt)["anchors_published"] == 0
    lab.push(b"w2", name="second")
    clock.advance(minutes=rt.config.audit.anchor_every_minutes)
    assert sweep_once(rt)["anchors_published"] == 1
    assert anchor.check_published(rt).checked == 2


def test_a_log_with_entries_but_no_published_checkpoint_fails_the_check(lab: Lab, rt) -> None:
    empty = anchor.check_published(rt)
    assert empty.ok and empty.checked == 0, "an empty log has nothing to vouch for"
    lab.push(b"w")
    report = anchor.check_published(rt)
    assert not report.ok and report.checked == 0
    assert "no published checkpoint" in report.message, report.message


def test_anchors_deleted_from_the_local_archive_are_not_an_ok(lab: Lab, rt) -> None:
    lab.push(b"w")
    anchor.publish(rt, force=True)
    assert anchor.check_published(rt).ok
    folder = Path(rt.config.audit.archive_dir)
    for path in folder.glob("checkpoint-*"):
        path.unlink()  # what an operator who controls the disk can do
    report = anchor.check_published(rt)
    assert not report.ok and "no published checkpoint" in report.message, report.message
