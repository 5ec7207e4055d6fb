"""OpenSSF Model Signing (OMS): find, make and check a directory's ``model.sig``.

Design note. An OMS signature (``sigstore/model-transparency``, PyPI ``model-signing``
1.x) is a Sigstore bundle over a DSSE envelope whose in-toto statement lists every
file of the model with its SHA-256 (predicate ``resources``) and the paths the signer
left out (``serialization.ignore_paths``; the library always leaves out ``.git``,
``.gitattributes``, ``.gitignore`` and ``.github``, and the signature itself when it was
made with its command line or with :func:`sign_directory`). Here:

- :func:`find_signature` says whether a plan holds ``model.sig`` at its top, so the
  manifest can record that the signature travels inside the archive;
- :func:`sign_directory` signs a directory with an elliptic-curve key (P-256, P-384 or
  P-521, PEM), writing ``model.sig`` into it before it is planned;
- :func:`verify_directory` checks a restored directory against verification material
  the lab registered: a :class:`PublicKey`, a :class:`CertificateIdentity` (the chain
  to trust and, optionally, an identity the signing certificate must name) or a
  :class:`SigstoreIdentity` (keyless: identity and OIDC issuer; needs Sigstore's trust
  root, so the network or a ``trust_config``).

Certificate material is canonical (:func:`chain_certificates`): each certificate once,
ordered by its own fingerprint (the SHA-256 of its DER), so the same certificates given in
any order or repeated are the same material with the same fingerprint
(:func:`chain_fingerprint`). Revocation is checked per certificate
(:func:`revoked_signer`): the library trusts every registered certificate as an anchor
and takes the intermediates from the bundle, so a bundle is judged by the certificates
it carries, not by the material it happens to verify under.

The archive carries every file, ignored ones included, and the manifest's per-file
commitments cover them all; the OMS check covers only what the signer hashed.
:class:`Verified` says which files that is. ``model_signing`` is imported only here,
when called, so the base install works without it (the ``oms`` extra brings it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.tree.errors import OmsError
from gateway.tree.plan import FILE, Plan

SIGNATURE = "model.sig"
MAX_SIGNATURE = 1 << 20  # a bundle with a chain of eight certificates is a few KiB
_INSTALL_HINT = "OpenSSF Model Signing needs: pip install 'model-artifact-gateway[oms]'"


@dataclass(frozen=True)
class PublicKey:
    """An elliptic-curve public key (PEM) the lab signs with."""

    pem: bytes


@dataclass(frozen=True)
class CertificateIdentity:
    """Certificates to trust (PEM) and, if set, a name the signing certificate must hold.

    ``identity`` is compared exactly with the signing certificate's subject alternative
    names of its kind (:func:`identity_kind`: URI, e-mail or DNS name), or, only when the
    certificate has no SAN extension, with its subject common name.
    """

    chain_pem: bytes
    identity: str | None = None


@dataclass(frozen=True)
class SigstoreIdentity:
    """A keyless Sigstore signer: the identity in its certificate and the OIDC issuer."""

    identity: str
    issuer: str
    use_staging: bool = False
    trust_config: Path | None = None


Material = PublicKey | CertificateIdentity | SigstoreIdentity


@dataclass(frozen=True)
class Signature:
    """``model.sig`` read once (:func:`read_signature`): its bytes, the library's bundle
    object for them, and the certificates it carries, signing certificate first (none
    when it was made with a bare key)."""

    raw: bytes
    bundle: Any  #: a ``sigstore_models.bundle.v1.Bundle``
    certificates: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class Verified:
    """A directory whose files match the OMS signature."""

    covered: tuple[str, ...]  #: files the signature lists, all matching
    not_covered: tuple[str, ...]  #: files present that the signer left out


def find_signature(plan: Plan) -> bool:
    """Whether the plan holds an OMS signature (a regular file ``model.sig`` at its top)."""
    return any(m.path == SIGNATURE and m.kind == FILE for m in plan.members)


def _library() -> Any:
    try:
        import model_signing
    except ImportError:
        raise OmsError(_INSTALL_HINT) from None
    return model_signing


def sign_directory(
    root: str | os.PathLike[str],
    private_key: str | os.PathLike[str],
    password: str | None = None,
    *,
    certificate: str | os.PathLike[str] | None = None,
    chain: tuple[str | os.PathLike[str], ...] = (),
) -> Path:
    """Sign ``root`` with an elliptic-curve private key (PEM file); the ``model.sig`` written.

    With ``certificate`` (PEM, the key's signing certificate; ``chain``: the certificates
    of its issuers up to the root, at least one, as model-signing requires), the bundle
    holds the certificate chain instead of a bare key, for a verifier that trusts the
    root (:class:`CertificateIdentity`). OmsError when
    ``root`` already holds one (it is not replaced) or the key is unusable.
    """
    ms = _library()
    model, out = Path(root), Path(root) / SIGNATURE
    if out.exists() or out.is_symlink():
        raise OmsError(f"{out}: already exists; the directory is signed already")
    _check_ec_key(Path(private_key), password)
    if certificate is not None and not chain:
        raise OmsError(f"cannot sign with {certificate}: give its issuers' certificates too")
    hashing = ms.hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=True)
    try:
        if certificate is None:
            config = ms.signing.Config().use_elliptic_key_signer(
                private_key=Path(private_key), password=password
            )
        else:
            config = ms.signing.Config().use_certificate_signer(
                private_key=Path(private_key),
                signing_certificate=Path(certificate),
                certificate_chain=[Path(c) for c in chain],
            )
        config.set_hashing_config(hashing).sign(model, out)
    except Exception as exc:  # the library fails in many types; none may leave a signature
        out.unlink(missing_ok=True)
        raise OmsError(f"cannot sign {model} with {private_key}: {exc}") from None
    return out


def _check_ec_key(path: Path, password: str | None) -> None:
    """Refuse, in words, a key model-signing cannot use (it fails obscurely on some)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(path.read_bytes(), password.encode() if password else None)
    except (OSError, ValueError, TypeError) as exc:
        raise OmsError(f"cannot sign with {path}: not a readable PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise OmsError(f"cannot sign with {path}: OMS signs with P-256, P-384 or P-521 keys only")


def verify_directory(
    root: str | os.PathLike[str], material: Material, signature: Signature | None = None
) -> Verified:
    """Check ``root`` against its ``model.sig`` under ``material``; OmsError names what differs.

    ``signature`` is the ``model.sig`` read already (:func:`read_signature`); the library
    verifies those very bytes, so what was checked before (revocation) and the identity
    checked here are of the bundle that verifies.
    """
    ms = _library()
    model = Path(root)
    signature = signature or read_signature(model)
    with tempfile.TemporaryDirectory(prefix="gateway-oms-") as tmp:
        sig = Path(tmp) / SIGNATURE
        sig.write_bytes(signature.raw)
        try:
            config = _verifier(ms, material, Path(tmp))
            config.verify(model, sig)
        except OmsError:
            raise
        except Exception as exc:  # the library fails in many types; every one is a refusal
            raise OmsError(_explain(exc)) from None
    try:
        if isinstance(material, CertificateIdentity) and material.identity is not None:
            _check_certificate_identity(signature.certificates, material.identity)
        covered = tuple(sorted(_resources(signature.bundle)))
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        raise OmsError(f"{SIGNATURE}: a bundle without the expected fields") from None
    present = sorted(_files(model))
    return Verified(covered, tuple(p for p in present if p not in set(covered)))


def _verifier(ms: Any, material: Material, tmp: Path) -> Any:
    config = ms.verifying.Config()
    if isinstance(material, PublicKey):
        key = tmp / "key.pem"
        key.write_bytes(material.pem)
        return config.use_elliptic_key_verifier(public_key=key)
    if isinstance(material, CertificateIdentity):
        chain = tmp / "chain.pem"
        chain.write_bytes(material.chain_pem)
        return config.use_certificate_verifier(certificate_chain=[chain])
    return config.use_sigstore_verifier(
        identity=material.identity,
        oidc_issuer=material.issuer,
        use_staging=material.use_staging,
        trust_config=material.trust_config,
    )


def _explain(exc: Exception) -> str:
    text = str(exc)
    if not text.startswith("Signature mismatch"):
        return f"the OpenSSF model signature does not verify: {text or type(exc).__name__}"
    # The library reports a list's repr: a digest holding a quote makes Python escape the
    # quotes around each name (\\'), so the pattern takes either form.
    names = re.findall(r"Hash mismatch for \\?'([^'\\]*)\\?'", text)
    parts = [f"{name} differs" for name in names]
    for what, word in (("Extra files found", "not signed"), ("Missing files", "missing")):
        match = re.search(what + r" in model '[^']*': ([^\"\]]*)", text)
        if match:
            parts.append(f"{match.group(1).rstrip()} {word}")
    said = "; ".join(parts) or text
    return "the directory does not match its OpenSSF model signature: " + said


def _resources(bundle: Any) -> Iterator[str]:
    payload = json.loads(bundle.dsse_envelope.payload)
    for resource in payload["predicate"]["resources"]:
        yield str(resource["name"])


def _files(model: Path) -> Iterator[str]:
    for path in model.rglob("*"):
        if path.is_file():
            yield path.relative_to(model).as_posix()


def identity_kind(identity: str) -> type[x509.GeneralName]:
    """The subject alternative name an identity is matched against: a URI (it holds a
    ``:``, as ``https://…`` or ``spiffe://…`` do) with UniformResourceIdentifier, an
    e-mail address (an ``@`` and no ``:``) with RFC822Name, anything else with DNSName."""
    if ":" in identity:
        return x509.UniformResourceIdentifier
    if "@" in identity:
        return x509.RFC822Name
    return x509.DNSName


def certificate_names(cert: x509.Certificate, identity: str) -> list[str]:
    """The names of ``cert`` an identity like ``identity`` is compared with: its subject
    alternative names of that identity's kind (:func:`identity_kind`) when it has the
    extension, else (no SAN extension at all) its subject common names."""
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [str(v) for v in san.get_values_for_type(identity_kind(identity))]  # type: ignore[arg-type]


def _check_certificate_identity(certs: tuple[x509.Certificate, ...], identity: str) -> None:
    """OmsError unless the signing certificate names ``identity`` exactly: in a subject
    alternative name of its kind, or, for a certificate with none, in its common name.

    A certificate with SANs is never matched by its CN (a CA that lets its users choose
    the CN would let them choose the identity), nor by a SAN of another kind (a DNS name
    spelled like an e-mail address is not that address)."""
    if not certs:
        raise OmsError(f"{SIGNATURE}: signed by a bare key, not a certificate for {identity}")
    try:
        names = certificate_names(certs[0], identity)
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise OmsError(f"{SIGNATURE}: its signing certificate's names are not readable") from None
    if identity not in names:
        kind = identity_kind(identity).__name__
        raise OmsError(
            f"{SIGNATURE}: signed by a certificate for {', '.join(names) or 'no name'} "
            f"(as {kind} names), not {identity}"
        )


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 (hex) of one certificate's DER."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def key_fingerprint(cert: x509.Certificate) -> str | None:
    """The SHA-256 (hex) of one certificate's public key (its SubjectPublicKeyInfo DER);
    None for a key of an algorithm ``cryptography`` cannot read (nothing verifies under it).

    Revocation matches by it as well as by the certificate's DER: the same key certified
    again (a new serial, a new name, or the same certificate with its ECDSA signature
    re-encoded as ``(r, n - s)``) is a new DER but still the key that was revoked.
    """
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None
    return hashlib.sha256(
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()


def chain_certificates(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM chain in canonical form: each once, ordered by fingerprint.

    Sorting (rather than building a path) needs no trust in the issuer names a chain
    claims and gives one order for any set. ValueError if a certificate is unreadable.
    """
    unique = {certificate_fingerprint(c): c for c in x509.load_pem_x509_certificates(pem)}
    return [unique[fp] for fp in sorted(unique)]


def chain_fingerprint(certs: list[x509.Certificate]) -> str:
    """The fingerprint of canonical chain material: SHA-256 of its certificates' DER in order."""
    return hashlib.sha256(b"".join(c.public_bytes(Encoding.DER) for c in certs)).hexdigest()


def chain_pem(certs: list[x509.Certificate]) -> str:
    """Canonical chain material as PEM, one certificate after another."""
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def read_signature(root: str | os.PathLike[str]) -> Signature:
    """``root``'s ``model.sig`` read once, as the library reads it (``Signature.read`` of
    ``model_signing``, over ``sigstore_models``' bundle model), with the certificates the
    library takes from it.

    OmsError when there is none, it is larger than :data:`MAX_SIGNATURE`, the library
    cannot read it, or a certificate it carries is unreadable: a signature whose
    certificates cannot be judged is refused, never let through.
    """
    _library()
    from model_signing._signing import sign_sigstore_pb

    path = Path(root) / SIGNATURE
    if not path.is_file() or path.is_symlink():
        raise OmsError(f"{SIGNATURE}: no OpenSSF model signature in {root}")
    with path.open("rb") as f:
        raw = f.read(MAX_SIGNATURE + 1)
    if len(raw) > MAX_SIGNATURE:
        raise OmsError(f"{SIGNATURE}: larger than {MAX_SIGNATURE} bytes, not a signature")
    with tempfile.TemporaryDirectory(prefix="gateway-oms-") as tmp:
        (Path(tmp) / SIGNATURE).write_bytes(raw)
        try:
            bundle = sign_sigstore_pb.Signature.read(Path(tmp) / SIGNATURE).bundle
        except Exception as exc:  # json, pydantic, unicode: the library fails in many types
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise OmsError(
                f"the OpenSSF model signature does not verify: {SIGNATURE} is not a "
                f"Sigstore bundle ({detail})"
            ) from None
    return Signature(raw, bundle, _carried(bundle))


def _carried(bundle: Any) -> tuple[x509.Certificate, ...]:
    material = bundle.verification_material
    chain = material.x509_certificate_chain
    found = [c.raw_bytes for c in chain.certificates] if chain is not None else []
    if material.certificate is not None:
        found.append(material.certificate.raw_bytes)
    try:
        return tuple(x509.load_der_x509_certificate(der) for der in found)
    except ValueError:
        raise OmsError(f"{SIGNATURE}: a certificate in its bundle is not readable") from None


def revoked_signer(
    carried: list[x509.Certificate],
    revoked: dict[str, x509.Certificate],
    held_keys: frozenset[str] | set[str] = frozenset(),
) -> str | None:
    """The fingerprint of a revoked certificate that ``carried`` holds, whose public key
    one of them has, or that issued one of them (``revoked``: fingerprint to certificate);
    None if none.

    A key is matched unless ``held_keys`` (:func:`key_fingerprint` of the certificates of
    material in force) holds it: the same key certified again, under any name or
    encoding, still speaks for the certificate that was revoked. "Issued" is checked by
    signature, not by name alone, for the same reason.
    """
    by_key = {
        kfp: fp
        for fp, cert in revoked.items()
        if (kfp := key_fingerprint(cert)) is not None and kfp not in held_keys
    }
    for cert in carried:
        mine = certificate_fingerprint(cert)
        if mine in revoked:
            return mine
        kfp = key_fingerprint(cert)
        if kfp is not None and kfp in by_key:
            return by_key[kfp]
        for fp, issuer in revoked.items():
            if cert.issuer != issuer.subject:
                continue
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
            return fp
    return None


def signed_by(signature: Signature, key: PublicKey) -> bool:
    """Whether ``signature``'s own signature verifies under ``key``, whatever the files are.

    The library checks the signature before it hashes a file, so this checks it against
    an empty directory: a mismatch of the files listed means the signature verified.
    """
    ms = _library()
    with tempfile.TemporaryDirectory(prefix="gateway-oms-") as tmp:
        sig = Path(tmp) / SIGNATURE
        sig.write_bytes(signature.raw)
        (Path(tmp) / "key.pem").write_bytes(key.pem)
        empty = Path(tmp) / "empty"
        empty.mkdir()
        try:
            verifier = ms.verifying.Config().use_elliptic_key_verifier(
                public_key=Path(tmp) / "key.pem"
            )
            verifier.verify(empty, sig)
        except Exception as exc:  # the library fails in many types; only this one says it verified
            return str(exc).startswith("Signature mismatch")
    return True
