"""The witness's log list, in the witness network's ``logs/v0`` format.

The example is the one of transparency-dev/witness-network ``log-list-format.md`` (at
995d5ce6c0a1a5543dd1d4d7f5d6368be7135525), with real keys in place of its placeholders.
"""

from __future__ import annotations

import pytest

from gateway.audit import note
from gateway.audit.cosignature import Ed25519Cosigner, MLDSA44Cosigner
from gateway.witness.loglist import LogListError, parse_log_list

FOO = note.Signer("tlog.foo.org", bytes([1]) * 32)
BAR = note.Signer("bar.org/tlog", bytes([2]) * 32)


def test_the_format_example() -> None:
    text = f"""#
# List:      10qps-100klogs
# Revision:  123
#
logs/v0

# 1st list item -- foo's log
vkey {FOO.verifier_key}
qpd 86400
contact https://tlog.foo.org/contact

# 2nd list item -- bar's log
vkey {BAR.verifier_key}
origin something-not-equal-to-vkey-keyname
qpd 24
contact sysadmin (at) bar.org
"""
    logs = parse_log_list(text)
    assert sorted(logs) == ["something-not-equal-to-vkey-keyname", "tlog.foo.org"]
    foo = logs["tlog.foo.org"]
    assert (foo.verifiers, foo.qpd, foo.contact) == (
        (FOO.verifier,),
        86400,
        "https://tlog.foo.org/contact",
    )
    assert logs["something-not-equal-to-vkey-keyname"].verifiers == (BAR.verifier,)


def test_whitespace_optional_lines_and_key_rotation() -> None:
    rotated = note.Signer("tlog.foo.org", bytes([3]) * 32)
    ml = MLDSA44Cosigner("pq.example/log", bytes(32))
    logs = parse_log_list(
        f"  logs/v0  \n\tvkey {FOO.verifier_key}\nvkey {rotated.verifier_key}\nvkey {ml.verifier_key}\n"
    )
    assert logs["tlog.foo.org"].verifiers == (FOO.verifier, rotated.verifier)
    assert logs["pq.example/log"].verifiers[0].sig_type == 0x06
    assert parse_log_list("logs/v0\n") == {}


@pytest.mark.parametrize(
    "text,why",
    [
        ("", "no logs/v0 header"),
        ("logs/v1\n", "must start with logs/v0"),
        (f"vkey {FOO.verifier_key}\n", "must start with logs/v0"),
        ("logs/v0\norigin x\n", "out of order"),
        (f"logs/v0\nvkey {FOO.verifier_key}\nqpd 5\norigin x\n", "out of order"),
        (f"logs/v0\nvkey {FOO.verifier_key}\nqpd 5\nqpd 6\n", "out of order"),
        (f"logs/v0\nvkey {FOO.verifier_key}\norign x\n", "expected vkey"),
        (f"logs/v0\nvkey {FOO.verifier_key}\nqpd 0\n", "qpd"),
        (f"logs/v0\nvkey {FOO.verifier_key}\nqpd 024\n", "qpd"),
        (f"logs/v0\nvkey {FOO.verifier_key}\nqpd 2147483648\n", "qpd"),
        (f"logs/v0\nvkey {FOO.verifier_key}\nvkey {FOO.verifier_key}\n", "twice"),
        ("logs/v0\nvkey nonsense\n", "log key"),
        (f"logs/v0\nvkey {Ed25519Cosigner('w', bytes(32)).verifier_key}\n", "signature type 0x04"),
        ("logs/v0\nvkey\n", "expected vkey"),
    ],
)
def test_lists_that_break_the_format_are_refused(text: str, why: str) -> None:
    with pytest.raises(LogListError, match=why):
        parse_log_list(text)
