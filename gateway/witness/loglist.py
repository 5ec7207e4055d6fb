"""The witness's list of logs, in the witness network's ``logs/v0`` log-list format.

Design note. C2SP tlog-witness says a witness "is configured with a list of supported log
public keys" but defines no file for it; the public witness network does
(transparency-dev/witness-network ``log-list-format.md``), and other witnesses (sunlight's)
read it, so an operator can use one list for all of them:

- blank lines and lines starting with ``#`` are ignored; lines are stripped of surrounding
  whitespace; the first other line is the header ``logs/v0``;
- each log is ``vkey <vkey>``, then optionally ``origin <origin>`` (default: the vkey's key
  name), ``qpd <requests per day>`` (1 to 2^31 - 1, decimal, no leading zeroes) and
  ``contact <text>``, in that order.

Where the network's format is stricter or silent, this reader decides, and says so:
``qpd`` and ``contact`` are optional (a private witness has no use for them; a ``qpd`` given
bounds the log's new cosignatures, :mod:`gateway.witness.budget`); any other key is an error
rather than ignored, so a typo cannot silently drop a log; a vkey listed twice is an error;
one origin listed with two vkeys trusts both (key rotation). Log keys are Ed25519 (0x01), as
the network requires, or ML-DSA-44 (0x06), which c2sp.org/tlog-checkpoint recommends for logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.audit import note
from gateway.audit.note import Verifier
from gateway.audit.trust import LOG_KEY_TYPES

HEADER = "logs/v0"
_ORDER = ("vkey", "origin", "qpd", "contact")
_QPD = re.compile(r"[1-9][0-9]{0,9}")


class LogListError(ValueError):
    """The log list does not follow the ``logs/v0`` format."""


@dataclass(frozen=True)
class Log:
    """A log the witness cosigns for: its origin, the keys it signs with, its request budget."""

    origin: str
    verifiers: tuple[Verifier, ...]
    qpd: int | None = None
    contact: str | None = None


def _entry(fields: dict[str, str]) -> Log:
    try:
        verifier = note.parse_verifier_key(fields["vkey"], LOG_KEY_TYPES)
    except note.InvalidKey as exc:
        raise LogListError(f"log key {fields['vkey'][:60]!r}: {exc}") from None
    qpd = fields.get("qpd")
    if qpd is not None and (not _QPD.fullmatch(qpd) or int(qpd) >= 1 << 31):
        raise LogListError(f"qpd {qpd!r} is not a number from 1 to 2^31 - 1")
    origin = fields.get("origin", verifier.name)
    return Log(origin, (verifier,), int(qpd) if qpd else None, fields.get("contact"))


def parse_log_list(data: bytes | str) -> dict[str, Log]:
    """The logs of a ``logs/v0`` list by origin; raise :class:`LogListError` naming the line."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    entries: list[tuple[int, dict[str, str]]] = []
    header = False
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not header:
            if line != HEADER:
                raise LogListError(f"log list line {number}: the list must start with {HEADER}")
            header = True
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if key not in _ORDER or not value:
            raise LogListError(f"log list line {number}: expected vkey, origin, qpd or contact")
        if key == "vkey":
            entries.append((number, {}))
        elif not entries or _ORDER.index(key) <= max(_ORDER.index(k) for k in entries[-1][1]):
            raise LogListError(
                f"log list line {number}: {key} out of order (vkey, origin, qpd, contact)"
            )
        entries[-1][1][key] = value
    if not header:
        raise LogListError(f"the log list has no {HEADER} header")
    logs: dict[str, Log] = {}
    seen: set[str] = set()
    for number, fields in entries:
        try:
            log = _entry(fields)
        except LogListError as exc:
            raise LogListError(f"log list line {number}: {exc}") from None
        if fields["vkey"] in seen:
            raise LogListError(f"log list line {number}: vkey listed twice")
        seen.add(fields["vkey"])
        known = logs.get(log.origin)
        logs[log.origin] = (
            log
            if known is None
            else Log(
                log.origin, known.verifiers + log.verifiers, known.qpd or log.qpd, known.contact
            )
        )
    return logs
