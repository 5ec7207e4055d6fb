"""Identities and recipients: the two small interfaces, and parsing them from text.

Design note. As in age's ``age.go``, a recipient wraps a file key into stanzas
(``wrap(file_key) -> list[Stanza]``) and an identity unwraps it from a header's stanzas
(``unwrap(stanzas) -> file key | None``; None when no stanza is addressed to it,
HeaderError when one that is addressed to it is malformed). The native types are X25519
(``age1...`` / ``AGE-SECRET-KEY-1...``), the hybrid mlkem768x25519 (``age1pq1...`` /
``AGE-SECRET-KEY-PQ-1...``) and scrypt (a passphrase, never parsed from a key string).
Plugin, tagged (hardware) and SSH keys are refused with a clear KeyFormatError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from gateway.age import bech32
from gateway.age.errors import KeyFormatError
from gateway.age.format import Stanza
from gateway.age.mlkem import HybridIdentity, HybridRecipient
from gateway.age.x25519 import X25519Identity, X25519Recipient


@runtime_checkable
class Recipient(Protocol):
    def wrap(self, file_key: bytes) -> list[Stanza]: ...


@runtime_checkable
class Identity(Protocol):
    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None: ...


def parse_recipient(text: str) -> X25519Recipient | HybridRecipient:
    """An ``age1...`` (X25519) or ``age1pq1...`` (hybrid) recipient; KeyFormatError otherwise."""
    if not isinstance(text, str):
        raise KeyFormatError("a recipient is a string")
    text = text.strip()
    if text.startswith(("ssh-", "ecdsa-")):
        raise KeyFormatError("SSH recipients are not supported; use an age1... recipient")
    if not text.lower().startswith("age1"):
        raise KeyFormatError("an age recipient starts with age1")
    if text != text.lower():
        raise KeyFormatError("an age recipient is lowercase")
    hrp, _ = bech32.decode(text)
    if hrp == "age":
        return X25519Recipient.parse(text)
    if hrp == "age1pq":
        return HybridRecipient.parse(text)
    if hrp.startswith("age1tag"):
        raise KeyFormatError("tagged (hardware key) recipients are not supported")
    raise KeyFormatError(f"plugin recipients ({hrp[4:]!r}) are not supported")


def parse_identity(text: str) -> X25519Identity | HybridIdentity:
    """An ``AGE-SECRET-KEY-1...`` or ``AGE-SECRET-KEY-PQ-1...`` identity; KeyFormatError otherwise."""
    if not isinstance(text, str):
        raise KeyFormatError("an identity is a string")
    text = text.strip()
    if text.startswith("AGE-PLUGIN-"):
        raise KeyFormatError("plugin identities are not supported")
    if not text.startswith("AGE-SECRET-KEY-"):
        raise KeyFormatError("an age identity starts with AGE-SECRET-KEY-")
    hrp, _ = bech32.decode(text)
    if hrp == "AGE-SECRET-KEY-":
        return X25519Identity.parse(text)
    if hrp == "AGE-SECRET-KEY-PQ-":
        return HybridIdentity.parse(text)
    raise KeyFormatError(f"unknown identity type {hrp!r}")


def parse_identities(text: str) -> list[X25519Identity | HybridIdentity]:
    """The identities of an identity file: one per line, ``#`` comments and blanks skipped."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(parse_identity(line))
        except KeyFormatError as exc:
            raise KeyFormatError(f"line {number}: {exc}") from None
    if not found:
        raise KeyFormatError("no identity found")
    return found
