"""The custody contract, run against every backend (local, KMS in-process and over HTTP, SoftHSM2)."""

from __future__ import annotations

import base64
import dataclasses
import logging
import secrets
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from gateway import age
from gateway.custody import (
    MAX_SECRET_BYTES,
    ContextMismatch,
    Custody,
    CustodyContext,
    KeyDestroyed,
    ReferenceMismatch,
    UnwrapFailed,
)
from tests.custody.conftest import Backend, new_ctx

SECRETS = {
    "x25519": lambda: str(age.X25519Identity.generate()).encode(),
    "mlkem768x25519": lambda: str(age.HybridIdentity.generate()).encode(),
}
FIELDS = ("upload_id", "artifact_id", "org")


def sealed(custody: Custody, secret: bytes | None = None) -> tuple[CustodyContext, str, bytes]:
    ctx = new_ctx()
    ref = custody.create(ctx)
    return ctx, ref, custody.wrap(ctx, ref, secret or SECRETS["x25519"]())


def header_length(blob: bytes) -> int:
    return 3 + int(struct.unpack(">H", blob[1:3])[0])


def rewrite_context(blob: bytes, ctx: CustodyContext) -> bytes:
    """The same ciphertext behind a clear header that claims ``ctx`` (a database edit)."""
    context = ctx.canonical()
    return blob[:1] + struct.pack(">H", len(context)) + context + blob[header_length(blob) :]


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_a_wrapped_identity_unwraps_to_the_same_bytes(backend: Backend, kind: str) -> None:
    secret = SECRETS[kind]()
    ctx, ref, blob = sealed(backend.custody, secret)

    assert backend.custody.unwrap(ctx, ref, blob) == secret
    assert age.parse_identity(backend.custody.unwrap(ctx, ref, blob).decode())
    assert secret not in blob and base64.b64encode(secret) not in blob
    assert len(ref) <= 255 and ref.startswith(backend.custody.name)


def test_secrets_of_every_allowed_size_round_trip_and_others_are_refused(backend: Backend) -> None:
    ctx = new_ctx()
    ref = backend.custody.create(ctx)
    for secret in (b"x", bytes(range(256)) * (MAX_SECRET_BYTES // 256)):
        assert backend.custody.unwrap(ctx, ref, backend.custody.wrap(ctx, ref, secret)) == secret
    for bad in (b"", b"x" * (MAX_SECRET_BYTES + 1)):
        with pytest.raises(ValueError, match="1 to 1024 bytes"):
            backend.custody.wrap(ctx, ref, bad)


@pytest.mark.parametrize("field", FIELDS)
def test_a_value_unwraps_only_for_the_context_it_was_wrapped_for(
    backend: Backend, field: str
) -> None:
    ctx, ref, blob = sealed(backend.custody)
    other = dataclasses.replace(ctx, **{field: "moved-" + getattr(ctx, field)[:40]})

    with pytest.raises(ContextMismatch, match=field.removesuffix("_id")):
        backend.custody.unwrap(other, ref, blob)
    # Rewriting the clear copy of the context does not help: the key is other's (none, or
    # not this one), and the binding is cryptographic besides.
    with pytest.raises((UnwrapFailed, KeyDestroyed)):
        backend.custody.unwrap(other, ref, rewrite_context(blob, other))
    assert backend.custody.unwrap(ctx, ref, blob) == backend.custody.unwrap(ctx, ref, blob)


def test_a_value_moved_to_another_artifact_does_not_unwrap_there(backend: Backend) -> None:
    ctx_a, ref_a, blob_a = sealed(backend.custody)
    ctx_b, ref_b, blob_b = sealed(backend.custody)

    with pytest.raises(ContextMismatch):
        backend.custody.unwrap(ctx_b, ref_b, blob_a)
    with pytest.raises(UnwrapFailed):
        backend.custody.unwrap(ctx_b, ref_b, rewrite_context(blob_a, ctx_b))
    if ref_a != ref_b:  # per-artifact keys: A's value under B's key, with A's own context
        with pytest.raises(UnwrapFailed):
            backend.custody.unwrap(ctx_a, ref_b, blob_a)
    assert backend.custody.unwrap(ctx_b, ref_b, blob_b)


def test_a_tampered_or_truncated_value_is_refused(backend: Backend) -> None:
    ctx, ref, blob = sealed(backend.custody)
    start = header_length(blob)
    flips = [0, 3, start - 1, start, (start + len(blob)) // 2, len(blob) - 1]
    for i in flips:
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(UnwrapFailed):
            backend.custody.unwrap(ctx, ref, bytes(bad))
    for bad in (b"", blob[:1], blob[:start], blob[:-1], blob + b"\0", blob + b"\0" * 9000):
        with pytest.raises(UnwrapFailed):
            backend.custody.unwrap(ctx, ref, bad)
    assert backend.custody.unwrap(ctx, ref, blob)


def test_a_value_or_reference_of_another_backend_is_refused(backend: Backend) -> None:
    ctx, ref, blob = sealed(backend.custody)
    foreign = {"local": 0x03, "aws-kms": 0x04, "pkcs11": 0x02}[backend.custody.name]
    with pytest.raises(UnwrapFailed, match="wrapped by the"):
        backend.custody.unwrap(ctx, ref, bytes([foreign]) + blob[1:])
    for bad_ref in ("", "other:abc", ref.split(":", 1)[0] + ":", ref + "\n", ref + "/", "x" * 300):
        with pytest.raises(UnwrapFailed):
            backend.custody.unwrap(ctx, bad_ref, blob)  # type: ignore[arg-type]


def test_after_destroy_nothing_unwraps(destroying: Backend) -> None:
    assert destroying.custody.destroys_keys
    ctx, ref, blob = sealed(destroying.custody)
    kept = bytes(blob)  # the copy an old database backup holds

    assert destroying.custody.destroy(ctx, ref) is True

    with pytest.raises(KeyDestroyed):
        destroying.custody.unwrap(ctx, ref, kept)


def test_destroy_is_idempotent(destroying: Backend) -> None:
    ctx, ref, blob = sealed(destroying.custody)
    assert destroying.custody.destroy(ctx, ref) is True
    assert destroying.custody.destroy(ctx, ref) is False
    assert destroying.custody.destroy(ctx, ref) is False
    with pytest.raises(KeyDestroyed):
        destroying.custody.unwrap(ctx, ref, blob)


def test_destroying_one_artifact_leaves_the_others(destroying: Backend) -> None:
    a, b = sealed(destroying.custody), sealed(destroying.custody)
    assert a[1] != b[1]

    destroying.custody.destroy(a[0], a[1])

    with pytest.raises(KeyDestroyed):
        destroying.custody.unwrap(*a)
    assert age.parse_identity(destroying.custody.unwrap(*b).decode())


def test_destroy_follows_the_context_never_a_reference_to_another_artifact(
    destroying: Backend,
) -> None:
    ctx_a, ref_a, blob_a = sealed(destroying.custody)
    ctx_b, ref_b, blob_b = sealed(destroying.custody)

    with pytest.raises(ReferenceMismatch, match="destroyed all the same"):
        destroying.custody.destroy(ctx_b, ref_a)  # a rewritten reference in B's row

    assert destroying.custody.unwrap(ctx_a, ref_a, blob_a)  # A's key is untouched
    with pytest.raises(KeyDestroyed):
        destroying.custody.unwrap(ctx_b, ref_b, blob_b)  # B's own key is gone
    assert destroying.custody.destroy(ctx_b, ref_b) is False


def rewritten_refs(other: str) -> list[str]:
    """What a database insider may write over a reference before the shred, for any backend.

    ``other`` is the real reference of another artifact's key.
    """
    refs = [
        other,
        "local:" + secrets.token_hex(16),
        "local:master-key",
        "pkcs11:" + secrets.token_hex(16),
        "aws-kms:key:arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        other[:-1] + ("0" if other[-1] != "0" else "1"),
        "",
        "x" * 300,
    ]
    return list(dict.fromkeys(refs))


def test_a_rewritten_reference_never_turns_destroy_into_nothing_to_destroy(
    destroying: Backend,
) -> None:
    """The key the context owns is destroyed whatever the row says; the rewrite is an alarm."""
    custody = destroying.custody
    other = sealed(custody)[1]
    for i in range(len(rewritten_refs(other)) + 1):
        ctx, ref, blob = sealed(custody)
        own_shared = ref.replace("aws-kms:key:", "aws-kms:shared:")  # this key, "shared" mode
        bad = [*rewritten_refs(other), own_shared][i]
        if bad == ref:
            continue  # not a KMS reference: nothing to respell
        kept = bytes(blob)  # a backup from before the shred

        with pytest.raises(ReferenceMismatch):
            custody.unwrap(ctx, bad, blob)  # type: ignore[arg-type]
        with pytest.raises(ReferenceMismatch, match="destroyed all the same"):
            custody.destroy(ctx, bad)  # type: ignore[arg-type]

        with pytest.raises(KeyDestroyed):
            custody.unwrap(ctx, ref, kept)
        assert custody.destroy(ctx, ref) is False, bad


def test_destroy_refuses_a_context_that_shares_only_the_upload(destroying: Backend) -> None:
    ctx, ref, blob = sealed(destroying.custody)
    for field in ("artifact_id", "org"):
        other = dataclasses.replace(ctx, **{field: "other-" + getattr(ctx, field)[:40]})
        with pytest.raises(ContextMismatch) as refused:
            destroying.custody.destroy(other, ref)
        assert not isinstance(refused.value, ReferenceMismatch)
    assert destroying.custody.unwrap(ctx, ref, blob)  # still alive: it was not other's to destroy


def test_destroy_of_a_context_with_no_key_is_nothing_to_destroy(destroying: Backend) -> None:
    ctx = new_ctx()
    assert destroying.custody.destroy(ctx, "local:master-key") is False  # type: ignore[arg-type]


def test_one_upload_gets_one_key(destroying: Backend) -> None:
    ctx, ref, blob = sealed(destroying.custody)
    with pytest.raises(ValueError, match="already"):
        destroying.custody.create(ctx)
    assert destroying.custody.unwrap(ctx, ref, blob)


def test_many_threads_create_wrap_unwrap_and_destroy_at_once(backend: Backend) -> None:
    custody = backend.custody

    def lifecycle(i: int) -> bool:
        secret = SECRETS["x25519" if i % 2 else "mlkem768x25519"]()
        ctx, ref, blob = sealed(custody, secret)
        ok = all(custody.unwrap(ctx, ref, blob) == secret for _ in range(3))
        custody.destroy(ctx, ref)
        return ok

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(lifecycle, range(24)))


def test_nothing_secret_reaches_a_log_record_or_a_repr(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    secret = SECRETS["x25519"]()
    caplog.set_level(logging.DEBUG)
    ctx, ref, blob = sealed(backend.custody, secret)
    backend.custody.unwrap(ctx, ref, blob)
    errors = []
    for bad_ctx in (dataclasses.replace(ctx, org="other-org"),):
        try:
            backend.custody.unwrap(bad_ctx, ref, rewrite_context(blob, bad_ctx))
        except UnwrapFailed as exc:
            errors.append(str(exc))
    backend.custody.destroy(ctx, ref)
    backend.custody.check()

    forbidden = [secret, base64.b64encode(secret), *(h.encode() for h in backend.hidden)]
    texts = [r.getMessage() for r in caplog.records] + errors
    texts += [repr(backend.custody), repr(ctx), repr(ref)]
    for text in texts:
        for item in forbidden:
            assert item.decode() not in text, f"a secret in: {text[:200]}"
    ours = [r.getMessage() for r in caplog.records if r.name == "gateway.custody"]
    assert any(f"unwrap: backend={backend.custody.name}" in m and ctx.upload_id in m for m in ours)
    assert errors, "the rewritten value must have been refused"


def test_check_passes_on_a_usable_backend(backend: Backend) -> None:
    backend.custody.check()
