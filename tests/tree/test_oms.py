"""OpenSSF Model Signing: a directory signed with model-signing, carried by the archive, checked."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from gateway.tree.errors import OmsError
from gateway.tree.extract import extract
from gateway.tree.oms import (
    SIGNATURE,
    CertificateIdentity,
    PublicKey,
    find_signature,
    sign_directory,
    verify_directory,
)
from gateway.tree.plan import plan_tree
from tests.tree.conftest import archive, commit, write_tree

pytest.importorskip("model_signing")


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _public(key: ec.EllipticCurvePrivateKey) -> PublicKey:
    return PublicKey(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "model",
        {
            "config.json": b"{}",
            "model-00001-of-00002.safetensors": b"\x01" * 4000,
            "model-00002-of-00002.safetensors": b"\x02" * 4000,
            "tokenizer/tokenizer.json": b"[]",
            ".gitattributes": b"*.safetensors filter=lfs\n",
        },
    )


def test_signed_directory_travels_in_the_archive_and_verifies_after_extraction(
    tmp_path: Path, model: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert not find_signature(plan_tree(model))
    sig = sign_directory(model, _pem_key(key, tmp_path / "oms.pem"))
    assert sig == model / SIGNATURE
    plan = plan_tree(model)
    assert find_signature(plan)
    data, entries, _ = archive(plan)
    out = tmp_path / "restored"
    extract(io.BytesIO(data), out, entries, commit)
    result = verify_directory(out, _public(key))
    assert result.covered == (
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "tokenizer/tokenizer.json",
    )
    assert result.not_covered == (".gitattributes", SIGNATURE)


def test_a_tampered_shard_is_refused_by_name(tmp_path: Path, model: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    sign_directory(model, _pem_key(key, tmp_path / "oms.pem"))
    (model / "model-00002-of-00002.safetensors").write_bytes(b"\x03" * 4000)
    data, entries, _ = archive(plan_tree(model))  # the manifest matches; OMS does not
    out = tmp_path / "restored"
    extract(io.BytesIO(data), out, entries, commit)
    with pytest.raises(OmsError, match="model-00002-of-00002.safetensors differs"):
        verify_directory(out, _public(key))


def test_a_tampered_shard_is_named_whatever_bytes_its_digest_holds(
    tmp_path: Path, model: Path
) -> None:
    # SHA-256 of 4001 bytes 0x03 holds a ' and no ": the library's message then escapes
    # the quotes around the name.
    key = ec.generate_private_key(ec.SECP256R1())
    sign_directory(model, _pem_key(key, tmp_path / "oms.pem"))
    (model / "model-00002-of-00002.safetensors").write_bytes(b"\x03" * 4001)
    with pytest.raises(OmsError, match="model-00002-of-00002.safetensors differs"):
        verify_directory(model, _public(key))


def test_added_and_removed_files_are_named(tmp_path: Path, model: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sign_directory(model, _pem_key(key, tmp_path / "oms.pem"))
    (model / "config.json").unlink()
    (model / "extra.py").write_bytes(b"x")
    with pytest.raises(OmsError, match="extra.py not signed; config.json missing"):
        verify_directory(model, _public(key))


def test_another_key_does_not_verify(tmp_path: Path, model: Path) -> None:
    sign_directory(model, _pem_key(ec.generate_private_key(ec.SECP256R1()), tmp_path / "k"))
    with pytest.raises(OmsError, match="does not verify"):
        verify_directory(model, _public(ec.generate_private_key(ec.SECP256R1())))


def test_signing_refuses_an_existing_signature_and_a_key_that_is_not_ec(
    tmp_path: Path, model: Path
) -> None:
    with pytest.raises(OmsError, match="P-256, P-384 or P-521 keys only"):
        sign_directory(model, _pem_key(ed25519.Ed25519PrivateKey.generate(), tmp_path / "ed"))
    assert not (model / SIGNATURE).exists()
    (model / SIGNATURE).write_bytes(b"{}")
    with pytest.raises(OmsError, match="already exists"):
        sign_directory(model, _pem_key(ec.generate_private_key(ec.SECP256R1()), tmp_path / "k"))


def test_no_signature_or_a_malformed_one(tmp_path: Path, model: Path) -> None:
    key = _public(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(OmsError, match="no OpenSSF model signature"):
        verify_directory(model, key)
    (model / SIGNATURE).write_bytes(b"not json")
    with pytest.raises(OmsError, match="does not verify"):
        verify_directory(model, key)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    email: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if email:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def test_certificate_identity(tmp_path: Path, model: Path) -> None:
    ms = pytest.importorskip("model_signing")
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _certificate("lab root", ca_key, None, ca_key, ca=True)
    leaf = _certificate("signer", leaf_key, ca, ca_key, ca=False, email="release@lab.example")
    pem = serialization.Encoding.PEM
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    hashing = ms.hashing.Config().set_ignored_paths(paths=[SIGNATURE])
    ms.signing.Config().use_certificate_signer(
        private_key=_pem_key(leaf_key, tmp_path / "leaf.key"),
        signing_certificate=tmp_path / "leaf.pem",
        certificate_chain=[tmp_path / "ca.pem"],
    ).set_hashing_config(hashing).sign(model, model / SIGNATURE)
    chain = ca.public_bytes(pem)
    ok = verify_directory(model, CertificateIdentity(chain, "release@lab.example"))
    assert "config.json" in ok.covered
    with pytest.raises(OmsError, match="not other@lab.example"):
        verify_directory(model, CertificateIdentity(chain, "other@lab.example"))
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _certificate("someone else", other_ca_key, None, other_ca_key, ca=True)
    with pytest.raises(OmsError, match="does not verify"):
        verify_directory(model, CertificateIdentity(other_ca.public_bytes(pem)))
