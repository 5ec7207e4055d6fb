"""A directory's OpenSSF model signature against the gateway: revoked keys, certificate chains.

A lab revokes the key a model was signed under: a pull refuses the signature, saying it
was made under a revoked key. A lab registers its CA's chain instead of a key: a model
signed with a certificate that CA issued (code-signing use, as model-signing requires)
verifies after pull, and one signed under another CA is refused.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.client.test_dir_e2e import _ec_keys, grant, gw, keys, push_args, same_tree, write_model
from tests.harness import LocalGateway, cli

__all__ = ["gw", "keys"]  # the module's gateway and keys, shared with these tests

pytest.importorskip("model_signing")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key: Any, issuer: tuple[str, Any] | None, *, ca: bool) -> x509.Certificate:
    issuer_cn, issuer_key = issuer or (cn, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _ca(tmp: Path, cn: str) -> tuple[Path, Path, Path]:
    """A throwaway CA root and a signing certificate it issued: (root PEM, key, cert)."""
    tmp.mkdir(parents=True, exist_ok=True)
    root_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = _cert(f"{cn} root", root_key, None, ca=True)
    leaf = _cert(f"{cn} signer", leaf_key, (f"{cn} root", root_key), ca=False)
    paths = tmp / "root.pem", tmp / "signer.key", tmp / "signer.pem"
    paths[0].write_bytes(root.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return paths


def _pushed(gw: LocalGateway, keys: dict[str, Path], model: Path) -> str:
    artifact = json.loads(cli(gw.env("lab"), *push_args(keys, model, "--json")).stdout)
    grant(gw, artifact["id"])
    return str(artifact["id"])


def _pull(gw: LocalGateway, keys: dict[str, Path], artifact: str, out: Path) -> tuple[int, str]:
    # Each test registers new material on the one gateway: consent to it, as a user would.
    args = ["pull", artifact, "-o", str(out), "-i", str(keys["identity"]), "--trust-new-key"]
    done = cli(gw.env("evaluator"), *args, check=False)
    return done.returncode, done.stderr.decode()


def _revoke_all(gw: LocalGateway) -> None:
    for line in cli(gw.env("lab"), "oms-key", "list").stdout.decode().splitlines():
        if "in force" in line:
            cli(gw.env("lab"), "oms-key", "revoke", line.split()[0])


def test_a_signature_under_a_revoked_key_is_refused_as_such(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    from gateway.tree import oms

    _revoke_all(gw)
    private, public = _ec_keys(tmp_path)
    model = write_model(tmp_path / "model", shards=2, shard_mib=0.25, seed=21)
    oms.sign_directory(model, private)
    artifact = _pushed(gw, keys, model)
    registered = cli(gw.env("lab"), "oms-key", "register", str(public)).stderr.decode()
    key_id = next(w for w in registered.split() if w.startswith("oms_"))
    code, err = _pull(gw, keys, artifact, tmp_path / "before")
    assert code == 0 and "model signature: verified by the key the lab registered" in err, err

    revoked = cli(gw.env("lab"), "oms-key", "revoke", key_id)
    assert key_id in revoked.stderr.decode()
    assert "revoked" in cli(gw.env("lab"), "oms-key", "list").stdout.decode()
    code, err = _pull(gw, keys, artifact, tmp_path / "after")
    assert code != 0 and "model signature: FAILED: signed by a revoked key" in err, err
    again = cli(gw.env("lab"), "oms-key", "revoke", key_id, check=False)
    assert again.returncode != 0 and "already revoked" in again.stderr.decode()


def test_a_certificate_signed_model_verifies_under_the_registered_chain_only(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    from gateway.tree import oms

    _revoke_all(gw)
    root, signer_key, signer = _ca(tmp_path / "ca", "lab-a")
    model = write_model(tmp_path / "model", shards=2, shard_mib=0.25, seed=22)
    oms.sign_directory(model, signer_key, certificate=signer, chain=(root,))
    good = _pushed(gw, keys, model)
    rogue_root, rogue_key, rogue = _ca(tmp_path / "rogue", "elsewhere")
    other = write_model(tmp_path / "other", shards=2, shard_mib=0.25, seed=23)
    oms.sign_directory(other, rogue_key, certificate=rogue, chain=(rogue_root,))
    untrusted = _pushed(gw, keys, other)

    done = cli(gw.env("lab"), "oms-key", "register", str(root))
    assert "certificate chain" in done.stderr.decode()
    out = tmp_path / "pulled"
    code, err = _pull(gw, keys, good, out)
    assert code == 0 and "model signature: verified by the key the lab registered" in err, err
    same_tree(model, out)

    code, err = _pull(gw, keys, untrusted, tmp_path / "untrusted")
    assert code != 0 and "model signature: FAILED" in err, err
    assert "does not verify" in err, err

    # A shard changed after signing (the manifest follows it): named.
    shard = "model-00001-of-00002.safetensors"
    (model / oms.SIGNATURE).unlink()
    oms.sign_directory(model, signer_key, certificate=signer, chain=(root,))
    (model / shard).write_bytes(b"\x07" * 3000)
    code, err = _pull(gw, keys, _pushed(gw, keys, model), tmp_path / "tampered")
    assert code != 0 and f"{shard} differs" in err, err
