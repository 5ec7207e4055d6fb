"""Access decisions: asking for access, approving, denying, revoking, withdrawing.

Every command that destroys something names the object (its name, not only its id),
says what is destroyed, and asks first; ``--yes`` answers for scripts, and without a
terminal and without ``--yes`` nothing is destroyed. Ids may be given shortened, as the
tables print them (:func:`gateway.client.lookup.resolve`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from gateway.client import humane, labapprove, lookup
from gateway.client.base import api_for, json_option, profile_option
from gateway.client.errors import ClientError, InvocationError
from gateway.client.http import Api, ApiError
from gateway.client.tables import emit_json
from gateway.tui import out, reported, say

_CEILING = re.compile(r"between 1 and (\d+)")


def _show(value: Any, as_json: bool, line: str) -> None:
    if as_json:
        emit_json(value)
    else:
        out(line)


def _about(api: Api, artifact_id: str) -> str:
    """``NAME (art_...)`` for an artifact the caller can read, else its id."""
    try:
        found = api.get(f"/v1/artifacts/{artifact_id}")
    except ApiError:
        return artifact_id
    return f"{found.get('name')} ({humane.short_id(artifact_id)})"


@click.command("request")
@click.argument("artifact")
@click.option("--justification", required=True, help="why you need access (the lab reads this)")
@click.option(
    "--hours",
    "duration_hours",
    type=click.IntRange(min=1),
    default=None,
    help="how long a grant to ask for (default: the gateway's default grant)",
)
@profile_option
@json_option
@reported(ClientError)
def request(
    profile: str | None,
    as_json: bool,
    artifact: str,
    justification: str,
    duration_hours: int | None,
) -> None:
    """Ask the lab for access to ARTIFACT."""
    api = api_for(profile)
    artifact = lookup.resolve(api, artifact, "art")
    body: dict[str, Any] = {"justification": justification}
    if duration_hours is not None:
        body["duration_hours"] = duration_hours
    try:
        made = api.post(f"/v1/artifacts/{artifact}/access-requests", body)
    except ApiError as exc:
        raise _request_refused(api, exc) from None
    _show(made, as_json, made["id"])
    if not as_json:
        say(f"access request {made['id']} on {_about(api, artifact)} is pending: the lab decides")


def _request_refused(api: Api, exc: ApiError) -> ApiError:
    """The refusal, with the way out when it is a grant whose key went elsewhere."""
    grant_id = exc.problem_body.get("grant")
    if exc.status != 409 or not isinstance(grant_id, str):
        if exc.status == 409 and exc.problem_body.get("request"):
            exc.hint = "the lab has not decided it yet; `gateway requests` shows it"
        return exc
    grant = next((g for g in api.items("/v1/grants") if g.get("id") == grant_id), {})
    mine = api.get("/v1/me").get("recipient")
    released = grant.get("recipient")
    if released and released != mine:
        exc.hint = (
            f"its key was released to {released}, not your registered recipient: register "
            "the identity that holds it again (`gateway keygen --register-existing FILE`), "
            f"or ask the lab to revoke {grant_id} and request again"
        )
    else:
        exc.hint = f"pull under it: `gateway pull ARTIFACT -o FILE -i IDENTITY` (grant {grant_id})"
    return exc


@click.command("approve")
@click.argument("request_id", metavar="REQUEST")
@click.option(
    "--hours",
    "duration_hours",
    type=click.IntRange(min=1),
    default=None,
    help="a shorter grant than the one asked for (default: what the evaluator asked for, "
    "else the gateway's default grant); a lab can shorten a grant, never lengthen it",
)
@click.option(
    "-i",
    "--identity",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="lab custody: the lab's age identity; the grantee's header is made here with it",
)
@click.option(
    "--header-sha256",
    default=None,
    metavar="HEX",
    help="lab custody, approving from a machine that did not push the artifact: the header's "
    "SHA-256 that `gateway push` printed",
)
@click.option(
    "--trust-new-recipient",
    is_flag=True,
    help="lab custody: accept an evaluator whose id or recipient differs from the one pinned "
    "here under its id or its name, or one never pinned here (after checking with the "
    "evaluator); a recipient the audit log does not record is refused all the same",
)
@click.option(
    "--expect-recipient",
    default=None,
    metavar="AGE1...",
    help="lab custody: the recipient the evaluator gave you out of band; anything else is "
    "refused, and it confirms the first approval of an evaluator on this machine",
)
@profile_option
@json_option
@reported(ClientError)
def approve(
    profile: str | None,
    as_json: bool,
    request_id: str,
    duration_hours: int | None,
    identity: Path | None,
    header_sha256: str | None,
    trust_new_recipient: bool,
    expect_recipient: str | None,
) -> None:
    """Approve an access REQUEST: the evaluator gets a time-limited grant.

    For an artifact under lab custody, -i LAB_IDENTITY makes the evaluator's header on
    this machine (its recipient shown, checked against the audit log and this machine's
    pins, confirmed by the lab on first use, and pinned once approved) and sends it."""
    api = api_for(profile)
    request_id = lookup.resolve(api, request_id, "req")
    asked = api.get(f"/v1/access-requests/{request_id}").get("duration_hours")
    if duration_hours is not None and isinstance(asked, int) and duration_hours > asked:
        raise InvocationError(
            f"--hours {duration_hours} is more than the {asked} hours the evaluator asked for",
            hint=f"a lab can only shorten a grant: give --hours {asked} or less, or leave it out",
        )
    body: dict[str, Any] = {} if duration_hours is None else {"duration_hours": duration_hours}
    try:
        if identity is not None:
            grant = labapprove.approve_lab(
                api,
                request_id,
                identity,
                body,
                trust_new=trust_new_recipient,
                header_sha256=header_sha256,
                expect_recipient=expect_recipient,
            )
        else:
            grant = api.post(f"/v1/access-requests/{request_id}/approve", body)
    except ApiError as exc:
        raise _approve_refused(exc, duration_hours, request_id) from None
    _show(grant, as_json, grant["id"])
    if not as_json:
        who = lookup.Names(api).load([grant.get("grantee")])(grant.get("grantee"))
        ends = grant.get("not_after")
        say(
            f"grant {grant['id']} for {who} on {_about(api, str(grant.get('artifact')))} "
            f"until {ends} ({humane.ago(ends)})"
        )


def _approve_refused(exc: ApiError, hours: int | None, request_id: str) -> ApiError:
    if exc.status == 409 and exc.problem_body.get("custody") == "lab":
        return ApiError(
            "this artifact is under lab custody: only your identity can make the "
            "evaluator's header",
            status=409,
            problem=exc.problem_body,
            hint=f"approve with `gateway approve {request_id} -i LAB_IDENTITY`",
        )
    return _hours_refused(exc, hours)


def _hours_refused(exc: ApiError, hours: int | None) -> ApiError:
    ceiling = _CEILING.search(exc.detail)
    if exc.status != 400 or hours is None or "duration_hours" not in exc.detail or not ceiling:
        return exc
    return ApiError(
        f"--hours {hours} is more than the {ceiling.group(1)} hours this grant may last",
        status=400,
        problem=exc.problem_body,
        hint="the evaluator asked for no length, so the gateway's default grant is the most "
        "a lab can give: approve with fewer hours, or leave --hours out",
    )


@click.command("deny")
@click.argument("request_id", metavar="REQUEST")
@click.option("--reason", default=None, help="why (the evaluator sees it in `gateway requests`)")
@profile_option
@json_option
@reported(ClientError)
def deny(profile: str | None, as_json: bool, request_id: str, reason: str | None) -> None:
    """Deny an access REQUEST."""
    api = api_for(profile)
    request_id = lookup.resolve(api, request_id, "req")
    body = {} if reason is None else {"reason": reason}
    answer = api.post(f"/v1/access-requests/{request_id}/deny", body)
    _show(answer, as_json, request_id)
    if not as_json:
        who = lookup.Names(api).load([answer.get("requester")])(answer.get("requester"))
        told = f"; the evaluator is told: {reason}" if reason else ""
        say(f"access request {request_id} of {who} denied{told}")


COMMANDS: list[click.Command] = [request, approve, deny]
