"""Tampering with the log's database behind its leaves: each caught by ``audit mine`` or ``verify``.

The gateway runs as an HTTP server (the app of ``rt``, on whichever database the fixtures
give it) and the real ``gateway audit mine`` and ``gateway audit verify`` commands read it.
Each case edits the database as an operator with write access could, touching no leaf (or
only moving leaves), and the command that can see it must fail naming the entry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from gateway.audit import note, store
from gateway.audit.chains import EntryOrg
from gateway.audit.cosignature import generate_cosigner
from gateway.audit.leaf import HEADS_ACTION
from gateway.audit.sigtypes import SIG_COSIGNATURE_V1
from gateway.cli import main
from gateway.runtime import Runtime
from gateway.services import anchor
from tests.conftest import Principals
from tests.services.conftest import Evaluator, Shared, entries


@pytest.fixture
def url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@dataclass
class Story:
    url: str
    rt: Runtime
    principals: Principals
    home: Path
    index: dict[str, int]

    def run(self, who: str, *args: str) -> tuple[int, str]:
        env = {
            "GATEWAY_URL": self.url,
            "GATEWAY_TOKEN": self.principals.tokens[who],
            "XDG_CONFIG_HOME": str(self.home),
            "GATEWAY_AUDIT_KEY": self.rt.audit_signer.verifier_key,
        }
        r = CliRunner(env=env).invoke(main, list(args))
        return r.exit_code, r.output

    def mine(self, who: str) -> tuple[int, str]:
        return self.run(who, "audit", "mine")

    def verify(self) -> tuple[int, str]:
        return self.run("auditor", "audit", "verify")


@pytest.fixture
def story(
    url: str,
    rt: Runtime,
    principals: Principals,
    evaluator: Evaluator,
    shared: Shared,
    granted: dict,
    tmp_path: Path,
) -> Story:
    """A key release, two publications, accesses between and after them."""
    client, art = evaluator.client, shared.artifact
    assert evaluator.content(art).status_code == 200  # key.release, content.download
    anchor.publish(rt, force=True)
    assert client.get(f"/v1/artifacts/{art['id']}", headers=evaluator.auth).status_code == 200
    hidden = client.get(f"/v1/artifacts/{art['id']}", headers=principals.auth("eval_b"))
    assert hidden.status_code == 404  # lab-a's entry alone
    anchor.publish(rt, force=True)
    assert client.get(f"/v1/artifacts/{art['id']}", headers=evaluator.auth).status_code == 200
    log = entries(client, principals)
    heads = [e["index"] for e in log if e["action"] == HEADS_ACTION and e["subject_org"] == "lab-a"]
    index = {
        "release": next(e["index"] for e in log if e["action"] == "key.release"),
        "download": next(e["index"] for e in log if e["action"] == "content.download"),
        "hidden": next(e["index"] for e in log if e["action"] == "auth.denied"),
        "heads": heads[-1],
        "last": log[-1]["index"],
    }
    assert len(heads) == 2 and index["heads"] < index["last"]
    return Story(url, rt, principals, tmp_path, index)


def test_an_untouched_log_proves_every_view(story: Story) -> None:
    code, out = story.mine("lab")
    assert code == 0 and out.startswith("ok: ") and "about lab-a" in out, out
    assert f"chain complete to index {story.index['heads']}" in out, out
    assert "1 later entries linked to it" in out, out
    code, out = story.mine("eval")
    assert code == 0 and "about agency-a" in out, out
    code, out = story.verify()
    assert code == 0 and "filtered lists match the leaves" in out, out


Tamper = Callable[[Session, dict[str, int]], None]


def _drop(org: str, what: str) -> Tamper:
    return lambda s, at: s.execute(
        delete(EntryOrg).where(EntryOrg.org == org, EntryOrg.index == at[what])
    )


def _move(what: str, src: str, dst: str) -> Tamper:
    return lambda s, at: s.execute(
        update(EntryOrg).where(EntryOrg.org == src, EntryOrg.index == at[what]).values(org=dst)
    )


def _edit(what: str, **values: str) -> Tamper:
    return lambda s, at: s.execute(
        update(store.Entry).where(store.Entry.index == at[what]).values(**values)
    )


def _swap(first: str, second: str) -> Tamper:
    """Two entries' rows trade places (leaves and columns), as a reordering would."""

    def tamper(s: Session, at: dict[str, int]) -> None:
        a, b = (s.get(store.Entry, at[k]) for k in (first, second))
        assert a is not None and b is not None
        rows = [
            {c: getattr(e, c) for c in ("leaf", "action", "time", "request_id")} for e in (a, b)
        ]
        s.execute(update(store.Entry).where(store.Entry.index == a.index).values(**rows[1]))
        s.execute(update(store.Entry).where(store.Entry.index == b.index).values(**rows[0]))

    return tamper


# name: (tampering, who runs `audit mine` ("auditor": `audit verify`), the entry named, words)
CASES: dict[str, tuple[Tamper, str, str, str]] = {
    # the review's repro: a key release relabelled so that filtering on it hides it
    "edit-filter-column": (
        _edit("release", action="artifact.read"),
        "auditor",
        "release",
        "served for action=artifact.read, but its leaf says otherwise",
    ),
    "drop-lab-entry": (_drop("lab-a", "release"), "lab", "release", "is missing"),
    "drop-lab-entry-seen-by-verify": (
        _drop("lab-a", "release"),
        "auditor",
        "release",
        "left out of the list served for concerning=lab-a",
    ),
    "drop-agency-entry": (_drop("agency-a", "download"), "eval", "download", "is missing"),
    "drop-entry-row": (
        lambda s, at: s.execute(delete(store.Entry).where(store.Entry.index == at["release"])),
        "lab",
        "release",
        "is missing",
    ),
    "hide-heads-entry": (_drop("lab-a", "heads"), "lab", "heads", "is missing"),
    "move-to-another-org": (_move("release", "lab-a", "lab-b"), "lab", "release", "is missing"),
    "move-seen-by-the-other-org": (
        _move("hidden", "lab-a", "agency-b"),
        "eval_b",
        "hidden",
        "is foreign: served as concerning agency-b, its leaf concerns lab-a",
    ),
    "reorder": (_swap("release", "download"), "lab", "release", "inclusion proof does not verify"),
    "reorder-seen-by-verify": (
        _swap("release", "download"),
        "auditor",
        "release",
        "first bad entry:",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tampering_is_caught_naming_the_entry(story: Story, name: str) -> None:
    tamper, who, what, words = CASES[name]
    with story.rt.db.session() as s:
        tamper(s, story.index)
    code, out = story.verify() if who == "auditor" else story.mine(who)
    assert code == 1, out
    at = story.index[what]
    assert words in out, out
    assert f"entry {at}" in out or f"first bad entry: {at}" in out, out
    assert "Traceback" not in out


def test_a_column_that_no_longer_scopes_changes_nothing(story: Story) -> None:
    """``subject_org`` is derived from the leaf; scoping is by the concerning rows."""
    with story.rt.db.session() as s:
        s.execute(update(store.Entry).values(subject_org="lab-b"))
        assert s.scalars(select(EntryOrg.org).where(EntryOrg.org == "lab-b")).all() == []
    assert story.mine("lab")[0] == 0
    code, out = story.run("lab_b", "audit", "mine")
    assert code == 1 and "no heads entry" in out and "names lab-b" in out, out


def test_since_a_saved_checkpoint_and_under_a_policy(story: Story) -> None:
    saved = story.home / "saved.checkpoint"
    code, out = story.run("lab", "audit", "checkpoint", "--save", str(saved))
    assert code == 0, out
    anchor.publish(story.rt, force=True)
    code, out = story.run("lab", "audit", "mine", "--since", str(saved))
    assert code == 0 and f"from heads entry {story.index['heads']}" in out, out
    policy = story.home / "policy"
    policy.write_text(f"log {story.rt.audit_signer.verifier_key}\nquorum none\n")
    # GATEWAY_AUDIT_KEY is set: a policy on the command line is used instead of it
    code, out = story.run("eval", "audit", "mine", "--policy", str(policy))
    assert code == 0 and "about agency-a" in out, out
    key = story.rt.audit_signer.verifier_key
    code, out = story.run("eval", "audit", "mine", "--policy", str(policy), "--key", key)
    assert code != 0 and "--key" in out and "--policy" in out, out
    witness = generate_cosigner("witness.example/w1", SIG_COSIGNATURE_V1)
    policy.write_text(f"log {key}\nwitness w1 {witness.verifier_key}\nquorum w1\n")
    code, out = story.run("eval", "audit", "mine", "--policy", str(policy))
    assert code == 1 and "does not meet the policy" in out and "quorum w1" in out, out


def test_a_checkpoint_from_another_key_or_log_is_refused(story: Story) -> None:
    other = note.Signer.generate("test.gateway/audit")
    code, out = story.run("lab", "audit", "mine", "--key", other.verifier_key)
    assert code == 1 and "does not verify under the given key" in out, out
    forged = story.home / "forged.checkpoint"
    forged.write_text(
        note.sign_checkpoint(note.Checkpoint("test.gateway/audit", 3, b"\0" * 32), other)
    )
    code, out = story.run("lab", "audit", "mine", "--since", str(forged))
    assert code == 1 and "saved checkpoint" in out, out
