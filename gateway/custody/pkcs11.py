"""The ``pkcs11`` custody backend: one AES-256 key per artifact inside a PKCS#11 token (an HSM).

:meth:`Pkcs11Custody.create` generates the key in the token (``CKA_TOKEN``, ``PRIVATE``,
``SENSITIVE``, never ``EXTRACTABLE``, not ``COPYABLE`` or ``MODIFIABLE``, ``DESTROYABLE``,
usable only to encrypt and decrypt), labelled ``<prefix><upload id>``, with the 16 bytes of
:meth:`CustodyContext.digest` as its ``CKA_ID``. Every operation finds the key by its label,
from the context, and checks its ``CKA_ID`` against the whole context; the reference
(``pkcs11:`` and that id in hex) is only compared with it. Values are ``CKM_AES_GCM``
inside the token (12-byte nonce, 128-bit tag, the framing header as associated data); the
key never leaves it and the token refuses to copy it. :meth:`Pkcs11Custody.destroy`
destroys every key object labelled for the upload that was made for this context, after
which no copy of the value, however old, opens anywhere.

GCM needs the caller's nonce here (SoftHSM2 and most HSMs take it; an HSM in a mode
that generates its own IV would refuse it, and such a module is not supported yet).

Sessions: one logged-in session per token per process, shared by every backend object
and used under one lock, so the threaded gateway is safe; after a fork the child
initialises the library again and logs in afresh. A lost session (token removed,
reset) is reopened once before :class:`CustodyUnavailable`.

The PIN: from ``pkcs11_pin_file`` (preferred) it is read at each login and never kept.
From ``$pkcs11_pin_env`` it is read once, then removed from the process's environment, so
no child process inherits it, and kept in this object's memory for the logins a fork or a
lost session need (``/proc/<pid>/environ`` still shows the environment the process was
started with: use the file). A second backend object of the process may share the login
only with the same PIN, checked against a salted scrypt derivation kept by the session,
never against a fast hash. The PIN is never logged or put in a message.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import stat
import threading
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gateway.custody.base import (
    FORMAT_PKCS11,
    ContextMismatch,
    CustodyContext,
    CustodyUnavailable,
    KeyDestroyed,
    KeyRef,
    UnwrapFailed,
    check_reference,
    check_secret,
    frame_header,
    log_operation,
    split_blob,
)
from gateway.custody.settings import CustodySettings

PREFIX = "pkcs11:"
NONCE_SIZE = 12
TAG_BITS = 128
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
        self._env_pin = ""  # the PIN from the environment, once read (removed from there)
        self._token: _Token | None = None
        self._verified = False  # this object's PIN checked against the process's login
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Pkcs11Custody(module={self.module!r}, token={self.token_label!r})"

    # --- the interface ------------------------------------------------------------------

    def create(self, ctx: CustodyContext) -> KeyRef:
        from pkcs11 import Attribute, KeyType

        template = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.COPYABLE: False,  # C_CopyObject would make a twin that outlives destroy
            Attribute.MODIFIABLE: False,
            Attribute.DESTROYABLE: True,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
            Attribute.SIGN: False,
            Attribute.VERIFY: False,
            Attribute.DERIVE: False,
        }

        def generate(session: Any) -> None:
            if self._keys(session, ctx):
                raise ValueError(f"upload {ctx.upload_id} already has a custody key")
            session.generate_key(
                KeyType.AES,
                256,
                id=ctx.digest(),
                label=self._label(ctx),
                store=True,
                template=template,
            )

        self._run("generate a key", generate)
        ref = reference(ctx)
        log_operation("create", self.name, ctx, ref)
        return ref

    def wrap(self, ctx: CustodyContext, ref: KeyRef, secret: bytes) -> bytes:
        check_secret(secret)
        check_reference(ctx, ref, reference(ctx))
        header = frame_header(FORMAT_PKCS11, ctx)
        nonce = secrets.token_bytes(NONCE_SIZE)

        def encrypt(session: Any) -> bytes:
            key = self._key(session, ctx)
            return bytes(key.encrypt(bytes(secret), **_gcm(nonce, header)))

        return header + nonce + self._run("encrypt", encrypt)

    def unwrap(self, ctx: CustodyContext, ref: KeyRef, blob: bytes) -> bytes:
        from pkcs11.exceptions import PKCS11Error

        aad, body = split_blob(blob, FORMAT_PKCS11, ctx)  # first: it names a moved field
        check_reference(ctx, ref, reference(ctx))
        if len(body) < NONCE_SIZE + TAG_BITS // 8 + 1:
            raise UnwrapFailed("the wrapped value is truncated")

        def decrypt(session: Any) -> bytes:
            key = self._key(session, ctx)
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

        def remove(session: Any) -> tuple[int, int]:
            keys = self._keys(session, ctx)
            own = [k for k in keys if bytes(k[Attribute.ID]) == ctx.digest()]
            for key in own:
                key.destroy()
            return len(own), len(keys) - len(own)

        destroyed, foreign = self._run("destroy a key", remove)
        if destroyed:
            log_operation("destroy", self.name, ctx, reference(ctx))
        if foreign:
            raise ContextMismatch(
                f"token {self.token_label} holds {foreign} key(s) labelled {self._label(ctx)!r} "
                f"made for another artifact or organisation; not destroyed"
            )
        if destroyed:
            check_reference(ctx, ref, reference(ctx), destroyed=True)
        return destroyed > 0

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

    def _keys(self, session: Any, ctx: CustodyContext) -> list[Any]:
        """Every secret key in the token labelled for ctx's upload."""
        from pkcs11 import Attribute, ObjectClass

        template = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: self._label(ctx)}
        return list(session.get_objects(template))

    def _key(self, session: Any, ctx: CustodyContext) -> Any:
        """ctx's one key; :class:`KeyDestroyed` if none, :class:`UnwrapFailed` otherwise amiss."""
        from pkcs11 import Attribute

        keys = self._keys(session, ctx)
        if not keys:
            raise KeyDestroyed(f"no key labelled {self._label(ctx)!r} in token {self.token_label}")
        if len(keys) > 1:
            raise UnwrapFailed(
                f"token {self.token_label} holds {len(keys)} keys labelled {self._label(ctx)!r}"
            )
        if bytes(keys[0][Attribute.ID]) != ctx.digest():
            raise ContextMismatch(
                f"the key labelled {self._label(ctx)!r} was made for another artifact or organisation"
            )
        return keys[0]

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
        if not self._pin_file and not self._env_pin:
            self._env_pin = self._environ.get(self._pin_env, "")
            if isinstance(self._environ, MutableMapping):
                self._environ.pop(self._pin_env, None)  # os.environ: unsetenv, for children
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
            pin = self._env_pin
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


def reference(ctx: CustodyContext) -> KeyRef:
    """The reference of ctx's key: its ``CKA_ID`` in hex."""
    return KeyRef(PREFIX + ctx.digest().hex())


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
        self._pin_check = (b"", b"")  # (salt, scrypt of the PIN that logged in)

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
            salt, derived = self._pin_check
            if verify and not hmac.compare_digest(derived, _derive(read_pin(), salt)):
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
        salt = secrets.token_bytes(16)
        self._pid, self._pin_check = os.getpid(), (salt, _derive(pin, salt))
        return session


def _derive(pin: str, salt: bytes) -> bytes:
    """A slow, salted derivation of the PIN (scrypt, 16 MiB): all a session keeps of it."""
    return Scrypt(salt=salt, length=32, n=1 << 14, r=8, p=1).derive(pin.encode())
