"""The ``pkcs11`` custody backend: one AES-256 key per artifact inside a PKCS#11 token (an HSM).

:meth:`Pkcs11Custody.create` generates the key in the token (``CKA_TOKEN``, ``PRIVATE``,
``SENSITIVE``, never ``EXTRACTABLE``, usable only to encrypt and decrypt), labelled
``<prefix><upload id>`` with a random 16-byte ``CKA_ID``, which the reference names.
Values are ``CKM_AES_GCM`` inside the token (12-byte nonce, 128-bit tag, the framing
header as associated data); the key never leaves it. :meth:`Pkcs11Custody.destroy`
destroys the key object in the token, after which no copy of the value, however old,
opens anywhere.

GCM needs the caller's nonce here (SoftHSM2 and most HSMs take it; an HSM in a mode
that generates its own IV would refuse it, and such a module is not supported yet).

Sessions: one logged-in session per token per process, shared by every backend object
and used under one lock, so the threaded gateway is safe; after a fork the child
initialises the library again and logs in afresh. A lost session (token removed,
reset) is reopened once before :class:`CustodyUnavailable`. The PIN is read from
``pkcs11_pin_file`` or ``$pkcs11_pin_env`` only when logging in, never kept, logged or
put in a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from gateway.custody.base import (
    FORMAT_PKCS11,
    ContextMismatch,
    CustodyContext,
    CustodyUnavailable,
    KeyDestroyed,
    KeyRef,
    UnwrapFailed,
    check_ref,
    check_secret,
    frame_header,
    log_operation,
    split_blob,
)
from gateway.custody.settings import CustodySettings

PREFIX = "pkcs11:"
NONCE_SIZE = 12
TAG_BITS = 128
_KEY_ID = re.compile(r"^[0-9a-f]{32}$")
T = TypeVar("T")


class Pkcs11Custody:
    """Custody in a PKCS#11 token (SoftHSM2 for tests and development, an HSM in production)."""

    name = "pkcs11"
    destroys_keys = True

    def __init__(
        self, settings: CustodySettings, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.module = settings.pkcs11_module
        self.token_label = settings.pkcs11_token_label
        self.label_prefix = settings.pkcs11_key_label_prefix
        self._pin_file = settings.pkcs11_pin_file
        self._pin_env = settings.pkcs11_pin_env
        self._environ = os.environ if environ is None else environ
        self._token: _Token | None = None
        self._verified = False  # this object's PIN checked against the process's login
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pkcs11Custody(module={self.module!r}, token={self.token_label!r})"

    # --- the interface ------------------------------------------------------------------

    def create(self, ctx: CustodyContext) -> KeyRef:
        from pkcs11 import Attribute, KeyType

        key_id = secrets.token_bytes(16)
        template = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.SIGN: False,
            Attribute.VERIFY: False,
            Attribute.DERIVE: False,
            Attribute.MODIFIABLE: False,
        }

        def generate(session: Any) -> None:
            session.generate_key(
                KeyType.AES, 256, id=key_id, label=self._label(ctx), store=True, template=template
            )

        self._run("generate a key", generate)
        ref = KeyRef(PREFIX + key_id.hex())
        log_operation("create", self.name, ctx, ref)
        return ref

    def wrap(self, ctx: CustodyContext, ref: KeyRef, secret: bytes) -> bytes:
        check_secret(secret)
        key_id = _key_id(ref)
        header = frame_header(FORMAT_PKCS11, ctx)
        nonce = secrets.token_bytes(NONCE_SIZE)

        def encrypt(session: Any) -> bytes:
            key = self._find(session, key_id)
            if key is None:
                raise KeyDestroyed(f"key {ref} is not in token {self.token_label}")
            return bytes(key.encrypt(bytes(secret), **_gcm(nonce, header)))

        return header + nonce + self._run("encrypt", encrypt)

    def unwrap(self, ctx: CustodyContext, ref: KeyRef, blob: bytes) -> bytes:
        from pkcs11.exceptions import PKCS11Error

        key_id = _key_id(ref)
        aad, body = split_blob(blob, FORMAT_PKCS11, ctx)
        if len(body) < NONCE_SIZE + TAG_BITS // 8 + 1:
            raise UnwrapFailed("the wrapped value is truncated")

        def decrypt(session: Any) -> bytes:
            key = self._find(session, key_id)
            if key is None:
                raise KeyDestroyed(f"key {ref} is not in token {self.token_label}")
            try:
                return bytes(key.decrypt(body[NONCE_SIZE:], **_gcm(body[:NONCE_SIZE], aad)))
            except PKCS11Error as exc:
                if type(exc).__name__ in _SESSION_LOST:
                    raise
                # SoftHSM2 answers a bad tag with CKR_GENERAL_ERROR, others with
                # CKR_ENCRYPTED_DATA_INVALID: either way the value does not open.
                raise UnwrapFailed(
                    f"the value does not open under key {ref} ({type(exc).__name__})"
                ) from None

        secret = self._run("decrypt", decrypt)
        log_operation("unwrap", self.name, ctx, ref)
        return secret

    def destroy(self, ctx: CustodyContext, ref: KeyRef) -> bool:
        from pkcs11 import Attribute

        key_id = _key_id(ref)

        def remove(session: Any) -> bool:
            key = self._find(session, key_id)
            if key is None:
                return False
            if key[Attribute.LABEL] != self._label(ctx):
                raise ContextMismatch(
                    f"key {ref} is labelled {key[Attribute.LABEL]!r}, "
                    f"not {self._label(ctx)!r}; not destroyed"
                )
            key.destroy()
            return True

        destroyed = self._run("destroy a key", remove)
        if destroyed:
            log_operation("destroy", self.name, ctx, ref)
        return destroyed

    def check(self) -> None:
        from pkcs11 import Mechanism

        def usable(session: Any) -> set[Any]:
            return set(session.token.slot.get_mechanisms())

        missing = {Mechanism.AES_KEY_GEN, Mechanism.AES_GCM} - self._run("check", usable)
        if missing:
            names = ", ".join(sorted(m.name for m in missing))
            raise CustodyUnavailable(f"token {self.token_label} does not offer {names}")

    def close(self) -> None:
        with self._lock:
            token, self._token = self._token, None
        if token is not None:
            token.release()

    # --- helpers ------------------------------------------------------------------------

    def _label(self, ctx: CustodyContext) -> str:
        return self.label_prefix + ctx.upload_id

    def _find(self, session: Any, key_id: bytes) -> Any:
        from pkcs11 import Attribute, ObjectClass

        found = list(
            session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.ID: key_id})
        )
        if len(found) > 1:
            raise UnwrapFailed(f"token {self.token_label} holds {len(found)} keys with one id")
        return found[0] if found else None

    def _run(self, operation: str, fn: Callable[[Any], T]) -> T:
        """``fn(session)`` under the token's lock, reopening a lost session once."""
        from pkcs11.exceptions import PKCS11Error

        token = self._open_token()
        for attempt in (1, 2):
            with token.lock:
                try:
                    session = token.session(self._read_pin, verify=not self._verified)
                    self._verified = True
                    return fn(session)
                except PKCS11Error as exc:
                    lost = type(exc).__name__ in _SESSION_LOST
                    if lost:
                        token.drop()
                    if not lost or attempt == 2:
                        raise CustodyUnavailable(
                            f"PKCS#11 {operation} on token {self.token_label} failed: "
                            f"{type(exc).__name__}"
                        ) from None
        raise AssertionError("unreachable")

    def _open_token(self) -> _Token:
        with self._lock:
            if self._token is None:
                self._token = _Token.acquire(self.module, self.token_label)
            return self._token

    def _read_pin(self) -> str:
        if self._pin_file:
            path = Path(self._pin_file)
            try:
                if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise CustodyUnavailable(
                        f"PIN file {path} is readable by others; chmod 600 {path}"
                    )
                pin = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise CustodyUnavailable(f"cannot read PIN file {path}: {exc.strerror}") from None
        else:
            pin = self._environ.get(self._pin_env, "")
        if not pin:
            where = f"file {self._pin_file}" if self._pin_file else f"${self._pin_env}"
            raise CustodyUnavailable(f"no PKCS#11 PIN in {where}")
        return pin


# Errors after which the session, not the request, is at fault: reopen and try once more.
_SESSION_LOST = frozenset(
    {
        "SessionHandleInvalid",
        "SessionClosed",
        "DeviceRemoved",
        "TokenNotPresent",
        "UserNotLoggedIn",
        "DeviceError",
    }
)


def _key_id(ref: KeyRef) -> bytes:
    hexid = check_ref(ref, PREFIX)
    if not _KEY_ID.fullmatch(hexid):
        raise UnwrapFailed(f"key reference {ref!r} is not a PKCS#11 key reference")
    return bytes.fromhex(hexid)


def _gcm(nonce: bytes, aad: bytes) -> dict[str, Any]:
    from pkcs11 import Mechanism
    from pkcs11.mechanisms import GCMParams

    return {"mechanism": Mechanism.AES_GCM, "mechanism_param": GCMParams(nonce, aad, TAG_BITS)}


class _Token:
    """One logged-in session on one token, shared by every backend object of this process."""

    _open: dict[tuple[str, str], _Token] = {}
    _registry_lock = threading.Lock()
    _library_pid: dict[str, int] = {}

    def __init__(self, module: str, label: str) -> None:
        self.module, self.label = module, label
        self.lock = threading.RLock()
        self.users = 0
        self._session: Any = None
        self._pid = 0
        self._pin_digest = b""

    @classmethod
    def acquire(cls, module: str, label: str) -> _Token:
        with cls._registry_lock:
            token = cls._open.setdefault((module, label), cls(module, label))
            token.users += 1
            return token

    def release(self) -> None:
        with self._registry_lock:
            self.users -= 1
            if self.users > 0:
                return
            self._open.pop((self.module, self.label), None)
        with self.lock:
            self.drop(close=True)

    def session(self, read_pin: Callable[[], str], *, verify: bool) -> Any:
        """The open session; logs in first if there is none in this process yet.

        ``verify``: a new user of a session already logged in must know its PIN too.
        """
        if self._session is not None and self._pid == os.getpid():
            if verify and not hmac.compare_digest(self._pin_digest, _digest(read_pin())):
                raise CustodyUnavailable(
                    f"token {self.label} is open in this process under another PIN"
                )
            return self._session
        self._session = None
        self._session = self._login(read_pin())
        return self._session

    def drop(self, *, close: bool = False) -> None:
        session, self._session = self._session, None
        if close and session is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # a session the token already ended
                session.close()

    def _login(self, pin: str) -> Any:
        import pkcs11
        from pkcs11.exceptions import PKCS11Error, UserAlreadyLoggedIn

        try:
            lib = pkcs11.lib(self.module)
            with self._registry_lock:
                pid = os.getpid()
                if self._library_pid.setdefault(self.module, pid) != pid:
                    lib.reinitialize()  # a forked child must initialise the library itself
                    self._library_pid[self.module] = pid
            token = lib.get_token(token_label=self.label)
            try:
                session = token.open(rw=True, user_pin=pin)
            except UserAlreadyLoggedIn:  # another token object of this process logged in
                session = token.open(rw=True)
        except PKCS11Error as exc:
            raise CustodyUnavailable(
                f"cannot open token {self.label} with {self.module}: {type(exc).__name__}"
            ) from None
        self._pid, self._pin_digest = os.getpid(), _digest(pin)
        return session


def _digest(pin: str) -> bytes:
    return hashlib.sha256(b"gateway-custody-pin\0" + pin.encode()).digest()
