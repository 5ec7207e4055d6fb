"""age v1 files: encrypt, decrypt, unwrap and re-header (C2SP age, "Encrypted file format").

Design note. This module ties the pieces together the way age's ``age.go`` does: a fresh
16-byte file key (spec "File key") is wrapped by each recipient into stanzas, the header
is written with its MAC (:mod:`.format`), then a fresh 16-byte nonce and the STREAM
payload (:mod:`.stream`), optionally inside ASCII armor (:mod:`.armor`). Decryption reads
the header, lets each identity in turn look for a stanza addressed to it, verifies the
MAC with the file key found, reads the nonce and streams the payload out. Re-headering
unwraps the file key of a stored header and writes a new header for other recipients:
the payload, keyed by file key and nonce only, decrypts unchanged under it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gateway.age import stream
from gateway.age.armor import BEGIN, MAX_WHITESPACE, ArmorReader, ArmorWriter, is_armored
from gateway.age.errors import HeaderError, MacError, NoIdentityMatchError, UsageError
from gateway.age.format import (
    DEFAULT_MAX_SIZE,
    MAX_STANZAS,
    Header,
    compute_mac,
    read_header,
    write_header,
)
from gateway.age.keys import Identity, Recipient
from gateway.age.scrypt import STANZA_TYPE as SCRYPT
from gateway.age.scrypt import ScryptRecipient
from gateway.age.sources import IterReader, PeekReader, check_binary, regular_file
from gateway.age.stream import FILE_KEY_SIZE, NONCE_SIZE, ReadInto


def _check_header_rules(header: Header) -> None:
    if len(header.stanzas) > MAX_STANZAS:
        raise HeaderError(f"more than {MAX_STANZAS} stanzas")
    if any(s.type == SCRYPT for s in header.stanzas) and len(header.stanzas) != 1:
        raise HeaderError("an scrypt stanza must be the only stanza in the header")


def unwrap_file_key(header: Header, identities: Sequence[Identity]) -> bytes:
    """The file key, from the first identity that opens a stanza, with the MAC verified.

    Raises NoIdentityMatchError, MacError, or HeaderError for a malformed stanza.
    """
    _check_header_rules(header)
    if not identities:
        raise UsageError("no identity given")
    for identity in identities:
        file_key = identity.unwrap(header.stanzas)
        if file_key is None:
            continue
        if len(file_key) != FILE_KEY_SIZE:
            raise HeaderError("the unwrapped file key is not 16 bytes")
        if not hmac.compare_digest(compute_mac(file_key, header.mac_input), header.mac):
            raise MacError("the header MAC does not verify: the header was altered")
        return file_key
    raise NoIdentityMatchError("no identity matched any of the file's recipients")


def wrap_file_key(file_key: bytes, recipients: Sequence[Recipient]) -> bytes:
    """A new header carrying ``file_key`` for ``recipients``, with its MAC."""
    if not recipients:
        raise UsageError("no recipient given")
    if len(recipients) > 1 and any(isinstance(r, ScryptRecipient) for r in recipients):
        raise UsageError("a passphrase (scrypt) recipient must be the only recipient")
    stanzas = [s for r in recipients for s in r.wrap(file_key)]
    if len(stanzas) > MAX_STANZAS:
        raise UsageError(f"more than {MAX_STANZAS} stanzas")
    return write_header(stanzas, file_key)


def reheader(
    header: Header, identities: Sequence[Identity], recipients: Sequence[Recipient]
) -> bytes:
    """New header bytes for ``recipients`` carrying the file key ``identities`` open in ``header``.

    ``new header + the original payload`` (nonce and chunks) is a valid age file for them.
    """
    return wrap_file_key(unwrap_file_key(header, identities), recipients)


def _new_payload(recipients: Sequence[Recipient]) -> tuple[bytes, ChaCha20Poly1305]:
    """(header and nonce, payload AEAD) of a new file: a fresh file key and nonce."""
    file_key = os.urandom(FILE_KEY_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    head = wrap_file_key(file_key, recipients) + nonce
    return head, stream.payload_key(file_key, nonce)


class _Counting:
    def __init__(self, src: ReadInto) -> None:
        self._src = src
        self.count = 0

    def readinto(self, buffer: memoryview) -> int | None:
        n = self._src.readinto(buffer)
        self.count += n or 0
        return n


def encrypt(
    src: Any,
    dst: Any,
    recipients: Sequence[Recipient],
    *,
    armor: bool = False,
    threads: int | None = None,
) -> int:
    """Encrypt binary file ``src`` into binary file ``dst``; the plaintext size.

    A regular file is encrypted from its position to the size it has when this starts.
    """
    check_binary(src)
    head, aead = _new_payload(recipients)
    out = ArmorWriter(dst) if armor else dst
    out.write(head)
    regular = regular_file(src)
    if regular is not None:
        fd, position, end = regular
        size = max(0, end - position)
        with closing(stream.seal_file(fd, position, size, aead, threads)) as pieces:
            for piece in pieces:
                out.write(piece)
        src.seek(position + size)
        count = size
    else:
        source = _Counting(src if hasattr(src, "readinto") else PeekReader(src))
        with closing(stream.seal(source, aead, threads)) as pieces:
            for piece in pieces:
                out.write(piece)
        count = source.count
    if armor:
        out.close()
    return count


def encrypt_iter(
    chunks: Iterable[bytes], recipients: Sequence[Recipient], *, threads: int | None = None
) -> Iterator[bytes]:
    """The age file of the concatenated ``chunks``: the header and nonce first, then ciphertext."""
    head, aead = _new_payload(recipients)
    yield head
    with closing(stream.seal(IterReader(chunks), aead, threads)) as pieces:
        for piece in pieces:
            yield bytes(piece)


def _read_preamble(
    src: PeekReader, identities: Sequence[Identity], max_header: int
) -> tuple[PeekReader, ChaCha20Poly1305]:
    """(payload reader, payload AEAD) once the header and nonce are read and verified."""
    reader = src
    if is_armored(src.peek(MAX_WHITESPACE + len(BEGIN))):
        reader = PeekReader(ArmorReader(src))
    header = read_header(reader, max_size=max_header)
    file_key = unwrap_file_key(header, identities)
    nonce = reader.read(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise HeaderError("the file ends before the payload nonce")
    return reader, stream.payload_key(file_key, nonce)


def decrypt(
    src: Any,
    dst: Any,
    identities: Sequence[Identity],
    *,
    max_header: int = DEFAULT_MAX_SIZE,
    threads: int | None = None,
) -> int:
    """Decrypt binary file ``src`` (armored or not) into ``dst``; the plaintext size.

    Plaintext is written as it authenticates; on PayloadError, ``dst`` holds what
    authenticated before the error, and must be discarded by the caller.
    """
    check_binary(src)
    regular = regular_file(src)
    peek = PeekReader(src)
    reader, aead = _read_preamble(peek, identities, max_header)
    positional = regular is not None and reader is peek
    if regular is not None and positional:
        fd, position, end = regular
        offset = position + peek.consumed
        pieces = stream.unseal_file(fd, offset, max(0, end - offset), aead, threads)
    else:
        pieces = stream.unseal(reader, aead, threads)
    total = 0
    with closing(pieces):
        for piece in pieces:
            dst.write(piece)
            total += len(piece)
    if regular is not None and positional:
        src.seek(max(end, offset))
    return total


def decrypt_iter(
    chunks: Iterable[bytes],
    identities: Sequence[Identity],
    *,
    max_header: int = DEFAULT_MAX_SIZE,
    threads: int | None = None,
) -> Iterator[bytes]:
    """The plaintext of the age file whose bytes are the concatenated ``chunks``."""
    reader, aead = _read_preamble(PeekReader(IterReader(chunks)), identities, max_header)
    with closing(stream.unseal(reader, aead, threads)) as pieces:
        for piece in pieces:
            yield bytes(piece)
