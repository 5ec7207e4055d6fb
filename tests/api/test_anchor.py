"""Anchors: signed checkpoints published write-once, and the live log checked against them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.services import anchor
from tests.api.conftest import Lab


def test_publish_when_due_and_only_then(lab: Lab, gw) -> None:
    lab.push(b"w")
    assert anchor.publish(gw) is not None  # the first anchor is due at once (time rule)
    assert anchor.publish(gw) is None  # nothing new
    lab.push(b"w2", name="second")
    assert anchor.publish(gw) is None  # fewer than anchor_every_entries, and too soon
    assert anchor.publish(gw, force=True) is not None
    folder = Path(gw.config.audit.archive_dir)
    names = sorted(os.listdir(folder))
    assert [n.split("-")[0] for n in names].count("checkpoint") == 2
    assert any(n.startswith("entries-000000000000-") for n in names)
    for n in names:
        assert (folder / n).stat().st_mode & 0o777 == 0o400
    report = anchor.check_published(gw)
    assert report.ok and report.checked == 2, report.message


def test_publish_by_count(lab: Lab, gw) -> None:
    gw.config = gw.config.replace(
        **{"audit.anchor_every_entries": 2, "audit.anchor_every_minutes": 0}
    )
    lab.push(b"w")
    assert anchor.publish(gw) is not None


@pytest.mark.parametrize(
    ("tamper", "phrase"),
    [
        ("UPDATE audit_entries SET leaf = CAST('{}' AS BLOB) WHERE idx = 1", "rewritten"),
        ("DELETE FROM audit_entries WHERE idx = 0", "missing"),
    ],
)
def test_a_log_changed_after_an_anchor_is_caught(lab: Lab, gw, tamper: str, phrase: str) -> None:
    lab.push(b"w")
    anchor.publish(gw, force=True)
    with gw.db.session() as s:
        s.execute(text(tamper))
    report = anchor.check_published(gw)
    assert not report.ok and phrase in report.message


def test_a_published_checkpoint_cannot_be_replaced(lab: Lab, gw) -> None:
    from gateway.storage.archive import AlreadyPublished

    lab.push(b"w")
    name = anchor.publish(gw, force=True)
    with pytest.raises(AlreadyPublished):
        anchor.archive(gw).publish(name, b"something else")


def test_anchor_command(lab: Lab, gw) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    lab.push(b"w")
    env = {
        "GATEWAY_DATABASE_URL": gw.config.database.url,
        "GATEWAY_KEYS_DIR": gw.config.keys.dir,
        "GATEWAY_STORAGE_ROOT": str(gw.config.storage.root),
        "GATEWAY_AUDIT_ARCHIVE_DIR": gw.config.audit.archive_dir,
        "GATEWAY_AUDIT_ORIGIN": gw.config.audit.origin,
    }
    runner = CliRunner(env=env)
    r = runner.invoke(main, ["audit", "publish", "--force"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["audit", "anchors"])
    assert r.exit_code == 0 and r.stdout.startswith("OK:"), r.output
    with gw.db.session() as s:
        s.execute(text("UPDATE audit_entries SET leaf = CAST('x' AS BLOB) WHERE idx = 0"))
    r = runner.invoke(main, ["audit", "anchors"])
    assert r.exit_code == 1 and "gateway: error:" in r.stderr and "rewritten" in r.stderr


def test_the_sweeper_publishes_anchors(lab: Lab, gw, clock) -> None:
    from gateway.sweeper import sweep_once

    lab.push(b"w")
    assert sweep_once(gw)["anchors_published"] == 1
    assert sweep_once(gw)["anchors_published"] == 0
    lab.push(b"w2", name="second")
    clock.advance(minutes=gw.config.audit.anchor_every_minutes)
    assert sweep_once(gw)["anchors_published"] == 1
    assert anchor.check_published(gw).checked == 2
