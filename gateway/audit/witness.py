"""The log's side of C2SP tlog-witness: add-checkpoint requests and responses, cosignatures.

Design note, by the section of c2sp.org/tlog-witness each piece implements:

- "add-checkpoint", the request: ``old <size>`` (decimal, no leading zeroes), at most 63
  base64 consistency-proof lines, an empty line, then the signed checkpoint; every line ends
  in a newline (:func:`format_add_checkpoint`). :func:`parse_add_checkpoint` is the strict
  reader the witness program uses, so both ends share one definition.
- The responses: 200 is one or more note signature lines (em dash ... newline), which the
  client verifies by appending them to the checkpoint and opening the note with the
  witness's keys, ignoring unknown keys, and which must not carry a zero timestamp
  (:func:`parse_cosignatures`). 409 carries ``Content-Type: text/x.tlog.size`` and the
  witness's size in decimal and a newline (:class:`Conflict`); a 409 naming the very size the
  log sent is the spec's answer to equal sizes with different roots, a fork (:class:`Forked`).
  400, 403, 404 and 422 are the refusals the spec defines (:class:`WitnessRefused`).
- "Monitor Retrieval Mechanism": ``GET <monitoring prefix>/<origin hash>/checkpoint`` with
  the lowercase hex SHA-256 of the origin (:func:`origin_hash`).
- :class:`WitnessClient` does the HTTP with ``http.client``, owning its connection so each
  exchange is bounded twice: every socket operation by ``timeout``, and the whole exchange
  (connecting, sending, the answer's head and body) by ``deadline``, after which a watchdog
  shuts the connection down. A witness that trickles its answer a byte at a time, within
  every read's timeout, therefore cannot hold the log longer than the deadline. Answers are
  at most :data:`MAX_RESPONSE_BYTES`; redirects are never followed (a 3xx is a refusal: the
  witness is the URL the log was configured with). :func:`cosign` submits a checkpoint to one
  witness, retrying once from the size a 409 names, and :func:`add_cosignatures` folds the
  returned lines into the log's note. Whether enough witnesses cosigned is
  :func:`gateway.audit.trust.verify_checkpoint` with the log's own policy.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.client
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from gateway.audit import note
from gateway.audit.merkle import HASH_SIZE
from gateway.audit.note import Verifier
from gateway.audit.sigtypes import cosignature_timestamp

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_RESPONSE_BYTES = 1 << 20
_SIZE = re.compile(rb"(0|[1-9][0-9]{0,19})")


class WitnessError(Exception):
    """Submitting a checkpoint to a witness did not produce a cosignature."""


class MalformedRequest(WitnessError, ValueError):
    """An add-checkpoint request body does not follow tlog-witness (the witness answers 400)."""


class WitnessRefused(WitnessError):
    """The witness answered with a refusal: 400, 403, 404, 422 or another status."""

    MEANING = {
        400: "the request is malformed or the old size is above the checkpoint's",
        403: "the checkpoint has no valid signature by a key the witness trusts for its origin",
        404: "the witness does not know the checkpoint's origin",
        422: "the consistency proof does not verify, or the tree is not the one it claims",
    }

    def __init__(self, status: int, body: str) -> None:
        meaning = self.MEANING.get(status, "unexpected response")
        super().__init__(f"witness answered {status} ({meaning}): {body.strip()[:200]}")
        self.status = status


class BadWitnessResponse(WitnessError):
    """The witness's answer breaks the protocol: no valid cosignature, a bad size body, ..."""


class WitnessUnreachable(WitnessError):
    """The witness could not be reached, or did not answer within the deadline."""


@dataclass(frozen=True)
class AddCheckpoint:
    """An add-checkpoint request: the size the log believes the witness has, the proof, the note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes


@dataclass(frozen=True)
class Conflict:
    """409: the witness's latest cosigned checkpoint has ``size`` entries."""

    size: int


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: the witness key's name and ID, its type, its timestamp, the line."""

    name: str
    key_id: bytes
    sig_type: int
    timestamp: int
    line: str


def _decimal(value: bytes, what: str) -> int:
    if not _SIZE.fullmatch(value) or int(value) >= 1 << 64:
        raise MalformedRequest(f"{what} is not a decimal tree size")
    return int(value)


def _hash_line(line: bytes) -> bytes:
    try:
        h = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest("a consistency proof line is not base64") from None
    if len(h) != HASH_SIZE or base64.b64encode(h) != line:
        raise MalformedRequest("a consistency proof line is not one base64 SHA-256 hash")
    return h


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], checkpoint: str | bytes) -> bytes:
    """tlog-witness "add-checkpoint": the request body."""
    if old_size < 0 or len(proof) > MAX_PROOF_LINES or any(len(h) != HASH_SIZE for h in proof):
        raise ValueError("old size must be >= 0 and the proof at most 63 SHA-256 hashes")
    note_bytes = checkpoint.encode() if isinstance(checkpoint, str) else checkpoint
    lines = [b"old %d" % old_size, *(base64.b64encode(h) for h in proof)]
    return b"\n".join(lines) + b"\n\n" + note_bytes


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Read an add-checkpoint body strictly; raise :class:`MalformedRequest`."""
    head, sep, checkpoint = body.partition(b"\n\n")
    if not sep or not checkpoint:
        raise MalformedRequest(
            "request needs an old size line, proof lines, an empty line and a checkpoint"
        )
    lines = head.split(b"\n")
    if not lines[0].startswith(b"old "):
        raise MalformedRequest("request must start with an old size line")
    old = _decimal(lines[0][4:], "old size")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedRequest(f"more than {MAX_PROOF_LINES} consistency proof lines")
    return AddCheckpoint(old, tuple(_hash_line(line) for line in lines[1:]), checkpoint)


def parse_conflict(content_type: str, body: bytes) -> Conflict:
    """A 409 response: ``text/x.tlog.size`` and the witness's size, then a newline."""
    if content_type.split(";")[0].strip().lower() != SIZE_CONTENT_TYPE:
        raise BadWitnessResponse(
            f"409 with content type {content_type!r}, want {SIZE_CONTENT_TYPE}"
        )
    if not body.endswith(b"\n"):
        raise BadWitnessResponse("409 size does not end in a newline")
    try:
        return Conflict(_decimal(body[:-1], "409 size"))
    except MalformedRequest as exc:
        raise BadWitnessResponse(str(exc)) from None


def parse_cosignatures(
    signed_checkpoint: str | bytes, body: bytes, witness_keys: Iterable[Verifier]
) -> list[Cosignature]:
    """A 200 response: the witness's cosignature lines over ``signed_checkpoint``, verified.

    Lines by keys other than ``witness_keys`` are ignored; at least one must be by them.
    """
    keys = {(v.name, v.key_id): v for v in witness_keys}
    try:
        text = body.decode()
        checkpoint = (
            signed_checkpoint.decode()
            if isinstance(signed_checkpoint, bytes)
            else signed_checkpoint
        )
        note_text, _ = note.parse_note(checkpoint)
        _, lines = note.parse_note(note_text + "\n" + text)
    except (UnicodeDecodeError, note.NoteError) as exc:
        raise BadWitnessResponse(f"200 body is not note signature lines: {exc}") from None
    if not text or not text.startswith(note.SIG_PREFIX):
        raise BadWitnessResponse("200 body has no signature line")
    out: list[Cosignature] = []
    for sig in lines:
        key = keys.get((sig.name, sig.key_id))
        if key is None:
            continue
        if not key.verify(note_text.encode(), sig.signature):
            raise BadWitnessResponse(
                f"cosignature by {sig.name}+{sig.key_id.hex()} does not verify"
            )
        timed = note.SIGNATURE_TYPES[key.sig_type].timestamped
        timestamp = cosignature_timestamp(sig.signature) if timed else 0
        if timestamp == 0:
            raise BadWitnessResponse(f"cosignature by {sig.name} has no timestamp")
        out.append(Cosignature(sig.name, sig.key_id, key.sig_type, timestamp, sig.line))
    if not out:
        raise BadWitnessResponse("no cosignature by the witness's keys in its 200 response")
    return out


def parse_response(
    status: int,
    content_type: str,
    body: bytes,
    signed_checkpoint: str | bytes,
    witness_keys: Iterable[Verifier],
) -> list[Cosignature] | Conflict:
    """Interpret an add-checkpoint response: cosignatures, a :class:`Conflict`, or a refusal."""
    if status == 200:
        return parse_cosignatures(signed_checkpoint, body, witness_keys)
    if status == 409:
        return parse_conflict(content_type, body)
    raise WitnessRefused(status, body.decode("utf-8", "replace"))


def add_cosignatures(signed_checkpoint: str, cosignatures: Iterable[Cosignature]) -> str:
    """The log's note with the cosignature lines appended, each line once."""
    present = {s.line for s in note.parse_note(signed_checkpoint)[1]}
    extra = []
    for c in cosignatures:
        if c.line not in present:
            present.add(c.line)
            extra.append(c.line)
    return signed_checkpoint + "".join(extra)


def origin_hash(origin: str) -> str:
    """tlog-witness "Monitor Retrieval Mechanism": lowercase hex SHA-256 of the origin."""
    return hashlib.sha256(origin.encode()).hexdigest()


class _Watchdog:
    """Shuts a connection down when its deadline passes, unless the exchange ended first."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer: threading.Timer | None = None

    def watch(self, sock: socket.socket) -> None:
        remaining = self.started + self.seconds - time.monotonic()
        with self._lock:
            self._sock = sock
            self._timer = threading.Timer(max(0.0, remaining), self._expire)
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:  # the socket is only closed after end() took this lock
            if self._sock is None:
                return
            self.expired = True
            with contextlib.suppress(OSError):  # the TCP shutdown, under TLS too: reads see EOF
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def end(self) -> None:
        with self._lock:
            self._sock = None
            if self._timer is not None:
                self._timer.cancel()


_LENGTH = re.compile(r"[0-9]{1,19}")


def _read(response: http.client.HTTPResponse) -> bytes:
    """The answer's body, at most :data:`MAX_RESPONSE_BYTES`."""
    length = response.getheader("Content-Length")
    too_large = BadWitnessResponse(f"witness response is over {MAX_RESPONSE_BYTES} bytes")
    if length is not None and (not _LENGTH.fullmatch(length) or int(length) > MAX_RESPONSE_BYTES):
        raise too_large
    data = bytearray()
    while chunk := response.read1(65536):  # returns what has arrived: the watchdog can act
        data += chunk
        if len(data) > MAX_RESPONSE_BYTES:
            raise too_large
    return bytes(data)


def _split_url(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a witness URL is http:// or https:// with a host, got {url[:100]!r}")
    return parts


class WitnessClient:
    """One witness: its name, submission and monitoring prefixes, and the keys it cosigns with.

    ``timeout`` bounds each socket operation and ``deadline`` each whole exchange, in
    seconds; ``ssl_context`` (default: the system's trusted CAs) is used for https URLs.
    """

    def __init__(
        self,
        url: str,
        keys: Sequence[Verifier],
        *,
        monitoring_url: str | None = None,
        timeout: float = 10.0,
        deadline: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not keys:
            raise ValueError("a witness needs at least one cosigner key")
        if not 0 < timeout <= deadline:
            raise ValueError("the timeout must be positive and at most the deadline")
        self.url = url.rstrip("/")
        self.monitoring_url = (monitoring_url or url).rstrip("/")
        _split_url(self.url)
        _split_url(self.monitoring_url)
        self.keys = tuple(keys)
        self.timeout = timeout
        self.deadline = deadline
        self._ssl_context = ssl_context

    def _exchange(self, method: str, url: str, body: bytes | None) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` of one request, within the deadline."""
        parts = _split_url(url)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            context = self._ssl_context or ssl.create_default_context()
            connection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=self.timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=self.timeout
            )
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        watchdog = _Watchdog(self.deadline)
        try:
            connection.connect()
            assert connection.sock is not None
            watchdog.watch(connection.sock)
            connection.request(method, path, body=body)
            response = connection.getresponse()
            data = _read(response)
            return response.status, response.getheader("Content-Type") or "", data
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.expired:
                raise WitnessUnreachable(
                    f"witness {self.url} did not answer within {self.deadline:g} s"
                ) from None
            if isinstance(exc, http.client.HTTPException):
                raise BadWitnessResponse(f"witness {self.url} answered badly: {exc}") from None
            raise WitnessUnreachable(f"cannot reach witness {self.url}: {exc}") from None
        finally:
            watchdog.end()  # first: the socket is not shut down once it may be reused
            connection.close()

    def add_checkpoint(
        self, old_size: int, proof: Sequence[bytes], signed_checkpoint: str
    ) -> list[Cosignature] | Conflict:
        """POST add-checkpoint; the verified cosignatures, or the witness's size on 409."""
        body = format_add_checkpoint(old_size, proof, signed_checkpoint)
        status, content_type, data = self._exchange("POST", self.url + "/add-checkpoint", body)
        return parse_response(status, content_type, data, signed_checkpoint, self.keys)

    def checkpoint(self, origin: str) -> str | None:
        """The witness's latest cosigned checkpoint of ``origin`` (unverified), or None on 404."""
        url = f"{self.monitoring_url}/{origin_hash(origin)}/checkpoint"
        status, _, data = self._exchange("GET", url, None)
        if status == 404:
            return None
        if status != 200:
            raise WitnessRefused(status, data.decode("utf-8", "replace"))
        return data.decode("utf-8", "replace")


ProofFrom = Callable[[int], Sequence[bytes]]
"""Returns the consistency proof from a size to the checkpoint being submitted."""


def cosign(
    witness: WitnessClient, old_size: int, proof_from: ProofFrom, signed_checkpoint: str
) -> tuple[int, list[Cosignature]]:
    """Submit ``signed_checkpoint``; on a 409 retry once from the witness's size.

    Returns the size the witness had before (for the log to remember) and its cosignatures.
    Raises :class:`WitnessError` (a second 409, an unreachable or too slow witness included).
    """
    cp = note.parse_checkpoint(note.parse_note(signed_checkpoint)[0])
    result = witness.add_checkpoint(old_size, proof_from(old_size), signed_checkpoint)
    if isinstance(result, Conflict):
        _check_conflict(result, old_size, cp.size)
        old_size = result.size
        result = witness.add_checkpoint(old_size, proof_from(old_size), signed_checkpoint)
        if isinstance(result, Conflict):
            _check_conflict(result, old_size, cp.size)
            raise WitnessError(f"witness changed size twice (now {result.size})")
    return old_size, result


class Forked(WitnessError):
    """The witness holds a tree this checkpoint does not extend: the log forked or shrank."""


def _check_conflict(conflict: Conflict, sent: int, size: int) -> None:
    """A 409 naming the size just sent (tlog-witness: equal sizes, other roots) is a fork."""
    if conflict.size > size:
        raise Forked(
            f"witness has size {conflict.size}, above this checkpoint's {size}: "
            "the log has shrunk or forked"
        )
    if conflict.size == sent:
        raise Forked(
            f"witness cosigned another tree of size {sent}: the log has forked at that size"
        )
