"""Identities and recipients: generation, string forms, parsing and refusals."""

from __future__ import annotations

import pytest

from gateway import age
from gateway.age import bech32

# The examples printed in the C2SP age spec ("The X25519 recipient type").
SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"


def test_x25519_spec_example_identity_gives_spec_recipient() -> None:
    identity = age.parse_identity(SPEC_IDENTITY)
    assert isinstance(identity, age.X25519Identity)
    assert str(identity) == SPEC_IDENTITY
    assert str(identity.to_recipient()) == SPEC_RECIPIENT
    assert age.parse_recipient(SPEC_RECIPIENT) == identity.to_recipient()


@pytest.mark.parametrize("kind", [age.X25519Identity, age.HybridIdentity])
def test_generated_keys_round_trip_through_strings(kind: type) -> None:
    identity = kind.generate()
    text = str(identity)
    assert text.startswith(
        "AGE-SECRET-KEY-PQ-1" if kind is age.HybridIdentity else "AGE-SECRET-KEY-1"
    )
    again = age.parse_identity(text)
    assert type(again) is kind and str(again) == text
    recipient = identity.to_recipient()
    assert str(recipient).startswith("age1pq1" if kind is age.HybridIdentity else "age1")
    assert age.parse_recipient(str(recipient)) == recipient
    assert age.parse_recipient(str(recipient)) == again.to_recipient()
    assert kind.generate().to_recipient() != recipient


def test_secret_is_not_in_repr() -> None:
    for identity in (age.X25519Identity.generate(), age.HybridIdentity.generate()):
        assert str(identity) not in repr(identity)
    assert "hunter2" not in repr(age.ScryptIdentity("hunter2"))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "age1"),
        ("age1", "separator"),
        (SPEC_RECIPIENT[:-1] + "q", "checksum"),
        (SPEC_RECIPIENT.upper(), "lowercase"),
        (SPEC_RECIPIENT[:10] + SPEC_RECIPIENT[10:].upper(), "lowercase"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN", "SSH"),
        (bech32.encode("age1yubikey", b"\x02" * 33), "plugin"),
        (bech32.encode("age1tag", b"\x02" * 33), "tagged"),
        (bech32.encode("age", b"\x01" * 31), "32 bytes"),
        (bech32.encode("age1pq", b"\x01" * 1000), "1216 bytes"),
        (SPEC_IDENTITY, "age1"),
    ],
)
def test_bad_recipients_are_refused_with_a_reason(text: str, needle: str) -> None:
    with pytest.raises(age.KeyFormatError, match=needle):
        age.parse_recipient(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "AGE-SECRET-KEY-"),
        (SPEC_IDENTITY.lower(), "AGE-SECRET-KEY-"),
        (SPEC_IDENTITY[:-1] + "Q", "checksum"),
        (SPEC_RECIPIENT, "AGE-SECRET-KEY-"),
        ("AGE-PLUGIN-YUBIKEY-1QQQQQQ", "plugin"),
        (bech32.encode("AGE-SECRET-KEY-", b"\x01" * 33), "32 bytes"),
        (bech32.encode("AGE-SECRET-KEY-XX-", b"\x01" * 32), "unknown"),
    ],
)
def test_bad_identities_are_refused_with_a_reason(text: str, needle: str) -> None:
    with pytest.raises(age.KeyFormatError, match=needle):
        age.parse_identity(text)


def test_identity_file_with_comments() -> None:
    a, b = age.X25519Identity.generate(), age.HybridIdentity.generate()
    text = f"# created: now\n# public key: {a.to_recipient()}\n{a}\n\n  {b}  \n"
    parsed = age.parse_identities(text)
    assert [str(p) for p in parsed] == [str(a), str(b)]
    with pytest.raises(age.KeyFormatError, match="line 2"):
        age.parse_identities(f"{a}\nnot a key\n")
    with pytest.raises(age.KeyFormatError, match="no identity"):
        age.parse_identities("# nothing\n")


def test_bech32_has_no_length_limit_and_checks_case() -> None:
    payload = bytes(range(256)) * 5
    assert bech32.decode(bech32.encode("x", payload)) == ("x", payload)
    assert bech32.decode(bech32.encode("X", payload)) == ("X", payload)
    with pytest.raises(age.KeyFormatError):
        bech32.decode("A" + bech32.encode("x", b"abc")[1:])


def test_scrypt_recipient_rejects_bad_parameters() -> None:
    with pytest.raises(age.UsageError):
        age.ScryptRecipient("")
    with pytest.raises(age.UsageError):
        age.ScryptRecipient("pw", work_factor=23)
    with pytest.raises(age.UsageError):
        age.ScryptRecipient("pw", work_factor=0)


def _scrypt_stanza(work_factor: str) -> age.Stanza:
    return age.Stanza("scrypt", ("rF0/NwblUHHTpgQgRpe5CQ", work_factor), bytes(32))


@pytest.mark.parametrize("factor", ["23", "100", "9" * 5000])
def test_a_well_formed_scrypt_work_factor_over_the_limit_is_named_so(factor: str) -> None:
    """The spec's grammar is ^[1-9][0-9]*$: a long factor is too large, not malformed."""
    with pytest.raises(age.HeaderError, match="above the limit of 22"):
        age.ScryptIdentity("password").unwrap([_scrypt_stanza(factor)])


@pytest.mark.parametrize("factor", ["0", "010", "+10", "0xa", "1e1", "١٠", ""])
def test_a_scrypt_work_factor_off_the_grammar_is_malformed(factor: str) -> None:
    with pytest.raises(age.HeaderError, match="invalid work factor"):
        age.ScryptIdentity("password").unwrap([_scrypt_stanza(factor)])


@pytest.mark.parametrize("point", [bytes(32), (1).to_bytes(32, "little")])
def test_a_hybrid_recipient_with_a_low_order_x25519_share_is_a_key_error(point: bytes) -> None:
    """cryptography refuses the share with a bare ValueError; age's callers get KeyFormatError."""
    from gateway.age import mlkem

    good = age.HybridIdentity.generate().to_recipient()
    bad = mlkem.HybridRecipient(good.public[: mlkem.MLKEM_PUBLIC_SIZE] + point)
    with pytest.raises(age.KeyFormatError, match="low-order"):
        bad.wrap(b"k" * 16)
