"""Tables for people: names not prn ids, reasons where they matter, ids given back as typed."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from gateway.client.audit import ACTIONS
from tests.cli.conftest import Live

PACKAGE = Path(__file__).parents[2] / "gateway"


def test_tables_name_people_and_artifacts_not_ids(live: Live) -> None:
    artifact = live.push(b"w", name="model-z")
    live.grant(artifact["id"])
    requests = live.gateway("lab", "requests")
    assert requests.exit_code == 0, requests.output
    assert "eval@agency-a" in requests.stdout and "model-z" in requests.stdout
    grants = live.gateway("lab", "grants")
    assert "eval@agency-a" in grants.stdout and "prn_" in grants.stdout  # the id, in --wide columns
    audit = live.gateway("auditor", "audit", "tail")
    assert "lab@lab-a" in audit.stdout and "eval@agency-a" in audit.stdout, audit.stdout


def test_a_denial_reason_is_shown_in_the_table_and_when_pulling(
    live: Live, evaluator_key: Path
) -> None:
    artifact = live.push(b"w", name="model-d", kind="credential")
    made = live.call(
        "eval",
        "POST",
        f"/v1/artifacts/{artifact['id']}/access-requests",
        json={"justification": "j"},
    )
    denied = live.gateway("lab", "deny", made["id"], "--reason", "not in scope for this round")
    assert denied.exit_code == 0, denied.output
    assert denied.stderr == (
        f"gateway: access request {made['id']} of eval@agency-a denied; the evaluator is told: "
        "not in scope for this round\n"
    )
    shown = live.gateway("eval", "requests")
    assert "not in scope for this round" in shown.stdout and "denied" in shown.stdout
    pulled = live.gateway("eval", "pull", artifact["id"], "-o", "-", "-i", str(evaluator_key))
    assert pulled.exit_code == 1
    said = [ln for ln in pulled.stderr.splitlines() if not ln.startswith("gateway: note: ")]
    assert said[1] == (
        f"gateway: hint: the lab denied your request {made['id']}, saying: not in scope for this round"
    )


def test_short_ids_as_tables_print_them_are_taken_back(live: Live) -> None:
    artifact = live.push(b"w", name="model-s")
    made = live.call(
        "eval",
        "POST",
        f"/v1/artifacts/{artifact['id']}/access-requests",
        json={"justification": "j"},
    )
    short = made["id"][:12]
    done = live.gateway("lab", "approve", short, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["request"] == made["id"]
    unknown = live.gateway("lab", "approve", "req_00000000")
    assert unknown.exit_code == 1
    assert unknown.stderr == (
        "gateway: error: no access request you can see has an id starting with req_00000000\n"
    )
    shown = live.gateway("eval", "artifact", artifact["id"][:10])
    assert shown.exit_code == 0 and "model-s" in shown.stdout


class _Listing:
    """The one thing resolve() asks of the API: a list of objects."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.asked: list[str] = []

    def items(self, path: str) -> list[dict[str, str]]:
        self.asked.append(path)
        return [{"id": i} for i in self.ids]


def test_an_ambiguous_short_id_is_an_error_naming_the_candidates() -> None:
    from gateway.client.errors import InvocationError
    from gateway.client.lookup import resolve

    api = _Listing(["art_abcd" + "0" * 16, "art_abcd" + "1" * 16, "art_ef01" + "2" * 16])
    with pytest.raises(InvocationError, match=r"art_abcd is the start of 2 artifact ids") as info:
        resolve(api, "art_abcd", "art")  # type: ignore[arg-type]
    assert info.value.hint == "give more of the id"
    assert resolve(api, "art_ef01", "art") == "art_ef01" + "2" * 16  # type: ignore[arg-type]
    whole = "art_" + "9" * 20
    assert resolve(api, whole, "art") == whole and api.asked == ["/v1/artifacts"] * 2  # type: ignore[arg-type]


def test_whoami_shows_the_principal_id_and_the_recipients_fingerprint(
    live: Live, evaluator_key: Path
) -> None:
    me = json.loads(live.gateway("eval", "whoami", "--json").stdout)
    assert (
        me["id"].startswith("prn_") and me["name"] == "eval" and me["recipient"].startswith("age1")
    )
    assert [h["recipient"] for h in me["recipient_history"]] == [me["recipient"]]
    lines = live.gateway("eval", "whoami").stdout.splitlines()
    assert lines[1] == f"id:          {me['id']}"
    assert lines[2] == f"recipient:   {me['recipient']}" and lines[3].strip().startswith("SHA256:")


def test_json_is_what_the_gateway_answered(live: Live) -> None:
    artifact = live.push(b"w")
    live.grant(artifact["id"])
    listed = json.loads(live.gateway("lab", "requests", "--json").stdout)
    answered = live.call("lab", "GET", "/v1/access-requests")["items"]
    assert listed == answered


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["artifacts", "--state", "bogus"], "invalid value for '--state': 'bogus' is not one of"),
        (["requests", "--state", "bogus"], "invalid value for '--state'"),
        (["grants", "--state", "bogus"], "invalid value for '--state'"),
        (["audit", "tail", "--action", "bogus.action"], "invalid value for '--action'"),
        (["audit", "tail", "-n", "0"], "invalid value for '-n': 0 is not in the range"),
    ],
)
def test_a_filter_with_a_value_there_is_not_is_an_error(
    live: Live, args: list[str], fragment: str
) -> None:
    done = live.gateway("auditor", *args)
    assert done.exit_code == 2 and done.stdout == ""
    assert done.stderr.startswith(f"gateway: error: {fragment}"), done.stderr
    assert done.stderr.splitlines()[-1].startswith("gateway: hint: see `gateway ")


def _recorded_actions() -> set[str]:
    """The action names the package records: literal arguments of record() and end_grant()."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name not in {"record", "end_grant", "_end", "_expire", "_shred", "expire_artifact"}:
                continue
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                text = arg.value if isinstance(arg, ast.Constant) else None
                if isinstance(text, str) and re.fullmatch(r"[a-z]+(\.[a-z_]+)+", text):
                    found.add(text)
    return found


def test_tail_takes_every_action_the_gateway_records() -> None:
    recorded = _recorded_actions()
    assert {"access.request", "key.release", "auth.denied", "admin.org.create"} <= recorded
    assert recorded <= set(ACTIONS), sorted(recorded - set(ACTIONS))
