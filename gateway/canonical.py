"""Canonical JSON, the one encoding the gateway signs or hashes, and the shared hex-digest form.

Canonical JSON here is ``json.dumps`` with keys sorted, no whitespace (``","`` and ``":"``
separators), non-ASCII characters written as themselves and the text encoded in UTF-8;
NaN and the infinities are refused, since JSON has no such numbers. The signed upload
manifests (:mod:`gateway.manifest`) and the audit log's leaves (:mod:`gateway.audit.leaf`)
are both exactly these bytes: changing this function changes every signature and every
leaf hash, which is a breaking change of both formats.

This module is a leaf: it imports nothing of the gateway, so anything may import it.
"""

from __future__ import annotations

import json
import re

#: A SHA-256 digest as the gateway writes it: exactly 64 lowercase hex digits, anchored at
#: both ends so that ``match`` and ``fullmatch`` agree (``$`` would allow a trailing newline).
HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")


def canonical_json(value: object) -> bytes:
    """The canonical bytes of ``value`` (sorted keys, no whitespace, UTF-8, no NaN).

    Raises what ``json.dumps`` raises: TypeError for a value JSON cannot hold (bytes, a
    datetime), ValueError for NaN or an infinity, and UnicodeEncodeError (a ValueError)
    for a lone surrogate, which UTF-8 cannot encode. Callers turn these into their own
    format's error.
    """
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")
