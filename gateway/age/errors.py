"""The closed set of errors the age package raises.

Every failure of parsing, unwrapping, authenticating or decrypting an age file is one
of these (rage's ``DecryptError`` and age's ``format.ParseError`` are the models), so a
caller can map each to a clear message or HTTP status without catching anything else.
"""

from __future__ import annotations

__all__ = [
    "AgeError",
    "ArmorError",
    "HeaderError",
    "KeyFormatError",
    "MacError",
    "NoIdentityMatchError",
    "PayloadError",
    "UnsupportedError",
    "UsageError",
]


class AgeError(Exception):
    """Base of every error raised by :mod:`gateway.age`."""


class HeaderError(AgeError):
    """The header does not parse, or a stanza addressed to one of our identities is malformed."""


class UnsupportedError(HeaderError):
    """A well-formed file this implementation does not handle (another version, a plugin)."""


class ArmorError(AgeError):
    """The ASCII armor around the file is not strict PEM as the spec requires."""


class NoIdentityMatchError(AgeError):
    """No stanza in the header can be opened with the identities given."""


class MacError(AgeError):
    """A file key was unwrapped but the header MAC does not verify: the header was altered."""


class PayloadError(AgeError):
    """The STREAM payload is truncated, reordered, extended or altered."""


class KeyFormatError(AgeError):
    """A string is not a valid age identity or recipient of a supported kind."""


class UsageError(AgeError):
    """The call itself is invalid: no recipient, scrypt mixed with others, an empty passphrase,
    a STREAM resumed from a chunk that is not there."""
