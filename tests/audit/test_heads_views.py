"""After a publication, a lab's view names no other org it has no dealings with, nor its indices.

The gateway runs as an HTTP server on the fixtures' database (SQLite and PostgreSQL); the
lab reads its view through the API, ``gateway audit mine`` and the dashboard's log page.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete
from werkzeug.serving import make_server

from gateway.audit.chains import EntryOrg
from gateway.audit.leaf import HEADS_ACTION, concerns
from gateway.cli import main
from gateway.runtime import Runtime
from gateway.services import anchor
from tests.api import conftest as api_fixtures
from tests.api.conftest import Lab
from tests.conftest import Principals
from tests.web import conftest as web_fixtures
from tests.web.conftest import WebUser

lab = api_fixtures.lab  # the API tests' lab and the dashboard's signed-in users, here too
web = web_fixtures.web


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


def _items(client: FlaskClient, principals: Principals, who: str, query: str = "") -> Any:
    r = client.get(f"/v1/audit/entries?limit=1000{query}", headers=principals.auth(who))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["items"]


def _published(lab: Lab, principals: Principals, rt: Runtime) -> list[int]:
    """lab-a's artifact read by agency-a; lab-b acts alone; a publication. lab-b's indices."""
    c = lab.client
    art = lab.push(b"weights")
    assert c.get(f"/v1/artifacts/{art['id']}", headers=principals.auth("eval")).status_code == 200
    r = c.post(
        "/v1/uploads",
        json={"name": "secret-model", "kind": "weights", "share_with": ["agency-b"]},
        headers=principals.auth("lab_b"),
    )
    assert r.status_code == 201, r.get_json()
    assert anchor.publish(rt, force=True) is not None
    theirs = [i["index"] for i in _items(c, principals, "auditor", "&concerning=lab-b")]
    assert theirs
    return theirs


def _run(url: str, rt: Runtime, token: str, home: Path, *args: str) -> tuple[int, str]:
    env = {
        "GATEWAY_URL": url,
        "GATEWAY_TOKEN": token,
        "XDG_CONFIG_HOME": str(home),
        "GATEWAY_AUDIT_KEY": rt.audit_signer.verifier_key,
    }
    r = CliRunner(env=env).invoke(main, list(args))
    return r.exit_code, r.output


def test_a_labs_view_after_a_publication_names_no_stranger(
    lab: Lab, principals: Principals, rt: Runtime
) -> None:
    theirs = _published(lab, principals, rt)
    items = _items(lab.client, principals, "lab")
    assert "lab-b" not in json.dumps(items)
    heads = [i["entry"] for i in items if i["entry"]["action"] == HEADS_ACTION]
    assert len(heads) == 1 and heads[0]["subject_org"] == "lab-a"
    assert list(heads[0]["prev"]) == ["lab-a"]
    for item in items:
        entry = item["entry"]
        assert not set(entry["prev"].values()) & set(theirs), entry
        # Only an entry that concerns lab-a and another org (agency-a's read) links that other
        # org, and only to an index, never to one of lab-b's.
        assert set(entry["prev"]) == set(concerns(entry)) and "lab-a" in entry["prev"]
    # Each org that has entries got its own heads entry, seen by that org alone.
    everything = [i["entry"] for i in _items(lab.client, principals, "auditor")]
    run = [e for e in everything if e["action"] == HEADS_ACTION]
    assert [e["subject_org"] for e in run] == ["agency-a", "lab-a", "lab-b"]
    assert [e["index"] for e in run] == [len(everything) - 3 + k for k in range(3)]
    for who, org in (("eval", "agency-a"), ("lab_b", "lab-b")):
        mine = [i["entry"] for i in _items(lab.client, principals, who)]
        assert [e["subject_org"] for e in mine if e in run] == [org], who


def test_audit_mine_proves_the_view_with_the_labs_own_heads_entry(
    lab: Lab, principals: Principals, rt: Runtime, url: str, tmp_path: Path
) -> None:
    _published(lab, principals, rt)
    items = _items(lab.client, principals, "lab")
    own = next(i["index"] for i in items if i["entry"]["action"] == HEADS_ACTION)
    token = principals.tokens["lab"]
    code, out = _run(url, rt, token, tmp_path, "audit", "mine", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["complete_to"] == own, out
    assert "lab-b" not in out
    code, out = _run(url, rt, principals.tokens["lab_b"], tmp_path, "audit", "mine")
    assert code == 0 and "about lab-b" in out, out
    # An entry about lab-a held back from its view is caught by its own heads entry.
    read = next(i["index"] for i in items if i["entry"]["action"] == "artifact.read")
    with rt.db.session() as s:
        s.execute(delete(EntryOrg).where(EntryOrg.org == "lab-a", EntryOrg.index == read))
    code, out = _run(url, rt, token, tmp_path, "audit", "mine")
    assert code == 1 and f"entry {read} is missing" in out, out


def test_the_dashboard_log_page_names_no_stranger(
    lab: Lab, principals: Principals, rt: Runtime, web: dict[str, WebUser]
) -> None:
    _published(lab, principals, rt)
    page = web["lab"].text("/ui/audit")
    assert HEADS_ACTION in page and "lab-b" not in page
    own = next(
        i["index"]
        for i in _items(lab.client, principals, "lab")
        if i["entry"]["action"] == HEADS_ACTION
    )
    entry = web["lab"].text(f"/ui/audit/entries/{own}")
    assert "lab-a" in entry and "lab-b" not in entry
    assert "lab-b" in web["auditor"].text("/ui/audit")
