"""The ``pkcs11`` backend against a real SoftHSM2 token: keys stay in it and die in it."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.custody import (
    ContextMismatch,
    CustodyContext,
    CustodyUnavailable,
    KeyDestroyed,
    make_custody,
)
from gateway.custody.pkcs11 import Pkcs11Custody, _Token
from tests.custody.conftest import Backend, pkcs11_settings
from tests.custody.hsm import SoftHsm
from tests.custody.test_contract import rewrite_context, sealed

SECRET = b"AGE-SECRET-KEY-PQ-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"


@pytest.fixture
def hsm_backend(make_backend: Any) -> Backend:
    return make_backend("pkcs11")  # type: ignore[no-any-return]


def custody_of(backend: Backend) -> Pkcs11Custody:
    assert isinstance(backend.custody, Pkcs11Custody)
    return backend.custody


def token_keys(custody: Pkcs11Custody, ctx: CustodyContext) -> list[Any]:
    """The key objects labelled for ctx's upload, through the backend's own session."""
    return custody._run("inspect", lambda s: custody._keys(s, ctx))


def test_the_key_is_generated_in_the_token_and_can_never_leave_it(hsm_backend: Backend) -> None:
    from pkcs11 import Attribute
    from pkcs11.exceptions import AttributeSensitive

    custody = custody_of(hsm_backend)
    ctx, ref, _ = sealed(custody, SECRET)
    (key,) = token_keys(custody, ctx)

    assert key[Attribute.LABEL] == custody.label_prefix + ctx.upload_id
    assert bytes(key[Attribute.ID]) == ctx.digest() and ref == "pkcs11:" + ctx.digest().hex()
    for attribute, value in {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.NEVER_EXTRACTABLE: True,
        Attribute.ALWAYS_SENSITIVE: True,
        Attribute.LOCAL: True,
        Attribute.COPYABLE: False,
        Attribute.MODIFIABLE: False,
        Attribute.DESTROYABLE: True,
        Attribute.WRAP: False,
        Attribute.DERIVE: False,
        Attribute.VALUE_LEN: 32,
    }.items():
        assert key[attribute] == value, attribute
    with pytest.raises(AttributeSensitive):
        key[Attribute.VALUE]  # noqa: B018


def test_the_token_refuses_to_copy_the_key(hsm_backend: Backend) -> None:
    """A C_CopyObject twin would open every old copy of the value after the shred."""
    from pkcs11.exceptions import PKCS11Error

    custody = custody_of(hsm_backend)
    ctx, ref, blob = sealed(custody, SECRET)
    (key,) = token_keys(custody, ctx)
    with custody._open_token().lock, pytest.raises(PKCS11Error):
        key.copy({})  # C_CopyObject in the backend's own session
    assert len(token_keys(custody, ctx)) == 1
    assert custody.destroy(ctx, ref) is True
    with pytest.raises(KeyDestroyed):
        custody.unwrap(ctx, ref, blob)


def test_a_key_labelled_for_the_upload_but_made_for_another_artifact_is_not_destroyed(
    hsm_backend: Backend,
) -> None:
    custody = custody_of(hsm_backend)
    hsm = hsm_backend.hsm
    assert hsm is not None
    ctx, ref, blob = sealed(custody, SECRET)
    other = dataclasses.replace(ctx, artifact_id="art_OTHER", org="org-OTHER")

    with pytest.raises(ContextMismatch, match="another artifact"):
        custody.destroy(other, ref)
    with pytest.raises(ContextMismatch):
        custody.unwrap(other, "pkcs11:" + other.digest().hex(), rewrite_context(blob, other))  # type: ignore[arg-type]
    assert hsm.labels(custody.label_prefix + ctx.upload_id) == 1
    assert custody.unwrap(ctx, ref, blob) == SECRET


def test_after_destroy_the_token_no_longer_holds_the_key(hsm_backend: Backend) -> None:
    custody = custody_of(hsm_backend)
    hsm = hsm_backend.hsm
    assert hsm is not None
    ctx, ref, blob = sealed(custody, SECRET)
    label = custody.label_prefix + ctx.upload_id
    assert hsm.labels(label) == 1  # seen by another process, from the token's own storage

    assert custody.destroy(ctx, ref) is True

    assert hsm.labels(label) == 0
    assert token_keys(custody, ctx) == []
    with pytest.raises(KeyDestroyed):
        custody.unwrap(ctx, ref, blob)


def test_a_wrong_pin_is_refused_without_being_named(softhsm: SoftHsm, tmp_path: Path) -> None:
    wrong = "wrong-" + softhsm.pin_token_pin
    settings = pkcs11_settings(softhsm, pkcs11_token_label=softhsm.pin_token)
    custody = make_custody(settings, keys_dir=tmp_path, environ={"GATEWAY_TEST_PKCS11_PIN": wrong})
    with pytest.raises(CustodyUnavailable, match="PinIncorrect") as refused:
        custody.check()
    assert wrong not in str(refused.value) and softhsm.pin_token_pin not in str(refused.value)
    custody.close()


def test_without_a_pin_nothing_opens(softhsm: SoftHsm, tmp_path: Path) -> None:
    custody = make_custody(pkcs11_settings(softhsm), keys_dir=tmp_path, environ={})
    with pytest.raises(CustodyUnavailable, match=r"no PKCS#11 PIN in \$GATEWAY_TEST_PKCS11_PIN"):
        custody.check()
    custody.close()


def test_the_pin_can_come_from_a_private_file(softhsm: SoftHsm, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    pin_file.chmod(0o600)
    custody = make_custody(
        pkcs11_settings(softhsm, pkcs11_pin_file=str(pin_file)), keys_dir=tmp_path, environ={}
    )
    ctx, ref, blob = sealed(custody, SECRET)
    assert custody.unwrap(ctx, ref, blob) == SECRET
    custody.close()

    pin_file.chmod(0o644)
    other = make_custody(
        pkcs11_settings(softhsm, pkcs11_pin_file=str(pin_file)), keys_dir=tmp_path, environ={}
    )
    with pytest.raises(CustodyUnavailable, match="chmod 600"):
        other.check()
    other.close()


def test_every_backend_object_of_a_process_shares_one_login(
    softhsm: SoftHsm, tmp_path: Path, hsm_backend: Backend
) -> None:
    first = custody_of(hsm_backend)
    ctx, ref, blob = sealed(first, SECRET)
    environ = {"GATEWAY_TEST_PKCS11_PIN": softhsm.pin}
    second = make_custody(pkcs11_settings(softhsm), keys_dir=tmp_path, environ=environ)
    assert isinstance(second, Pkcs11Custody)
    second.label_prefix = first.label_prefix

    assert second.unwrap(ctx, ref, blob) == SECRET
    assert second._open_token() is first._open_token()

    impostor = make_custody(
        pkcs11_settings(softhsm), keys_dir=tmp_path, environ={"GATEWAY_TEST_PKCS11_PIN": "guess"}
    )
    with pytest.raises(CustodyUnavailable, match="under another PIN"):
        impostor.unwrap(ctx, ref, blob)
    impostor.close()
    second.close()
    assert first.unwrap(ctx, ref, blob) == SECRET  # the shared session outlives its other users


# python-pkcs11 ends the failed search on the dead session in a __del__, which complains.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_session_the_token_closed_is_reopened(hsm_backend: Backend) -> None:
    custody = custody_of(hsm_backend)
    ctx, ref, blob = sealed(custody, SECRET)
    token = custody._open_token()
    with token.lock:
        token._session.close()  # as when the token is reset under a running gateway

    assert custody.unwrap(ctx, ref, blob) == SECRET


def _unwrap_in_child(custody: Pkcs11Custody, args: tuple[Any, ...], out: Any) -> None:
    try:
        out.put(custody.unwrap(*args))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(repr(exc))


def test_a_forked_worker_logs_in_afresh(hsm_backend: Backend) -> None:
    # SoftHSM2 happens to accept the parent's session in the child too, so this shows a
    # forked worker can unwrap, not that the re-initialisation a networked HSM needs ran.
    custody = custody_of(hsm_backend)
    ctx, ref, blob = sealed(custody, SECRET)  # the parent is logged in before the fork
    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    child = fork.Process(target=_unwrap_in_child, args=(custody, (ctx, ref, blob), out))
    child.start()
    child.join(60)

    assert child.exitcode == 0
    assert out.get(timeout=5) == SECRET
    assert custody.unwrap(ctx, ref, blob) == SECRET  # and the parent's session still works


def test_the_pin_never_reaches_the_log(
    hsm_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    custody = custody_of(hsm_backend)
    ctx, ref, blob = sealed(custody, SECRET)
    custody.unwrap(ctx, ref, blob)
    custody.destroy(ctx, ref)
    assert hsm_backend.hsm is not None
    for record in caplog.records:
        assert hsm_backend.hsm.pin not in record.getMessage()
    assert _Token._open  # the registry holds the open token, not the PIN
    assert all(not hasattr(t, "pin") for t in _Token._open.values())


def test_a_pin_from_the_environment_is_removed_from_it_after_login(
    softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable would otherwise be inherited by every child process the gateway starts."""
    monkeypatch.setenv("GATEWAY_TEST_PKCS11_PIN", softhsm.pin)
    custody = make_custody(pkcs11_settings(softhsm), keys_dir=tmp_path)  # os.environ
    ctx, ref, blob = sealed(custody, SECRET)

    assert "GATEWAY_TEST_PKCS11_PIN" not in os.environ
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('GATEWAY_TEST_PKCS11_PIN'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout == "None\n"
    token = custody._open_token()
    with token.lock:
        token.drop()  # a lost session: logging in again needs the PIN once more
    assert custody.unwrap(ctx, ref, blob) == SECRET
    custody.close()


def test_the_session_keeps_no_fast_hash_of_the_pin(hsm_backend: Backend) -> None:
    custody = custody_of(hsm_backend)
    sealed(custody, SECRET)
    assert hsm_backend.hsm is not None
    pin = hsm_backend.hsm.pin.encode()
    fast = {
        hashlib.sha256(pin).digest(),
        hashlib.sha256(b"gateway-custody-pin\0" + pin).digest(),
    }
    kept = [v for t in _Token._open.values() for v in vars(t).values()]
    flat = [x for v in kept for x in (v if isinstance(v, tuple) else (v,))]
    assert not fast & {x for x in flat if isinstance(x, bytes)}
    assert all(pin.decode() != x for x in flat)
