"""c2sp.org/tlog-policy: parsing policies and checking checkpoints against them.

The worked example is the "Example policy" of tlog-policy.md (C2SP/C2SP at
5ba5ee830903e91240fc6f9f3a7a9293d49e69c9), with generated keys in place of its elided
``<vkey>``s; every other case cites the section whose rule it checks.
"""

from __future__ import annotations

import base64

import pytest

from gateway.audit import merkle, note, trust
from gateway.audit.cosignature import Ed25519Cosigner, MLDSA44Cosigner
from gateway.audit.note import Checkpoint
from gateway.audit.trust import PolicyError

ORIGIN = "example.com/log"
CP = Checkpoint(ORIGIN, 42, merkle.leaf_hash(b"root"))
TEXT = note.format_checkpoint(CP)
LOG = note.Signer(ORIGIN, bytes([1]) * 32)


def _cosigner(name: str, ml: bool = False) -> Ed25519Cosigner | MLDSA44Cosigner:
    seed = name.encode().ljust(32, b".")[:32]
    return (MLDSA44Cosigner if ml else Ed25519Cosigner)(name, seed, lambda: 1_700_000_000.0)


W = {
    n: _cosigner(f"w.example/{n}", ml=n.startswith("Y"))
    for n in ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
}

EXAMPLE = f"""log {LOG.verifier_key}

witness X1 {W["X1"].verifier_key}
witness X2 {W["X2"].verifier_key}
witness X3 {W["X3"].verifier_key}
group X-witnesses 2 X1 X2 X3

witness Y1 {W["Y1"].verifier_key}
witness Y2 {W["Y2"].verifier_key}
witness Y3 {W["Y3"].verifier_key}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""


def _signed(*cosigners: str, text: str = TEXT) -> str:
    """The checkpoint signed by the log, plus the named witnesses' cosignature lines."""
    signed = note.sign_note(text, LOG)
    return signed + "".join(note.signature_line(W[n], text) for n in cosigners)


def test_the_spec_example_policy_parses() -> None:
    """tlog-policy "Example policy"."""
    policy = trust.parse_policy(EXAMPLE)
    assert [log.origin for log in policy.logs] == [ORIGIN]
    assert list(policy.witnesses) == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert policy.groups["X-witnesses"] == trust.Group("X-witnesses", 2, ("X1", "X2", "X3"))
    assert policy.groups["Y-witnesses"].threshold == 1
    assert policy.groups["X-and-Y"] == trust.Group("X-and-Y", 2, ("X-witnesses", "Y-witnesses"))
    assert policy.quorum == "X-and-Y"


def test_the_spec_example_quorum() -> None:
    """ "at least two of the X-witnesses, and at least one of the Y-witnesses"."""
    policy = trust.parse_policy(EXAMPLE)
    ok = trust.verify_checkpoint(_signed("X1", "X3", "Y2"), policy)
    assert ok.checkpoint == CP
    assert ok.log.verifier == LOG.verifier
    assert dict(ok.cosignatures) == {"X1": 1_700_000_000, "X3": 1_700_000_000, "Y2": 1_700_000_000}
    for cosigned in (("X1", "X2"), ("X1", "Y1", "Y2", "Y3"), ()):
        with pytest.raises(trust.QuorumNotMet, match="quorum X-and-Y is not met"):
            trust.verify_checkpoint(_signed(*cosigned), policy)


def test_an_under_cosigned_checkpoint_names_the_groups_short_of_their_threshold() -> None:
    policy = trust.parse_policy(EXAMPLE)
    with pytest.raises(trust.QuorumNotMet) as err:
        trust.verify_checkpoint(_signed("X1", "Y1"), policy)
    assert str(err.value) == (
        "quorum X-and-Y is not met (X1, Y1 cosigned): "
        "group X-witnesses needs 2 of 3 (X1, X2, X3) and has 1; "
        "group X-and-Y needs 2 of 2 (X-witnesses, Y-witnesses) and has 1"
    )


def test_quorum_none_needs_only_the_log() -> None:
    """tlog-policy "Defining the quorum": ``quorum none`` requires no cosignature."""
    policy = trust.parse_policy(f"log {LOG.verifier_key}\nquorum none\n")
    assert trust.verify_checkpoint(note.sign_note(TEXT, LOG), policy).cosignatures == {}


def test_a_single_witness_quorum() -> None:
    policy = trust.parse_policy(
        f"log {LOG.verifier_key}\nwitness X1 {W['X1'].verifier_key}\nquorum X1\n"
    )
    trust.verify_checkpoint(_signed("X1"), policy)
    with pytest.raises(trust.QuorumNotMet, match="witness X1 has not cosigned"):
        trust.verify_checkpoint(_signed("X2"), policy)  # X2 is not in this policy: ignored


def test_the_log_must_be_listed_and_must_have_signed() -> None:
    policy = trust.parse_policy(EXAMPLE)
    other = note.Signer("example.com/other", bytes(32))
    with pytest.raises(trust.UnknownLog, match="example.com/other"):
        trust.verify_checkpoint(
            note.sign_checkpoint(Checkpoint("example.com/other", 1, CP.root), other), policy
        )
    impostor = note.Signer(ORIGIN, bytes(32))  # the log's name, another key
    with pytest.raises(trust.LogSignatureMissing):
        trust.verify_checkpoint(
            note.sign_note(TEXT, impostor) + note.signature_line(W["X1"], TEXT), policy
        )
    with pytest.raises(trust.UnknownLog, match="not 'example.com/expected'"):
        trust.verify_checkpoint(_signed("X1", "X2", "Y1"), policy, origin="example.com/expected")


def test_a_bad_signature_by_a_known_key_refuses_the_checkpoint() -> None:
    """signed-note: "If a signature from a known key fails to verify, clients SHOULD reject"."""
    policy = trust.parse_policy(EXAMPLE)
    good = _signed("X1", "X2", "Y1")
    forged_cp = good.replace("\n42\n", "\n43\n", 1)
    with pytest.raises(trust.BadSignature, match="log example.com/log"):
        trust.verify_checkpoint(forged_cp, policy)
    text, sigs = note.parse_note(good)
    raw = bytearray(sigs[2].key_id + sigs[2].signature)
    raw[-1] ^= 1  # the last byte of X2's Ed25519 signature
    bad = f"— {sigs[2].name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(trust.BadSignature, match="witness X2"):
        trust.verify_checkpoint(
            text + "\n" + sigs[0].line + sigs[1].line + bad + sigs[3].line, policy
        )
    wrong_ts = note.signature_line(W["X2"], TEXT.replace("42", "41"))
    with pytest.raises(trust.BadSignature, match="witness X2"):
        trust.verify_checkpoint(_signed("X1", "Y1") + wrong_ts, policy)


def test_unknown_signatures_are_ignored_and_duplicates_count_once() -> None:
    stranger = Ed25519Cosigner("w.example/stranger", bytes(32))
    policy = trust.parse_policy(EXAMPLE)
    extra = note.signature_line(stranger, TEXT) + note.signature_line(W["X1"], TEXT)
    trust.verify_checkpoint(_signed("X1", "X2", "Y1") + extra, policy)
    with pytest.raises(trust.QuorumNotMet):
        trust.verify_checkpoint(_signed("X1", "Y1") + note.signature_line(W["X1"], TEXT), policy)


def test_cosignatures_from_the_future_can_be_refused() -> None:
    """tlog-cosignature "Format": verifiers MAY reject cosignatures with timestamps in the future."""
    policy = trust.parse_policy(EXAMPLE)
    trust.verify_checkpoint(_signed("X1", "X2", "Y1"), policy, not_after=1_700_000_000)
    with pytest.raises(trust.CosignatureTooNew, match="witness X1"):
        trust.verify_checkpoint(_signed("X1", "X2", "Y1"), policy, not_after=1_699_999_999)


def test_malformed_checkpoints_are_refused_as_such() -> None:
    policy = trust.parse_policy(EXAMPLE)
    huge = TEXT.replace("\n42\n", "\n" + "9" * 5000 + "\n")  # past int()'s digit limit
    for bad in ("", "not a note", note.sign_note("just text\n", LOG), note.sign_note(huge, LOG)):
        with pytest.raises(trust.MalformedCheckpointNote):
            trust.verify_checkpoint(bad, policy)


def test_a_group_threshold_of_any_length_is_a_policy_error() -> None:
    members = f"witness X1 {W['X1'].verifier_key}\n"
    for k in ("9" * 5, "9" * 5000):
        with pytest.raises(PolicyError, match="threshold"):
            trust.parse_policy(f"{members}group g {k} X1\nquorum g\n")


def test_syntax_whitespace_comments_and_urls() -> None:
    """tlog-policy "Structure": space/tab runs separate items, leading/trailing whitespace, comments."""
    policy = trust.parse_policy(
        f"# a comment\n  \t\n \tlog\t {LOG.verifier_key}   https://log.example/ \n"
        f"   # indented comment\nwitness\tX1\t{W['X1'].verifier_key}\thttps://w.example/\n"
        "quorum X1"  # the last line without its newline
    )
    assert policy.logs[0].url == "https://log.example/"
    assert policy.witnesses["X1"].url == "https://w.example/"


def _policy_with(*lines: str) -> str:
    head = [f"log {LOG.verifier_key}"] + [f"witness {n} {W[n].verifier_key}" for n in ("X1", "X2")]
    return "\n".join(head + list(lines)) + "\n"


@pytest.mark.parametrize(
    "text,why",
    [
        (_policy_with(), "no quorum"),
        (_policy_with("quorum X1", "quorum X2"), "exactly one quorum"),
        (_policy_with("quorum X3"), "not a witness or group"),
        (_policy_with("group G 1 X1 Later", "quorum G"), "not defined above"),
        (_policy_with("group G any X1 X1", "quorum G"), "member twice"),
        (_policy_with("group G 0 X1", "quorum G"), "threshold"),
        (_policy_with("group G 3 X1 X2", "quorum G"), "threshold"),
        (_policy_with("group G 02 X1 X2", "quorum G"), "threshold"),
        (_policy_with("group G -1 X1 X2", "quorum G"), "threshold"),
        (_policy_with("group G any", "quorum G"), "not a log, witness"),
        (_policy_with("group G any none", "quorum G"), "not defined above"),
        (_policy_with("group X1 any X2", "quorum X1"), "already defined"),
        (_policy_with("group none any X2", "quorum none"), "already defined"),
        (_policy_with(f"witness none {W['X3'].verifier_key}", "quorum none"), "already defined"),
        (_policy_with(f"witness X9 {W['X1'].verifier_key}", "quorum X9"), "listed earlier"),
        (_policy_with(f"log {LOG.verifier_key}", "quorum none"), "listed earlier"),
        (_policy_with(f"witness X4 {LOG.verifier_key}", "quorum none"), "signature type 0x01"),
        (_policy_with(f"log {W['X3'].verifier_key}", "quorum none"), "signature type 0x04"),
        (_policy_with("log not-a-vkey", "quorum none"), "log key"),
        (_policy_with("witness X5", "quorum none"), "not a log, witness"),
        (_policy_with("quorum", "quorum none"), "not a log, witness"),
        (_policy_with("logs x", "quorum none"), "not a log, witness"),
        (_policy_with("quorum none\r"), "control characters"),
        (_policy_with("quorum none", "# bell \x07"), "control characters"),
    ],
)
def test_policies_that_break_a_rule_are_refused(text: str, why: str) -> None:
    with pytest.raises(PolicyError, match=why):
        trust.parse_policy(text)


def test_errors_name_the_line() -> None:
    with pytest.raises(PolicyError, match="^policy line 4: "):
        trust.parse_policy(_policy_with("group G 3 X1 X2", "quorum G"))


def test_names_are_opaque_octets() -> None:
    """tlog-policy "Character set": the name "K" differs from a Kelvin sign (E2 84 AA)."""
    text = (
        f"witness K {W['X1'].verifier_key}\nwitness \u212a {W['X2'].verifier_key}\n"
        "group G all K \u212a\nquorum G\n"
    ).encode()
    policy = trust.parse_policy(text + b"# \xff\xfe opaque comment\n")
    assert list(policy.witnesses) == ["K", "\u212a"]
    assert policy.witnessed("G", ["K", "\u212a"]) and not policy.witnessed("G", ["K"])


def test_the_recommended_limits_are_supported_and_evaluation_stays_linear() -> None:
    """tlog-policy "Implementation limits": at least 32 logs, 32 witnesses and 32 groups."""
    logs = [note.Signer(f"log{i}.example", bytes([i]) * 32) for i in range(32)]
    ws = [Ed25519Cosigner(f"w{i}.example", bytes([100 + i]) * 32) for i in range(32)]
    lines = [f"log {s.verifier_key}" for s in logs] + [
        f"witness w{i} {c.verifier_key}" for i, c in enumerate(ws)
    ]
    lines += ["group g0 any w0 w1"] + [f"group g{i} all g{i - 1} w{i % 32}" for i in range(1, 250)]
    policy = trust.parse_policy("\n".join(lines + ["quorum g249"]) + "\n")
    assert len(policy.logs) == 32 and len(policy.witnesses) == 32 and len(policy.groups) == 250
    everyone = [f"w{i}" for i in range(32)]
    assert policy.witnessed("g249", everyone)
    # Without w0, g0 still holds (w1) but g32 = all(g31, w0) fails, and every group above it.
    unmet = policy.unmet("g249", everyone[1:])
    assert len(unmet) == 249 - 32 + 1
    assert unmet[0] == "group g32 needs 2 of 2 (g31, w0) and has 1"


def test_a_policy_with_an_mldsa44_log_key() -> None:
    """tlog-checkpoint "Signatures": logs SHOULD sign with ML-DSA-44 cosignatures."""
    log = MLDSA44Cosigner(ORIGIN, bytes(32), lambda: 5.0)
    policy = trust.parse_policy(f"log {log.verifier_key}\nquorum none\n")
    assert trust.verify_checkpoint(note.sign_note(TEXT, log), policy).log.verifier == log.verifier
