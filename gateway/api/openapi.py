"""The OpenAPI 3.1 document of the wire contract (served at ``/v1/openapi.json``).

Written by hand, one entry per route; path parameters are named as the routes name them,
and a test holds the document and the routes to each other in both directions.
"""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway.models import ArtifactKind, Custody, CustodyType

_OBJ = {"type": "object"}
_PROBLEM = {"$ref": "#/components/schemas/Problem"}

# (method, path, summary, roles, request schema or None, {status: description})
ROUTES: list[tuple[str, str, str, str, dict[str, Any] | None, dict[str, str]]] = [
    ("get", "/healthz", "Liveness", "anyone", None, {"200": "the process runs"}),
    (
        "get",
        "/readyz",
        "Readiness",
        "anyone",
        None,
        {"200": "ready", "503": "a dependency is not writable"},
    ),
    ("get", "/metrics", "Prometheus metrics", "operator network", None, {"200": "text format"}),
    ("get", "/v1/openapi.json", "This document", "anyone", None, {"200": "OpenAPI 3.1"}),
    (
        "get",
        "/v1/me",
        "The calling principal",
        "any",
        None,
        {"200": "name, org, role, recipient, signing_key"},
    ),
    (
        "put",
        "/v1/me/recipient",
        "Register where released keys are sent",
        "evaluator",
        {
            "type": "object",
            "required": ["recipient"],
            "properties": {"recipient": {"type": "string"}},
        },
        {"200": "the principal"},
    ),
    (
        "put",
        "/v1/me/signing-key",
        "Register a manifest signing key, with the key's signature of the registration "
        "statement (proof of possession)",
        "lab",
        {
            "type": "object",
            "required": ["public_key", "proof"],
            "properties": {"public_key": {"type": "string"}, "proof": {"type": "string"}},
        },
        {
            "200": "the principal",
            "409": "held by another organisation, or revoked",
        },
    ),
    (
        "get",
        "/v1/me/signing-keys",
        "Every signing key of the caller's organisation, revoked ones included",
        "lab",
        None,
        {"200": "items"},
    ),
    (
        "delete",
        "/v1/me/signing-keys/{key_id}",
        "Revoke a signing key of the caller's organisation, for good",
        "lab",
        None,
        {"204": "revoked", "409": "already revoked"},
    ),
    (
        "get",
        "/v1/orgs/{org}/signing-keys",
        "An organisation's signing keys: those in force (items) and those revoked (revoked, "
        "each with revoked_at), so a client drops a pin the lab revoked",
        "any",
        None,
        {"200": "items, revoked"},
    ),
    (
        "put",
        "/v1/me/oms-key",
        "Register OpenSSF Model Signing material: an EC P-256/P-384 public key, or the "
        "certificate chain (CA root and intermediates, PEM) model.sig certificates chain to, "
        "stored canonical (each certificate once, ordered by SHA-256), with optionally the "
        "identity the signing certificate must carry: a SAN of its kind (a URI if it holds "
        "':', an e-mail address if '@', else a DNS name), or the CN only when it has no SANs",
        "lab",
        {
            "type": "object",
            "properties": {
                "public_key": {"type": "string"},
                "certificate_chain": {"type": "string"},
                "identity": {"type": ["string", "null"], "maxLength": 255},
            },
            "oneOf": [{"required": ["public_key"]}, {"required": ["certificate_chain"]}],
        },
        {
            "200": "id, kind, public_key or certificate_chain, fingerprint, curve, identity, "
            "principal, created_at, revoked_at",
            "400": "not such a key or chain, or an identity with a key",
            "409": "revoked earlier, holds a revoked certificate, or registered with another "
            "identity",
        },
    ),
    (
        "delete",
        "/v1/me/oms-key/{key_id}",
        "Revoke OpenSSF Model Signing material of the caller's organisation, for good",
        "lab",
        None,
        {"204": "revoked", "404": "no such key in the organisation", "409": "already revoked"},
    ),
    (
        "get",
        "/v1/orgs/{org}/oms-keys",
        "An organisation's OpenSSF Model Signing material: in force (items) and revoked",
        "any",
        None,
        {"200": "items, revoked"},
    ),
    (
        "post",
        "/v1/uploads",
        "Open an upload",
        "lab",
        {"$ref": "#/components/schemas/UploadCreate"},
        {
            "201": "the upload",
            "413": "a declared size past the organisation's in-flight quota on its own",
            "422": "a declared size that does not fit in the most parts of at most 5 GiB",
            "507": "past a quota with the uploads already open, or the free-space floor",
        },
    ),
    (
        "get",
        "/v1/uploads/{upload_id}",
        "An upload and its stored parts (resume from here)",
        "lab",
        None,
        {"200": "the upload"},
    ),
    (
        "put",
        "/v1/uploads/{upload_id}/parts/{number}",
        "Store part n (raw bytes, X-Content-SHA256 required)",
        "lab",
        None,
        {
            "200": "number, size, sha256",
            "400": "digest mismatch or bad part",
            "409": "being completed, or completed: the parts are frozen",
            "410": "aborted or timed out",
            "413": "larger than part_size",
        },
    ),
    (
        "post",
        "/v1/uploads/{upload_id}/complete",
        "Complete with a signed manifest (idempotent: the same completion again answers its"
        " artifact)",
        "lab",
        {"type": "object", "required": ["manifest", "signature"]},
        {
            "200": "the artifact, made earlier by the same completion",
            "201": "the artifact",
            "409": "being completed by another request (send the same completion again), or"
            " completed or being completed with another manifest or signature",
            "410": "aborted or timed out",
            "422": "a completion check failed",
            "503": "the database, the audit log or the object store is unavailable; the parts"
            " are kept",
        },
    ),
    (
        "delete",
        "/v1/uploads/{upload_id}",
        "Abort an upload",
        "lab",
        None,
        {"204": "aborted", "409": "being completed, or completed", "410": "ended already"},
    ),
    (
        "get",
        "/v1/artifacts",
        "Artifacts visible to the caller",
        "any",
        None,
        {"200": "items, next_cursor"},
    ),
    (
        "get",
        "/v1/artifacts/{artifact_id}",
        "One artifact",
        "any with access",
        None,
        {"200": "the artifact"},
    ),
    (
        "delete",
        "/v1/artifacts/{artifact_id}",
        "Withdraw: revoke grants, shred the key, delete objects",
        "lab",
        None,
        {
            "202": "withdrawn and shredded; deleting the stored objects is pending (the sweeper"
            " retries): JSON {artifact, state, deletion: pending}",
            "204": "withdrawn, shredded and the stored objects deleted",
            "410": "already withdrawn or expired",
            "503": "the audit log is unavailable: nothing was changed",
        },
    ),
    (
        "post",
        "/v1/artifacts/{artifact_id}/access-requests",
        "Request access",
        "evaluator",
        {"type": "object", "required": ["justification"]},
        {"201": "the request"},
    ),
    (
        "get",
        "/v1/access-requests",
        "Access requests",
        "lab, evaluator, auditor",
        None,
        {"200": "items"},
    ),
    (
        "get",
        "/v1/access-requests/{request_id}",
        "One access request",
        "lab, evaluator, auditor, admin",
        None,
        {"200": "the request"},
    ),
    (
        "get",
        "/v1/access-requests/{request_id}/custody",
        "Lab custody: what the lab makes the grantee's header from (the stored header and the"
        " grantee's registered recipient)",
        "lab (the artifact's)",
        None,
        {
            "200": "request, artifact, state, custody, grantee, grantee_name, org, recipient"
            " (null if none registered), header (base64), header_size",
            "409": "the artifact is in the gateway's custody",
        },
    ),
    (
        "post",
        "/v1/access-requests/{request_id}/approve",
        "Approve: creates a grant (lab custody: with the header the lab made for the grantee)",
        "lab",
        {"$ref": "#/components/schemas/Approval"},
        {
            "201": "the grant",
            "400": "a header on an artifact in the gateway's custody",
            "409": "lab custody without a header; no recipient registered, or another one"
            " registered since the header was made",
            "422": "the header is not one age header with one stanza of the grantee's"
            " recipient's type, or is past uploads.max_header_bytes",
        },
    ),
    ("post", "/v1/access-requests/{request_id}/deny", "Deny", "lab", _OBJ, {"200": "the request"}),
    ("get", "/v1/grants", "Grants", "any", None, {"200": "items"}),
    ("delete", "/v1/grants/{grant_id}", "Revoke a grant", "lab, admin", None, {"204": "revoked"}),
    (
        "get",
        "/v1/artifacts/{artifact_id}/content",
        "Download the age file re-headered for the caller (Range honoured; cut when the grant"
        " ends). HEAD: the same headers and X-Key-Released, no key released, nothing logged;"
        " no Content-Length before the key's release",
        "evaluator",
        None,
        {
            "200": "application/octet-stream",
            "206": "partial content",
            "403": "no active grant, or it ended before the first byte",
            "409": "no recipient, or another recipient than the key went to",
            "410": "withdrawn or expired",
            "416": "range past the end",
            "503": "the audit log or the object store is unavailable",
        },
    ),
    (
        "post",
        "/v1/artifacts/{artifact_id}/download-url",
        "A header and a time-limited URL of the payload",
        "evaluator",
        None,
        {"201": "header, url, payload_offset, expires_at"},
    ),
    (
        "get",
        "/download/{artifact_id}",
        "Payload bytes behind a gateway-signed URL (grant=, expires=, sig=; cut when the grant"
        " ends). HEAD: the same headers, nothing logged",
        "holder of the URL",
        None,
        {
            "200": "the stored payload",
            "206": "partial content",
            "403": "bad or expired signature, grant ended, or the grantee holds no valid token",
            "410": "withdrawn or expired",
            "503": "the audit log or the object store is unavailable",
        },
    ),
    (
        "get",
        "/v1/audit/entries",
        "Audit entries (with_proofs=1: each with its inclusion proof in the tree of size)",
        "auditor; lab, evaluator (entries concerning their org; a lab also the "
        "identity.recipient.set entries of principals who asked for its artifacts)",
        None,
        {"200": "items, next_cursor (with_proofs=1: size, and a proof per item)"},
    ),
    (
        "get",
        "/v1/audit/checkpoint",
        "Latest signed checkpoint (C2SP signed note)",
        "auditor, lab, evaluator",
        None,
        {"200": "text/plain"},
    ),
    (
        "get",
        "/v1/audit/proof/inclusion",
        "RFC 9162 inclusion proof",
        "auditor, lab, evaluator",
        None,
        {"200": "index, size, hashes"},
    ),
    (
        "get",
        "/v1/audit/proof/consistency",
        "RFC 9162 consistency proof",
        "auditor, lab, evaluator",
        None,
        {"200": "old, new, hashes"},
    ),
    ("get", "/v1/audit/key", "Note verifier key", "anyone", None, {"200": "text/plain"}),
    (
        "get",
        "/v1/audit/tlog/checkpoint",
        "C2SP tlog-tiles checkpoint: the latest cosigned by the witnesses' quorum",
        "auditor, lab",
        None,
        {"200": "text/plain, a C2SP signed note", "404": "no checkpoint cosigned yet"},
    ),
    (
        "get",
        "/v1/audit/tlog/signed-checkpoint",
        "The newest checkpoint the gateway signed, not yet cosigned",
        "auditor, lab",
        None,
        {"200": "text/plain, a C2SP signed note"},
    ),
    (
        "get",
        "/v1/audit/tlog/tile/{path}",
        "C2SP tlog-tiles hash tile <L>/<N>[.p/<W>] or entry bundle entries/<N>[.p/<W>]",
        "auditor, lab (hash tiles); auditor (entry bundles)",
        None,
        {"200": "application/octet-stream", "404": "no such tile in the log"},
    ),
    (
        "get",
        "/v1/principals",
        "Who principals are, by id (?id=prn_...&id=..., at most 100): those the caller may see",
        "lab (its org, its artifacts' requesters, its audit view's actors); evaluator (itself, "
        "who decided or ended its requests and grants); auditor, admin (all)",
        None,
        {"200": "items: id, name, org, role", "400": "no id, more than 100, or a malformed one"},
    ),
    (
        "get",
        "/v1/principals/{principal_id}",
        "Who one principal is (`me`: the caller)",
        "as GET /v1/principals",
        None,
        {"200": "id, name, org, role", "404": "no such principal, or not one the caller may see"},
    ),
]

SCHEMAS: dict[str, Any] = {
    "Approval": {
        "type": "object",
        "properties": {
            "duration_hours": {"type": "integer", "minimum": 1},
            "header": {
                "type": "string",
                "contentEncoding": "base64",
                "description": "lab custody: the age header the lab made for the grantee",
            },
            "recipient": {
                "type": "string",
                "description": "lab custody: the grantee's recipient the header was made for",
            },
        },
    },
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
    "UploadCreate": {
        "type": "object",
        "required": ["name", "kind", "share_with"],
        "properties": {
            "name": {"type": "string", "maxLength": 255},
            "kind": {"enum": [k.value for k in ArtifactKind]},
            "share_with": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "description": {"type": "string"},
            "size": {"type": "integer", "minimum": 1},
            "custody": {
                "enum": [c.value for c in Custody],
                "default": Custody.GATEWAY.value,
                "description": "lab: the lab encrypts to its own recipients; the gateway holds"
                " no key and makes no recipient",
            },
            "recipient_type": {
                "enum": [c.value for c in CustodyType],
                "default": CustodyType.X25519.value,
                "description": "the gateway's custody key (gateway custody only)",
            },
        },
    },
}


_INT: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": (1 << 63) - 1}
_STR: dict[str, Any] = {"type": "string"}
_PAGE: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
    "cursor": _STR,
}
# Query parameters and headers, by route (path parameters are read from the path).
QUERY: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("get", "/v1/artifacts"): _PAGE,
    ("get", "/v1/access-requests"): {**_PAGE, "artifact": _STR, "state": _STR},
    ("get", "/v1/grants"): {**_PAGE, "artifact": _STR, "state": _STR},
    ("get", "/v1/audit/entries"): {
        **_PAGE,
        "start": _INT,
        "artifact": _STR,
        "actor": _STR,
        "action": _STR,
        "concerning": _STR,
        "with_proofs": {"enum": ["0", "1"]},
        "size": {**_INT, "minimum": 1},
    },
    ("get", "/v1/audit/proof/inclusion"): {"index": _INT, "size": _INT},
    ("get", "/v1/audit/proof/consistency"): {"old": _INT, "new": _INT},
    ("get", "/download/{artifact_id}"): {"grant": _STR, "expires": _INT, "sig": _STR},
}
REQUIRED_QUERY = {"index", "old"}
HEADERS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("put", "/v1/uploads/{upload_id}/parts/{number}"): {"X-Content-SHA256": _STR},
    ("get", "/v1/artifacts/{artifact_id}/content"): {"Range": _STR, "If-Range": _STR},
    ("get", "/download/{artifact_id}"): {"Range": _STR, "If-Range": _STR},
}
# Answers every authenticated route may give, whatever it does.
COMMON = {
    "400": "bad input (the detail names it)",
    "401": "no valid token",
    "403": "refused to this role or in this state",
    "404": "not found, or not visible to the caller",
    "429": "past a rate budget (Retry-After says when to try again)",
}
# Answers of routes that act on an object, or change one: its state decides.
STATEFUL = {
    "409": "conflicts with the object's state (the detail says which)",
    "410": "no longer there: ended, withdrawn, expired or shredded",
}
BODY_TOO_LARGE = {"413": "the body is past its limit"}
STORAGE = {"507": "past the organisation's quota or the free-space floor"}


def _problem(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/problem+json": {"schema": _PROBLEM}}}


def _parameters(method: str, path: str) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {
            "name": p,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 10000}
            if p == "number"
            else {"type": "string"},
        }
        for p in (p.strip("{}") for p in path.split("/") if p.startswith("{"))
    ]
    for name, schema in QUERY.get((method, path), {}).items():
        params.append(
            {"name": name, "in": "query", "required": name in REQUIRED_QUERY, "schema": schema}
        )
    for name, schema in HEADERS.get((method, path), {}).items():
        params.append({"name": name, "in": "header", "required": False, "schema": schema})
    return params


def _answers(method: str, path: str, body: Any, responses: dict[str, str]) -> dict[str, Any]:
    extra: dict[str, str] = {}
    if path.startswith("/v1/") and path not in ("/v1/audit/key", "/v1/openapi.json"):
        extra |= COMMON
    elif path.startswith("/download/"):
        extra |= {"400": COMMON["400"], "403": "bad, expired or revoked URL", "429": COMMON["429"]}
    else:
        extra |= {"429": COMMON["429"]}
    if path.startswith(("/v1/", "/download/")) and ("{" in path or method != "get"):
        extra |= STATEFUL
    if body is not None:
        extra |= BODY_TOO_LARGE
    if (method, path) in (
        ("post", "/v1/uploads"),
        ("put", "/v1/uploads/{upload_id}/parts/{number}"),
    ):
        extra |= STORAGE
    merged = {**extra, **responses}
    return {
        code: _problem(text) if int(code) >= 400 else {"description": text}
        for code, text in sorted(merged.items())
    }


def _operation(
    method: str, path: str, summary: str, roles: str, body: Any, responses: dict[str, str]
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Who: {roles}.",
        "responses": _answers(method, path, body, responses),
    }
    params = _parameters(method, path)
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if path.startswith("/v1/") and path not in ("/v1/audit/key", "/v1/openapi.json"):
        op["security"] = [{"bearer": []}]
    return op


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, roles, body, responses in ROUTES:
        paths.setdefault(path, {})[method] = _operation(
            method, path, summary, roles, body, responses
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Model-artifact transfer gateway", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
