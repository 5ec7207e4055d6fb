"""The age v1 header: parse and write, byte for byte (C2SP age, "Header").

Design note. A header is the version line ``age-encryption.org/v1``, one or more
recipient stanzas (``-> type args...`` then a body of canonical unpadded base64 wrapped
at 64 columns, ending with a line shorter than 64, possibly empty) and the MAC line
``--- <43 base64 chars>``. Parsing is strict, as the spec's ABNF: LF line endings only,
every argument ``1*VCHAR``, canonical base64 everywhere, and the bytes a parsed header
re-serialises to are exactly the bytes read (``Header.raw``), so the MAC (HMAC-SHA-256
over the header up to and including ``---``, key ``HKDF-SHA-256(file key, "", "header")``)
is checked over what was actually received. Sizes are capped (``max_size``, 1 MiB by
default, and ``MAX_STANZAS``) so a hostile header cannot exhaust memory. This module only
parses and writes; it never opens a file or a socket, and it knows no recipient type.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.age.errors import HeaderError, UnsupportedError

VERSION_PREFIX = b"age-encryption.org/"
VERSION_LINE = b"age-encryption.org/v1\n"
STANZA_PREFIX = b"-> "
MAC_PREFIX = b"---"
COLUMNS = 64
BYTES_PER_LINE = COLUMNS // 4 * 3
DEFAULT_MAX_SIZE = 1 << 20
MAX_STANZAS = 256
_B64 = re.compile(rb"[A-Za-z0-9+/]*")
_VCHAR = re.compile(rb"[\x21-\x7e]+")


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def b64decode(text: bytes | str, what: str = "base64") -> bytes:
    """Decode canonical unpadded standard base64 (RFC 4648 s. 3.5); HeaderError otherwise."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    if not _B64.fullmatch(data) or len(data) % 4 == 1:
        raise HeaderError(f"{what} is not unpadded base64")
    try:
        out = base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except binascii.Error:
        raise HeaderError(f"{what} is not unpadded base64") from None
    if b64encode(out).encode() != data:
        raise HeaderError(f"{what} is not canonical base64")
    return out


def b64encode(data: bytes) -> str:
    """Unpadded standard base64."""
    return base64.b64encode(data).decode().rstrip("=")


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: its type (first argument), further arguments and body."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        words = (self.type, *self.args)
        for word in words:
            if not _VCHAR.fullmatch(word.encode("utf-8", "replace")):
                raise HeaderError(f"stanza argument {word!r} is not 1*VCHAR")
        lines = [STANZA_PREFIX + " ".join(words).encode() + b"\n"]
        body = b64encode(self.body).encode()
        for i in range(0, len(body), COLUMNS):
            lines.append(body[i : i + COLUMNS] + b"\n")
        if len(body) % COLUMNS == 0:
            lines.append(b"\n")
        return b"".join(lines)


@dataclass(frozen=True)
class Header:
    """A parsed header; ``raw`` is its exact bytes, so ``len(raw)`` is the payload offset."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    raw: bytes = field(repr=False)

    @property
    def mac_input(self) -> bytes:
        """The bytes the MAC covers: everything up to and including the final ``---``."""
        return self.raw[: len(self.raw) - len(b64encode(self.mac)) - 2]


def mac_key(file_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"header").derive(file_key)


def compute_mac(file_key: bytes, mac_input: bytes) -> bytes:
    return hmac.new(mac_key(file_key), mac_input, hashlib.sha256).digest()


def _mac_input(stanzas: list[Stanza] | tuple[Stanza, ...]) -> bytes:
    if not stanzas:
        raise HeaderError("a header needs at least one stanza")
    return VERSION_LINE + b"".join(s.encode() for s in stanzas) + MAC_PREFIX


def encode_header(stanzas: list[Stanza] | tuple[Stanza, ...], mac: bytes) -> bytes:
    """Serialise a header with a given MAC (``encode_header(h.stanzas, h.mac) == h.raw``)."""
    return _mac_input(stanzas) + b" " + b64encode(mac).encode() + b"\n"


def write_header(stanzas: list[Stanza] | tuple[Stanza, ...], file_key: bytes) -> bytes:
    """Serialise a header for ``stanzas`` with its MAC under ``file_key``."""
    return encode_header(stanzas, compute_mac(file_key, _mac_input(stanzas)))


class _Lines:
    """Reads LF-terminated lines from a file object, never past the header's end."""

    def __init__(self, f: Readable, max_size: int) -> None:
        self._f = f
        self._left = max_size
        self._readline = getattr(f, "readline", None)
        self.raw = bytearray()

    def next(self) -> bytes:
        line = self._readline(self._left + 1) if self._readline is not None else self._bytewise()
        if not isinstance(line, bytes | bytearray):
            raise HeaderError("the source is not a binary file")
        if len(line) > self._left:
            raise HeaderError("the header is larger than the limit")
        self._left -= len(line)
        self.raw += line
        if not line.endswith(b"\n"):
            raise HeaderError("the file ends inside the header")
        return bytes(line[:-1])

    def _bytewise(self) -> bytes:
        out = bytearray()
        while len(out) <= self._left:
            b = self._f.read(1)
            if not b:
                break
            out += b
            if b == b"\n":
                break
        return bytes(out)


def read_header(f: Readable, max_size: int = DEFAULT_MAX_SIZE) -> Header:
    """Read exactly one header from the binary file ``f``, leaving it at the payload.

    Raises HeaderError (UnsupportedError for another version) on anything the spec's ABNF
    does not allow, or when the header exceeds ``max_size`` bytes or MAX_STANZAS stanzas.
    """
    lines = _Lines(f, max_size)
    first = lines.next()
    if first + b"\n" != VERSION_LINE:
        if first.startswith(VERSION_PREFIX):
            raise UnsupportedError(f"unsupported age version {first[len(VERSION_PREFIX) :]!r}")
        raise HeaderError("not an age file: the first line is not age-encryption.org/v1")
    stanzas: list[Stanza] = []
    line = lines.next()
    while line.startswith(STANZA_PREFIX):
        if len(stanzas) >= MAX_STANZAS:
            raise HeaderError(f"more than {MAX_STANZAS} stanzas")
        stanzas.append(_read_stanza(line, lines))
        line = lines.next()
    if not line.startswith(MAC_PREFIX):
        raise HeaderError("malformed header: expected a stanza or the MAC line")
    if not stanzas:
        raise HeaderError("the header has no recipient stanza")
    if not line.startswith(MAC_PREFIX + b" "):
        raise HeaderError("malformed MAC line")
    mac = b64decode(line[len(MAC_PREFIX) + 1 :], "header MAC")
    if len(mac) != 32:
        raise HeaderError("the header MAC is not 32 bytes")
    return Header(stanzas=tuple(stanzas), mac=mac, raw=bytes(lines.raw))


def _read_stanza(arg_line: bytes, lines: _Lines) -> Stanza:
    words = arg_line[len(STANZA_PREFIX) :].split(b" ")
    for word in words:
        if not _VCHAR.fullmatch(word):
            raise HeaderError("malformed stanza: empty argument or invalid character")
    body = bytearray()
    while True:
        line = lines.next()
        if len(line) > COLUMNS:
            raise HeaderError("malformed stanza: a body line is longer than 64 columns")
        body += b64decode(line, "stanza body")
        if len(line) < COLUMNS:
            break
    args = [w.decode("ascii") for w in words]
    return Stanza(type=args[0], args=tuple(args[1:]), body=bytes(body))


def parse_header(data: bytes) -> Header:
    """Parse a header from bytes; trailing bytes (the payload) are ignored."""
    return read_header(io.BytesIO(data), max_size=max(len(data), 1))
