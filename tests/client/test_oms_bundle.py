"""A pull judges ``model.sig`` by the bundle the library verifies, whatever JSON names it uses.

``model-signing`` reads a bundle with ``sigstore_models``, which takes snake_case field
names as well as camelCase ones, and ``verificationMaterial`` is not covered by the DSSE
signature: a bundle signed under a revoked intermediate, its fields renamed, must still
be refused as revoked, and one whose certificates cannot be read must be refused.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.client import dirpull, omskeys
from gateway.client.errors import ClientError
from gateway.tree import oms

pytest.importorskip("model_signing")
# the library logs a leaf without key usage through a deprecated logging call
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated")

from tests.e2e.test_oms_chain_revoke import _issue, _write  # noqa: E402

Edit = Callable[[dict[str, Any]], None]


def _key(certs: list[Any], revoked: str | None = None, identity: str | None = None) -> omskeys.Key:
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return omskeys.Key(pem, omskeys.fingerprint(pem, "t"), omskeys.REGISTERED, revoked, identity)


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[omskeys.Key]]:
    """A model signed under intermediate I1, with [I2, R] in force and [I1, R] revoked."""
    tmp = tmp_path_factory.mktemp("rotated")
    root, root_key = _issue("root", None, ca=True)
    i1, i1_key = _issue("ca 1", (root.subject, root_key), ca=True)
    i2, _ = _issue("ca 2", (root.subject, root_key), ca=True)
    leaf, leaf_key = _issue("signer", (i1.subject, i1_key), ca=False, email="ml@lab.example")
    model = tmp / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w" * 1000)
    (tmp / "leaf.key").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    chain = (_write(tmp / "i1.crt", i1), _write(tmp / "r.crt", root))
    oms.sign_directory(
        model, tmp / "leaf.key", certificate=_write(tmp / "l.crt", leaf), chain=chain
    )
    return model, [_key([i2, root]), _key([i1, root], "2026-01-01T00:00:00Z")]


def _edited(model: Path, tmp: Path, edit: Edit) -> Path:
    copy = tmp / "model"
    copy.mkdir()
    (copy / "w.bin").write_bytes((model / "w.bin").read_bytes())
    bundle = json.loads((model / oms.SIGNATURE).read_bytes())
    edit(bundle["verificationMaterial"])
    (copy / oms.SIGNATURE).write_text(json.dumps(bundle))
    return copy


def _raw_bytes(material: dict[str, Any]) -> None:
    for cert in material["x509CertificateChain"]["certificates"]:
        cert["raw_bytes"] = cert.pop("rawBytes")


def _chain_name(material: dict[str, Any]) -> None:
    material["x509_certificate_chain"] = material.pop("x509CertificateChain")


def _both(material: dict[str, Any]) -> None:
    _raw_bytes(material)
    _chain_name(material)


def _unchanged(material: dict[str, Any]) -> None:
    pass


@pytest.mark.parametrize("edit", [_unchanged, _raw_bytes, _chain_name, _both])
def test_a_signature_under_a_revoked_intermediate_is_refused_whatever_its_field_names(
    rotated: tuple[Path, list[omskeys.Key]], tmp_path: Path, edit: Edit
) -> None:
    model, keys = rotated
    with pytest.raises(ClientError, match="FAILED: signed by a revoked key") as refused:
        dirpull._check_oms(_edited(model, tmp_path, edit), keys)
    assert keys[1].fingerprint in refused.value.detail


@pytest.mark.parametrize("edit", [_unchanged, _both])
def test_the_identity_is_checked_on_the_bundle_the_library_verifies(
    rotated: tuple[Path, list[omskeys.Key]], tmp_path: Path, edit: Edit
) -> None:
    """Under the chain that issued it, the renamed bundle verifies as the library reads it,
    and the identity is that of its signing certificate."""
    model, keys = rotated
    chain = omskeys.Key(keys[1].pem, keys[1].fingerprint, omskeys.REGISTERED, None)
    bound = omskeys.Key(chain.pem, chain.fingerprint, chain.source, None, "ml@lab.example")
    other = omskeys.Key(chain.pem, chain.fingerprint, chain.source, None, "eve@lab.example")
    pulled = _edited(model, tmp_path, edit)
    assert dirpull._check_oms(pulled, [bound])[0].covered == ("w.bin",)
    with pytest.raises(ClientError, match="not eve@lab.example"):
        dirpull._check_oms(pulled, [other])


def _junk_certificate(material: dict[str, Any]) -> None:
    chain = material["x509CertificateChain"]["certificates"]
    chain[1]["rawBytes"] = base64.b64encode(b"not a certificate").decode()


def _no_json(material: dict[str, Any]) -> None:
    material["x509CertificateChain"] = {"certificates": "none"}


@pytest.mark.parametrize("edit", [_junk_certificate, _no_json])
def test_a_signature_whose_certificates_cannot_be_read_is_refused(
    rotated: tuple[Path, list[omskeys.Key]], tmp_path: Path, edit: Edit
) -> None:
    model, keys = rotated
    with pytest.raises(ClientError, match="model signature: FAILED: .*model.sig") as refused:
        dirpull._check_oms(_edited(model, tmp_path, edit), keys)
    assert "cannot be checked" in refused.value.detail
