"""C2SP signed notes and tlog-checkpoints, with pluggable signature types.

Design note, by the section of the C2SP specifications each piece implements:

- c2sp.org/signed-note, "Format" and "Signatures": a note is UTF-8 text without control
  characters other than newline, ending in a newline, then a blank line, then signature lines
  ``— <key name> base64(4-byte key ID || signature)\\n`` (em dash U+2014). The signed message
  is the text, final newline included. :func:`sign_note` writes one, :func:`open_note` parses
  and verifies one, with the rules of golang.org/x/mod ``sumdb/note.Open``: at most 100
  signature lines (the spec asks for at least 16), repeated identical lines ignored,
  signatures by unknown keys ignored, a bad signature by a known key fatal, and at least one
  verified signature required. Where Go skips every further line by a key it has already
  verified, this verifies each distinct line by a known key, so a note it accepts carries no
  line a stricter verifier (:mod:`gateway.audit.trust`, another witness) would refuse.
  :func:`parse_note` is the parsing half alone, for callers that count signatures against a
  policy.
- signed-note, "Signature types": one key ID formula (:func:`key_id`) and a table
  (:data:`SIGNATURE_TYPES`) from the type byte to the code that checks that type's keys and
  signatures, in :mod:`gateway.audit.sigtypes`: 0x01 Ed25519 over the note text, and the two
  cosignature types of c2sp.org/tlog-cosignature, 0x04 (timestamped Ed25519 over
  ``cosignature/v1``) and 0x06 (timestamped ML-DSA-44 over ``subtree/v1``). A
  :class:`Verifier` carries its type; :func:`sign_note` takes any :class:`NoteSigner`
  (:class:`Signer` here, the cosigners of :mod:`gateway.audit.cosignature`).
- signed-note, "Verifier keys": ``<name>+<hex key ID>+base64(type || public key)``
  (:func:`parse_verifier_key`, :attr:`Verifier.vkey`).
- The signer key file holds ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)``, the
  encoding of golang.org/x/mod ``note.NewSigner`` (not part of C2SP), so other tools can use
  it; :mod:`gateway.audit.cosignature` uses the same encoding for cosigner keys.
- c2sp.org/tlog-checkpoint, "Note text": origin line, decimal tree size, base64 root hash, then
  optional non-empty extension lines (:func:`format_checkpoint`, :func:`parse_checkpoint`).
  The size is at most 20 digits (a 64-bit number), so no input reaches Python's limit on
  integer conversion.

Base64 is canonical (RFC 4648, the unused bits of the last character zero) in keys and in a
checkpoint's root hash, so a parsed checkpoint formats back to the very text that was signed.
Signature lines are read as Go reads them (a line whose base64 is not canonical decodes, and
then fails or passes verification on its bytes, as in the litewitness conformance tests),
but :attr:`SignatureLine.line` is the canonical re-encoding, so nothing this package stores or
passes on carries another encoding.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nacl.signing import SigningKey

from gateway.audit.sigtypes import (
    KEY_ID_SIZE,
    SIG_ED25519,
    CosignatureV1Type,
    Ed25519Type,
    MLDSA44CosignatureType,
    SignatureType,
    key_id,
)
from gateway.keystore import read_secret_file, write_secret_file

ALG_ED25519 = bytes([SIG_ED25519])
SIG_PREFIX = "\u2014 "  # em dash and a space
MAX_SIGNATURES = 100
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class NoteError(ValueError):
    """A note, key or checkpoint was refused."""


class MalformedNote(NoteError):
    """The bytes are not a well-formed signed note."""


class InvalidSignature(NoteError):
    """A signature by a trusted key does not verify."""


class UnverifiedNote(NoteError):
    """The note has no signature by any trusted key."""


class InvalidKey(NoteError):
    """A verifier or signer key string is malformed or inconsistent."""


class MalformedCheckpoint(NoteError):
    """A note text is not a tlog-checkpoint."""


def _b64decode(s: str, *, canonical: bool = True) -> bytes:
    """Standard base64; ``canonical``: a value in any other encoding is refused."""
    try:
        raw = base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError("invalid base64") from None
    if canonical and base64.b64encode(raw).decode("ascii") != s:
        raise NoteError("base64 is not in canonical form")
    return raw


def is_valid_name(name: str) -> bool:
    """A key name: non-empty, no whitespace, no ``+``."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _checkpoint_head(text: bytes) -> tuple[str, int, bytes]:
    cp = parse_checkpoint(text.decode())
    return cp.origin, cp.size, cp.root


SIGNATURE_TYPES: Mapping[int, SignatureType] = {
    t.code: t
    for t in (Ed25519Type(), CosignatureV1Type(), MLDSA44CosignatureType(_checkpoint_head))
}
"""Every signature type this package knows, by its type byte (signed-note, "Signature types")."""


@dataclass(frozen=True)
class Verifier:
    """A trusted note verifier key: name, key ID, public key and signature type."""

    name: str
    key_id: bytes
    public_key: bytes
    sig_type: int = SIG_ED25519

    @property
    def vkey(self) -> str:
        key = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{key}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        return SIGNATURE_TYPES[self.sig_type].verify(self.name, self.public_key, message, signature)


def parse_verifier_key(vkey: str, types: Collection[int] | None = None) -> Verifier:
    """Parse ``<name>+<hex key ID>+base64(type || public key)``; raise :class:`InvalidKey`.

    ``types`` restricts the accepted signature types (default: every known type).
    """
    name, _, rest = vkey.partition("+")
    hex_id, _, key64 = rest.partition("+")
    try:
        key = _b64decode(key64)
        kid = bytes.fromhex(hex_id) if re.fullmatch(r"[0-9a-fA-F]{8}", hex_id) else b""
    except (NoteError, ValueError):
        raise InvalidKey("verifier key is malformed") from None
    if len(kid) != KEY_ID_SIZE or not is_valid_name(name) or not key:
        raise InvalidKey("verifier key is malformed")
    if key_id(name, key[0], key[1:]) != kid:
        raise InvalidKey("verifier key ID does not match the key")
    kind = SIGNATURE_TYPES.get(key[0])
    if kind is None:
        raise InvalidKey("verifier key has an unknown signature type")
    if types is not None and kind.code not in types:
        want = ", ".join(f"0x{t:02x}" for t in sorted(types))
        raise InvalidKey(f"verifier key has signature type 0x{kind.code:02x}, want {want}")
    if len(key) != 1 + kind.public_key_size:
        raise InvalidKey("verifier key has the wrong length")
    return Verifier(name, kid, key[1:], kind.code)


class NoteSigner(Protocol):
    """Anything :func:`sign_note` can sign with: a name, a key ID and a signing function."""

    name: str
    key_id: bytes

    def sign(self, message: bytes) -> bytes: ...


class Signer:
    """An Ed25519 note signer: a key name and a 32-byte seed."""

    def __init__(self, name: str, seed: bytes) -> None:
        if not is_valid_name(name):
            raise InvalidKey(f"invalid key name {name!r}")
        if len(seed) != 32:
            raise InvalidKey("an Ed25519 seed is 32 bytes")
        self.name = name
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.key_id = key_id(name, SIG_ED25519, self.public_key)

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, bytes(SigningKey.generate()))

    @classmethod
    def from_private_key(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+base64(0x01 || seed)``."""
        name, hex_id, key = split_private_key(skey)
        if key[:1] != ALG_ED25519 or len(key) != 33:
            raise InvalidKey("signer key is not an Ed25519 key")
        signer = cls(name, key[1:])
        if signer.key_id.hex() != hex_id.lower():
            raise InvalidKey("signer key ID does not match the key")
        return signer

    def private_key(self) -> str:
        """The key in its file encoding. Secret: never log it."""
        seed = base64.b64encode(ALG_ED25519 + bytes(self._key)).decode()
        return f"{PRIVATE_KEY_PREFIX}{self.name}+{self.key_id.hex()}+{seed}"

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.public_key)

    @property
    def verifier_key(self) -> str:
        """The vkey string that verifiers trust (``GET /v1/audit/key``)."""
        return self.verifier.vkey

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature

    def __repr__(self) -> str:
        return f"Signer({self.verifier_key!r})"


def split_private_key(skey: str) -> tuple[str, str, bytes]:
    """``PRIVATE+KEY+<name>+<hex key ID>+base64(type || key)`` as (name, hex ID, type || key)."""
    if not skey.startswith(PRIVATE_KEY_PREFIX):
        raise InvalidKey("signer key is malformed")
    name, _, rest = skey[len(PRIVATE_KEY_PREFIX) :].partition("+")
    hex_id, _, key64 = rest.partition("+")
    try:
        return name, hex_id, _b64decode(key64)
    except NoteError:
        raise InvalidKey("signer key is malformed") from None


def create_signer_file(path: Path, name: str) -> Signer:
    """Generate a signer named ``name`` and write it to a new file of mode 0600."""
    signer = Signer.generate(name)
    write_secret_file(path, (signer.private_key() + "\n").encode())
    return signer


def load_signer(path: Path) -> Signer:
    """Load a signer key file, refusing one that others can read."""
    return Signer.from_private_key(read_secret_file(path).decode("ascii", "replace").strip())


def _check_text(text: str) -> None:
    if any(c < " " and c != "\n" for c in text):
        raise MalformedNote("note has a control character")


def signature_line(signer: NoteSigner, text: str) -> str:
    """signed-note: one signature line by ``signer`` over the note ``text``."""
    sig = base64.b64encode(signer.key_id + signer.sign(text.encode())).decode()
    return f"{SIG_PREFIX}{signer.name} {sig}\n"


def sign_note(text: str, *signers: NoteSigner) -> str:
    """signed-note: the note ``text`` (newline-terminated) followed by one signature per signer."""
    if not text.endswith("\n") or not signers:
        raise MalformedNote("note text must end in a newline and have a signer")
    _check_text(text)
    return text + "\n" + "".join(signature_line(s, text) for s in signers)


@dataclass(frozen=True)
class Signature:
    """A signature of an opened note: key name, key ID and its line (base64 canonical)."""

    name: str
    key_id: bytes
    line: str = field(default="", compare=False)


@dataclass(frozen=True)
class SignatureLine:
    """One parsed signature line: key name, key ID, the signature bytes, the line re-encoded.

    ``line`` is the line with its base64 in canonical form (the form every signer writes), so
    a line stored or passed on has one encoding whatever the submitter wrote.
    """

    name: str
    key_id: bytes
    signature: bytes
    line: str


@dataclass(frozen=True)
class Note:
    """A note whose signatures were checked: ``verified`` by trusted keys, ``unverified`` by unknown ones."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def _split(msg: bytes | str) -> tuple[str, list[str]]:
    try:
        s = msg.decode("utf-8") if isinstance(msg, bytes) else msg
    except UnicodeDecodeError:
        raise MalformedNote("note is not UTF-8") from None
    _check_text(s)
    split = s.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no signature block")
    text, sigs = s[: split + 1], s[split + 2 :]
    if not sigs.endswith("\n"):
        raise MalformedNote("note signature block must end in a newline")
    return text, sigs[:-1].split("\n")


def _parse_signature_line(line: str) -> SignatureLine:
    if not line.startswith(SIG_PREFIX):
        raise MalformedNote("note has a line after the signatures that is not a signature")
    name, _, b64 = line[len(SIG_PREFIX) :].partition(" ")
    try:
        raw = _b64decode(b64, canonical=False)  # as Go reads it; the line is re-encoded below
    except NoteError:
        raise MalformedNote("note signature is not base64") from None
    if not is_valid_name(name) or not b64 or len(raw) < KEY_ID_SIZE + 1:
        raise MalformedNote("note signature line is malformed")
    canonical = f"{SIG_PREFIX}{name} {base64.b64encode(raw).decode()}\n"
    return SignatureLine(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:], canonical)


def parse_note(msg: bytes | str) -> tuple[str, list[SignatureLine]]:
    """Split a signed note into its text and signature lines, verifying nothing."""
    text, lines = _split(msg)
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note has more than {MAX_SIGNATURES} signatures")
    return text, [_parse_signature_line(line) for line in lines]


def open_note(msg: bytes | str, verifiers: Iterable[Verifier | str]) -> Note:
    """Parse and verify a signed note against the trusted ``verifiers`` (objects or vkey strings).

    Every distinct line by a trusted key is verified; ``verified`` holds the first line of
    each trusted key that signed. Raises :class:`MalformedNote`, :class:`InvalidSignature`
    (a line by a trusted key does not verify) or :class:`UnverifiedNote` (no trusted key
    signed it).
    """
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        ver = parse_verifier_key(v) if isinstance(v, str) else v
        known[(ver.name, ver.key_id)] = ver
    text, lines = parse_note(msg)
    message = text.encode()
    verified: dict[tuple[str, bytes], Signature] = {}
    unverified: dict[str, Signature] = {}
    checked: set[str] = set()  # an identical line verifies alike: once is enough
    for sig in lines:
        trusted = known.get((sig.name, sig.key_id))
        if trusted is None:
            unverified.setdefault(sig.line, Signature(sig.name, sig.key_id, sig.line))
            continue
        if sig.line in checked:
            continue
        if not trusted.verify(message, sig.signature):
            raise InvalidSignature(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        checked.add(sig.line)
        verified.setdefault((sig.name, sig.key_id), Signature(sig.name, sig.key_id, sig.line))
    if not verified:
        raise UnverifiedNote("note has no signature by a trusted key")
    return Note(text, tuple(verified.values()), tuple(unverified.values()))


@dataclass(frozen=True)
class Checkpoint:
    """tlog-checkpoint note text: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint's note text, newline-terminated."""
    if not cp.origin or "\n" in cp.origin or cp.size < 0:
        raise MalformedCheckpoint("checkpoint origin must be one non-empty line and size >= 0")
    if any(not ext or "\n" in ext for ext in cp.extensions):
        raise MalformedCheckpoint("checkpoint extension lines must be non-empty single lines")
    lines = [cp.origin, str(cp.size), base64.b64encode(cp.root).decode(), *cp.extensions]
    return "\n".join(lines) + "\n"


def parse_checkpoint(text: str, hash_size: int | None = 32) -> Checkpoint:
    """Parse a checkpoint note text; ``hash_size=None`` accepts a root hash of any length."""
    if not text.endswith("\n"):
        raise MalformedCheckpoint("checkpoint must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint("checkpoint needs an origin, a size and a root hash")
    origin, size, root64, *extensions = lines
    if not origin:
        raise MalformedCheckpoint("checkpoint origin is empty")
    if not _DECIMAL.fullmatch(size) or int(size) >= 1 << 64:
        raise MalformedCheckpoint("checkpoint size is not a decimal 64-bit number")
    try:
        root = _b64decode(root64)
    except NoteError as exc:
        raise MalformedCheckpoint(f"checkpoint root hash: {exc}") from None
    if hash_size is not None and len(root) != hash_size:
        raise MalformedCheckpoint(f"checkpoint root hash is {len(root)} bytes, want {hash_size}")
    if any(not ext for ext in extensions):
        raise MalformedCheckpoint("checkpoint has an empty extension line")
    return Checkpoint(origin, int(size), root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    """The signed note of a checkpoint."""
    return sign_note(format_checkpoint(cp), signer)


def open_checkpoint(
    msg: bytes | str, verifiers: Iterable[Verifier | str], origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint and parse it; with ``origin``, refuse another log's checkpoint."""
    cp = parse_checkpoint(open_note(msg, verifiers).text)
    if origin is not None and cp.origin != origin:
        raise MalformedCheckpoint(f"checkpoint is for origin {cp.origin!r}, want {origin!r}")
    return cp
