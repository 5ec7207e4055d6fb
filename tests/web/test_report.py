"""The 30-day review: its page, its export, and the offline verifier of the exported file."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.audit import note, trust
from gateway.runtime import Runtime
from gateway.web import report
from gateway.web.report import ReportError, verify_report, verify_report_command
from tests.web.conftest import Story, WebUser


def export(web: dict[str, WebUser], story: Story, who: str = "auditor") -> bytes:
    r = web[who].get(f"/ui/reports/artifacts/{story.artifact['id']}/export")
    assert r.status_code == 200, r.get_data(as_text=True)[:1000]
    assert r.headers["Content-Disposition"].startswith('attachment; filename="review-artifact-')
    return r.get_data()


def policy(rt: Runtime) -> trust.Policy:
    return report.policy_for(rt.audit_signer.verifier_key, None)


def test_the_review_page_shows_the_timeline_and_totals_by_name(
    web: dict[str, WebUser], story: Story
) -> None:
    html = web["lab"].text(f"/ui/reports/artifacts/{story.artifact['id']}")
    assert "<svg" in html and 'class="mark lane0"' in html and 'class="mark refused"' in html
    assert "eve downloaded" not in html  # names, not ids, and the seeded names
    assert "eval (agency-a)" in html and "eval-b (agency-b)" in html
    totals = re.findall(r'<tr class="total" ([^>]*)>', html)
    assert len(totals) == 2
    eve = [t for t in totals if 'data-org="agency-a"' in t][0]
    assert 'data-requests="1"' in eve and 'data-approved="1"' in eve
    assert 'data-releases="1"' in eve and 'data-downloads="2"' in eve
    bob = [t for t in totals if 'data-org="agency-b"' in t][0]
    assert 'data-denied="1"' in bob and 'data-refused="1"' in bob and 'data-downloads="0"' in bob


def test_the_exported_report_verifies_offline(
    web: dict[str, WebUser], story: Story, rt: Runtime
) -> None:
    data = export(web, story)
    assert b"<script" not in data and b"http" not in data.replace(
        b"http://www.w3.org/2000/svg", b""
    )
    verdict = verify_report(data, policy(rt))
    assert verdict.kind == "artifact" and verdict.subject == story.artifact["id"]
    listed = len(re.findall(rb'<tr class="entry"', data))
    assert verdict.entries == listed >= 8
    assert "not provable with this log version" in verdict.line()
    # a lab's own export of its own artifact verifies the same way
    assert verify_report(export(web, story, "lab"), policy(rt)).entries == listed


def _leaf_of(data: bytes, index: int) -> tuple[bytes, bytes]:
    found = re.search(rb'data-index="%d" data-leaf="([^"]+)"' % index, data)
    assert found
    return found.group(1), base64.b64decode(found.group(1))


def _first_download(data: bytes) -> int:
    for index, leaf_b64 in re.findall(rb'data-index="(\d+)" data-leaf="([^"]+)"', data):
        if b"content.download" in base64.b64decode(leaf_b64):
            return int(index)
    raise AssertionError("no download listed")


def test_a_changed_entry_fails(web: dict[str, WebUser], story: Story, rt: Runtime) -> None:
    data = export(web, story)
    index = _first_download(data)
    encoded, leaf = _leaf_of(data, index)
    smaller = re.sub(rb'"bytes":\d+', b'"bytes":1', leaf)
    forged = data.replace(encoded, base64.b64encode(smaller))
    with pytest.raises(trust.CheckpointRefused, match=f"entry {index} is not proven"):
        verify_report(forged, policy(rt))


def test_totals_that_do_not_follow_from_the_entries_fail(
    web: dict[str, WebUser], story: Story, rt: Runtime
) -> None:
    data = export(web, story)
    forged = data.replace(b'data-downloads="2"', b'data-downloads="1"', 1)
    assert forged != data
    with pytest.raises(ReportError, match="totals do not match"):
        verify_report(forged, policy(rt))


def test_an_entry_dropped_from_the_evidence_or_the_table_fails(
    web: dict[str, WebUser], story: Story, rt: Runtime
) -> None:
    data = export(web, story)
    index = _first_download(data)
    no_evidence = re.sub(
        rb'<div class="evidence" id="evidence-%d".*?</div>' % index, b"", data, flags=re.S
    )
    with pytest.raises(ReportError, match="not exactly the entries proven"):
        verify_report(no_evidence, policy(rt))
    no_row = data.replace(b'<tr class="entry" data-index="%d">' % index, b"<tr>")
    with pytest.raises(ReportError, match="not exactly the entries proven"):
        verify_report(no_row, policy(rt))


def test_evidence_of_another_artifact_or_window_fails(
    web: dict[str, WebUser], story: Story, rt: Runtime
) -> None:
    data = export(web, story)
    other = data.replace(story.artifact["id"].encode(), b"art_00000000000000000000")
    with pytest.raises(ReportError, match="does not concern artifact art_0000"):
        verify_report(other, policy(rt))
    later = re.sub(rb'data-from="[^"]+"', b'data-from="2030-01-01T00:00:00Z"', data)
    with pytest.raises(ReportError, match="outside the report's window"):
        verify_report(later, policy(rt))


def test_a_checkpoint_not_signed_by_the_logs_key_fails(
    web: dict[str, WebUser], story: Story, rt: Runtime
) -> None:
    data = export(web, story)
    stranger = note.Signer(rt.config.audit.origin, bytes(32))
    with pytest.raises(trust.CheckpointRefused, match="not signed by a key of log"):
        verify_report(data, report.policy_for(stranger.verifier_key, None))


def test_the_verify_report_command(
    web: dict[str, WebUser], story: Story, rt: Runtime, tmp_path: Path
) -> None:
    good = tmp_path / "review.html"
    good.write_bytes(export(web, story))
    key = tmp_path / "audit.vkey"
    key.write_text(rt.audit_signer.verifier_key + "\n")
    runner = CliRunner()
    ok = runner.invoke(verify_report_command, [str(good), "--key", str(key)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith(f"ok: the review of artifact {story.artifact['id']} lists ")
    bad = tmp_path / "bad.html"
    bad.write_bytes(good.read_bytes().replace(b'data-requests="1"', b'data-requests="0"', 1))
    failed = runner.invoke(verify_report_command, [str(bad), "--key", rt.audit_signer.verifier_key])
    assert failed.exit_code == 1
    assert "FAILED: the totals do not match the proven entries" in failed.output
    assert "gateway: error: the review report does not verify" in failed.output
    none = runner.invoke(verify_report_command, [str(good)], env={"GATEWAY_AUDIT_KEY": ""})
    assert none.exit_code == 1 and "give the log's verifier key" in none.output


def test_the_agency_review_lists_what_the_agency_did_and_was_decided(
    web: dict[str, WebUser], story: Story, rt: Runtime
) -> None:
    r = web["auditor"].get("/ui/reports/agencies/agency-b/export")
    assert r.status_code == 200
    data = r.get_data()
    verdict = verify_report(data, policy(rt))
    assert verdict.kind == "agency" and verdict.subject == "agency-b"
    actions = [base64.b64decode(b) for b in re.findall(rb'data-leaf="([^"]+)"', data)]
    assert sum(b'"access.deny"' in leaf for leaf in actions) == 1
    assert sum(b'"access.approve"' in leaf for leaf in actions) == 0  # agency-a's
    assert web["auditor"].get("/ui/reports/agencies/nobody").status_code == 404
    assert web["lab"].get("/ui/reports/agencies/agency-b").status_code == 403


def test_a_window_past_the_limit_is_refused(
    web: dict[str, WebUser], story: Story, rt: Runtime
) -> None:
    from gateway.app import create_app

    small = Runtime(
        rt.config.replace(**{"web.report_max_entries": 3}), clock=rt.clock, database=rt.db
    )
    user = WebUser(create_app(small.config, runtime=small).test_client(), web["auditor"].token)
    user.sign_in()
    r = user.get(f"/ui/reports/artifacts/{story.artifact['id']}")
    assert r.status_code == 400 and "more than 3 entries" in r.get_data(as_text=True)


def test_the_verifier_runs_without_the_server_install(
    web: dict[str, WebUser], story: Story, rt: Runtime, tmp_path: Path
) -> None:
    """An auditor checks a report with the client install alone: no Flask, no SQLAlchemy."""
    import subprocess
    import sys

    from tests.client.test_client_only import BLOCKER

    (tmp_path / "review.html").write_bytes(export(web, story))
    script = BLOCKER + (
        "import sys\nfrom gateway.web.report import verify_report_command\n"
        "sys.argv = ['verify-report', 'review.html', '--key', sys.argv[1]]\n"
        "verify_report_command()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, rt.audit_signer.verifier_key],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: the review of artifact ")
