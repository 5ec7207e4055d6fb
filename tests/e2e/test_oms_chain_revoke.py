"""OMS certificate chains against the gateway: a rotated-out intermediate, a signer identity.

A lab rotates from intermediate I1 to I2 under one root and revokes the chain with I1: a
``model.sig`` made under I1 is refused as signed by a revoked key although the chain in
force (same root) would verify it, and one made under I2 verifies. A chain registered with
``--identity`` verifies only a signing certificate that carries that name.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.client.test_dir_e2e import gw, keys, write_model
from tests.e2e.test_oms_material import _pull, _pushed, _revoke_all
from tests.harness import LocalGateway, cli

__all__ = ["gw", "keys"]

pytest.importorskip("model_signing")


def _issue(
    cn: str, issuer: tuple[x509.Name, Any] | None, *, ca: bool, email: str | None = None
) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, issuer_key = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    if email:
        b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    return b.sign(issuer_key, hashes.SHA256()), key


def _write(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def _signed(tmp: Path, name: str, seed: int, leaf: Any, chain: tuple[Path, ...]) -> Path:
    from gateway.tree import oms

    cert, key = leaf
    model = write_model(tmp / name, shards=1, shard_mib=0.25, seed=seed)
    key_path = _write(tmp / f"{name}.pem", cert)
    priv = tmp / f"{name}.key"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    oms.sign_directory(model, priv, certificate=key_path, chain=chain)
    return model


def _register(gw: LocalGateway, chain: Path, *extra: str) -> str:
    said = cli(gw.env("lab"), "oms-key", "register", str(chain), *extra).stderr.decode()
    return next(w for w in said.split() if w.startswith("oms_"))


def test_a_signature_under_a_rotated_out_intermediate_is_refused_though_the_root_is_in_force(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    _revoke_all(gw)
    root, root_key = _issue("lab-a root", None, ca=True)
    i1, i1_key = _issue("lab-a ca 1", (root.subject, root_key), ca=True)
    i2, i2_key = _issue("lab-a ca 2", (root.subject, root_key), ca=True)
    root_pem, i1_pem, i2_pem = (
        _write(tmp_path / f"{n}.crt", c) for n, c in (("root", root), ("i1", i1), ("i2", i2))
    )
    old = _signed(
        tmp_path, "old", 31, _issue("signer", (i1.subject, i1_key), ca=False), (i1_pem, root_pem)
    )
    new = _signed(
        tmp_path, "new", 32, _issue("signer", (i2.subject, i2_key), ca=False), (i2_pem, root_pem)
    )
    old_art, new_art = _pushed(gw, keys, old), _pushed(gw, keys, new)
    first = _register(gw, _write(tmp_path / "c1.pem", i1, root))
    _register(gw, _write(tmp_path / "c2.pem", root, i2))
    code, err = _pull(gw, keys, old_art, tmp_path / "old-before")
    assert code == 0 and "model signature: verified" in err, err

    cli(gw.env("lab"), "oms-key", "revoke", first)
    code, err = _pull(gw, keys, old_art, tmp_path / "old-after")
    assert code != 0 and "FAILED: signed by a revoked key" in err, err
    assert "lab-a ca 1" not in err and "chains to certificate" in err, err
    code, err = _pull(gw, keys, new_art, tmp_path / "new-pulled")
    assert code == 0 and "model signature: verified" in err, err
    # the revoked chain given again, reordered and repeated, stays revoked
    again = cli(
        gw.env("lab"),
        "oms-key",
        "register",
        str(_write(tmp_path / "c3.pem", root, i1, i1)),
        check=False,
    )
    assert again.returncode != 0 and "stays revoked" in again.stderr.decode()


def test_a_chain_with_an_identity_verifies_only_that_signer(
    gw: LocalGateway, keys: dict[str, Path], tmp_path: Path
) -> None:
    _revoke_all(gw)
    root, root_key = _issue("lab-b root", None, ca=True)
    root_pem = _write(tmp_path / "root.crt", root)
    issuer = (root.subject, root_key)
    theirs = _signed(
        tmp_path,
        "theirs",
        33,
        _issue("signer", issuer, ca=False, email="ml@lab.example"),
        (root_pem,),
    )
    server = _signed(
        tmp_path, "server", 34, _issue("www.lab.example", issuer, ca=False), (root_pem,)
    )
    good, rogue = _pushed(gw, keys, theirs), _pushed(gw, keys, server)
    done = cli(gw.env("lab"), "oms-key", "register", str(root_pem), "--identity", "ml@lab.example")
    assert "for signer ml@lab.example" in done.stderr.decode()
    assert "for ml@lab.example" in cli(gw.env("lab"), "oms-key", "list").stdout.decode()
    code, err = _pull(gw, keys, good, tmp_path / "good")
    assert code == 0 and "model signature: verified" in err, err
    code, err = _pull(gw, keys, rogue, tmp_path / "rogue")
    assert code != 0 and "not ml@lab.example" in err, err
