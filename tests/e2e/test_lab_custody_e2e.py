"""Lab-held custody against a real `gateway serve`: the real `age` encrypts to the lab's own
recipient, the lab approves with its identity, the evaluator's `age -d` gives the plaintext
back, and a copy of everything the gateway holds opens nothing."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests

from gateway import age as agelib
from tests import helpers
from tests.e2e.conftest import BIN, Server, age_program

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MIB = 1 << 20
_SECRET = re.compile(rb"AGE-SECRET-KEY-(?:PQ-)?1[0-9A-Z]+")


def client(
    server: Server, homes: Path, who: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The `gateway` client as ``who``, its config directory outside the gateway's."""
    home = homes / who
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GATEWAY_URL": server.url,
        "GATEWAY_TOKEN": server.tokens[who],
        "XDG_CONFIG_HOME": str(home),
        "GATEWAY_CONFIG": "",
    }
    done = subprocess.run(
        [str(BIN / "gateway"), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check and done.returncode != 0:
        raise AssertionError(f"gateway {' '.join(args)}: {done.stderr}")
    return done


def keygen(age: str, path: Path) -> str:
    tool = str(Path(age).with_name("age-keygen"))
    subprocess.run([tool, "-o", str(path)], check=True, capture_output=True)
    return subprocess.run(
        [tool, "-y", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_lab_custody_story(server: Server, tmp_path: Path) -> None:
    age = age_program()
    outside, homes = tmp_path / "outside", tmp_path / "homes"  # never under the gateway's root
    outside.mkdir()
    plaintext = helpers.random_bytes(7 * MIB + 321, seed=5)
    (outside / "weights.bin").write_bytes(plaintext)
    lab_recipient = keygen(age, outside / "lab.agekey")
    subprocess.run(
        [
            age,
            "-r",
            lab_recipient,
            "-o",
            str(outside / "weights.age"),
            str(outside / "weights.bin"),
        ],
        check=True,
    )
    client(server, homes, "lab", "keygen", "--type", "signing", "-o", str(outside / "lab.key"))
    pushed = client(
        server,
        homes,
        "lab",
        *("push", "--custody", "lab", "--encrypted", str(outside / "weights.age")),
        *("-i", str(outside / "lab.agekey"), "--share-with", "agency-a"),
        *("--signing-key", str(outside / "lab.key")),
    )
    artifact = pushed.stdout.strip()
    info = requests.get(
        f"{server.url}/v1/artifacts/{artifact}", headers=server.auth("lab"), timeout=10
    ).json()
    assert info["custody"] == "lab" and info["unchecked"] == ["header-mac", "recipient"]

    client(server, homes, "eval", "keygen", "--type", "age", "-o", str(outside / "eval.agekey"))
    eval_recipient = agelib.parse_identities((outside / "eval.agekey").read_text())[0]
    request = client(server, homes, "eval", "request", artifact, "--justification", "evaluation")
    req = request.stdout.strip()

    refused = client(server, homes, "lab", "approve", req, check=False)
    assert refused.returncode != 0
    assert "gateway: error:" in refused.stderr and f"approve {req} -i" in refused.stderr
    unconfirmed = client(
        server, homes, "lab", "approve", req, "-i", str(outside / "lab.agekey"), check=False
    )
    assert unconfirmed.returncode != 0 and "--expect-recipient" in unconfirmed.stderr
    approved = client(
        server,
        homes,
        "lab",
        *("approve", req, "-i", str(outside / "lab.agekey")),
        *("--expect-recipient", str(eval_recipient.to_recipient())),
    )
    assert str(eval_recipient.to_recipient()) in approved.stderr  # shown, and pinned
    assert "pinned" in approved.stderr

    raw = outside / "raw.age"
    client(server, homes, "eval", "pull", artifact, "-o", str(raw), "--raw")
    out = outside / "by-age.bin"
    subprocess.run(
        [age, "-d", "-i", str(outside / "eval.agekey"), "-o", str(out), str(raw)], check=True
    )
    assert out.read_bytes() == plaintext
    client(
        server,
        homes,
        "eval",
        "pull",
        artifact,
        "-o",
        str(outside / "pulled.bin"),
        "-i",
        str(outside / "eval.agekey"),
    )  # the client checks the keyed commitment too
    assert (outside / "pulled.bin").read_bytes() == plaintext
    ranged = requests.get(
        f"{server.url}/v1/artifacts/{artifact}/content",
        headers={**server.auth("eval"), "Range": "bytes=1000-2999999"},
        timeout=30,
    )
    assert ranged.status_code == 206 and ranged.content == raw.read_bytes()[1000:3000000]

    _nothing_held_opens_it(server, tmp_path / "copy", raw, outside / "eval.agekey")
    _changed_recipient_needs_consent(server, homes, outside, artifact)


def _nothing_held_opens_it(server: Server, copy: Path, raw: Path, evaluator_key: Path) -> None:
    """Copy the gateway's whole root (database, key directory, object store) and try every key
    in it, every value its custody backend could unwrap, and every stored header."""
    # The server fixture's root is this test's tmp_path: leave out the lab's and the
    # evaluator's machines (outside, homes), which are not the gateway's.
    machines = {"outside", "homes", copy.name}
    shutil.copytree(
        server.root,
        copy,
        ignore=lambda d, names: [n for n in names if Path(d) == server.root and n in machines],
    )
    db = sqlite3.connect(copy / "var" / "gateway.db")
    try:
        headers = [bytes(h) for (h,) in db.execute("SELECT header FROM grants") if h]
        headers += [bytes(h) for (h,) in db.execute("SELECT header_prefix FROM uploads") if h]
        wrapped = db.execute("SELECT count(*) FROM custody_keys").fetchone()[0]
    finally:
        db.close()
    objects = [p for p in copy.rglob("*.age") if p.is_file()]
    assert objects and headers  # the copy holds the artifact and the grant's header
    headers += [p.read_bytes()[:65536] for p in objects]
    candidates: list[tuple[Path, agelib.Identity]] = []
    for path in (p for p in copy.rglob("*") if p.is_file()):
        for secret in _SECRET.findall(path.read_bytes()):
            candidates.append((path, agelib.parse_identity(secret.decode())))
    assert wrapped == 0  # lab custody: no value for the custody backend to unwrap at all
    for head in headers:
        parsed = agelib.parse_header(head)
        for path, identity in candidates:
            with pytest.raises(agelib.NoIdentityMatchError):
                agelib.unwrap_file_key(parsed, [identity])
                raise AssertionError(f"a key in {path.relative_to(copy)} opens a stored header")
    own = agelib.parse_identities(evaluator_key.read_text())
    assert len(agelib.unwrap_file_key(agelib.parse_header(raw.read_bytes()), own)) == 16


def _changed_recipient_needs_consent(
    server: Server, homes: Path, outside: Path, artifact: str
) -> None:
    grant = requests.get(f"{server.url}/v1/grants", headers=server.auth("lab"), timeout=10).json()[
        "items"
    ][0]
    r = requests.delete(f"{server.url}/v1/grants/{grant['id']}", headers=server.auth("lab"))
    assert r.status_code == 204
    new_key = outside / "eval-new.agekey"
    client(server, homes, "eval", "keygen", "--type", "age", "-o", str(new_key), "--yes")
    req = client(server, homes, "eval", "request", artifact, "--justification", "again")
    refused = client(
        server,
        homes,
        "lab",
        "approve",
        req.stdout.strip(),
        "-i",
        str(outside / "lab.agekey"),
        check=False,
    )
    assert refused.returncode != 0 and "--trust-new-recipient" in refused.stderr
    client(
        server,
        homes,
        "lab",
        "approve",
        req.stdout.strip(),
        "-i",
        str(outside / "lab.agekey"),
        "--trust-new-recipient",
    )
    raw = outside / "raw-new.age"
    client(server, homes, "eval", "pull", artifact, "-o", str(raw), "--raw")
    own = agelib.parse_identities(new_key.read_text())
    assert len(agelib.unwrap_file_key(agelib.parse_header(raw.read_bytes()), own)) == 16
