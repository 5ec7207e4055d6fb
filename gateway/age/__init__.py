"""age v1 (C2SP age, https://c2sp.org/age): the gateway's own small implementation.

Everything is built on ``cryptography`` primitives (X25519, HKDF, HMAC,
ChaCha20-Poly1305, scrypt, ML-KEM-768/HPKE) and hashlib; nothing here opens a file or a
socket: callers pass binary file objects or iterables of bytes.

Keys::

    X25519Identity.generate() -> X25519Identity      str(i) == "AGE-SECRET-KEY-1..."
    identity.to_recipient() -> X25519Recipient       str(r) == "age1..."
    HybridIdentity.generate() -> HybridIdentity      "AGE-SECRET-KEY-PQ-1..." / "age1pq1..."
    ScryptIdentity(passphrase)                       decrypts passphrase files
    ScryptRecipient(passphrase, work_factor=18)      must be a file's only recipient
    parse_identity(s) / parse_recipient(s)           either kind; KeyFormatError otherwise
    parse_identities(text)                           an identity file (comments allowed)

Headers::

    read_header(f, max_size=1 MiB) -> Header         reads exactly the header; f is left
                                                     at the payload (the 16-byte nonce)
    parse_header(data) -> Header                     the same from bytes
    Header.raw (exact bytes; len(raw) is the payload offset), Header.stanzas
    (Stanza(type, args, body)), Header.mac
    unwrap_file_key(header, identities) -> bytes     verifies the MAC
    reheader(header, identities, recipients) -> bytes  new header, fresh MAC, same payload
    wrap_file_key(file_key, recipients) -> bytes     a header for a known file key

Files::

    encrypt(src, dst, recipients, *, armor=False) -> int      plaintext bytes
    decrypt(src, dst, identities) -> int                      armor detected automatically
    encrypt_iter(chunks, recipients) -> Iterator[bytes]       header first, then ciphertext
    decrypt_iter(chunks, identities) -> Iterator[bytes]       plaintext as it authenticates

``encrypt``/``decrypt`` and the iterators take ``threads=`` (default: up to 4, by CPU
count; 0 processes everything on the calling thread): the STREAM chunks of each
1 MiB batch are sealed or opened on that many threads while the next batch is read.
A regular file (anything with ``fileno()`` on a regular file) is read by position by
those threads, which is faster; ``encrypt`` then takes the bytes present when it
starts, and either function leaves the file positioned at its end. Memory stays at a
few MiB whatever the file size.

The payload by chunk, for transfers that resume (:mod:`gateway.age.stream`)::

    stream.payload_key(file_key, nonce)              the STREAM's AEAD
    stream.seal(src, aead, start_chunk=0)            ciphertext from that chunk on;
    stream.unseal(src, aead, start_chunk=0)          plaintext; also seal_file, unseal_file
    stream.payload_size(n) / plaintext_size(p)       payload bytes (nonce included) <-> plaintext
    stream.chunk_count(n), stream.sealed_offset(i)   chunks of a plaintext; where chunk i starts

Mixing recipient kinds in one file is allowed, but a file encrypted to a hybrid
recipient and to an X25519 one is only as strong as X25519 (the spec says SHOULD NOT).

Errors (all subclasses of AgeError): HeaderError (and UnsupportedError), ArmorError,
NoIdentityMatchError, MacError, PayloadError, KeyFormatError, UsageError. A decryption
that fails with PayloadError has already released the plaintext of the chunks that
authenticated; callers must treat the whole output as invalid.
"""

from __future__ import annotations

from gateway.age.core import (
    decrypt,
    decrypt_iter,
    encrypt,
    encrypt_iter,
    reheader,
    unwrap_file_key,
    wrap_file_key,
)
from gateway.age.errors import (
    AgeError,
    ArmorError,
    HeaderError,
    KeyFormatError,
    MacError,
    NoIdentityMatchError,
    PayloadError,
    UnsupportedError,
    UsageError,
)
from gateway.age.format import Header, Stanza, parse_header, read_header
from gateway.age.keys import Identity, Recipient, parse_identities, parse_identity, parse_recipient
from gateway.age.mlkem import HybridIdentity, HybridRecipient
from gateway.age.scrypt import ScryptIdentity, ScryptRecipient
from gateway.age.x25519 import X25519Identity, X25519Recipient

__all__ = [
    "AgeError",
    "ArmorError",
    "Header",
    "HeaderError",
    "HybridIdentity",
    "HybridRecipient",
    "Identity",
    "KeyFormatError",
    "MacError",
    "NoIdentityMatchError",
    "PayloadError",
    "Recipient",
    "ScryptIdentity",
    "ScryptRecipient",
    "Stanza",
    "UnsupportedError",
    "UsageError",
    "X25519Identity",
    "X25519Recipient",
    "decrypt",
    "decrypt_iter",
    "encrypt",
    "encrypt_iter",
    "parse_header",
    "parse_identities",
    "parse_identity",
    "parse_recipient",
    "read_header",
    "reheader",
    "unwrap_file_key",
    "wrap_file_key",
]
