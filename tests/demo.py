"""``make demo``: the whole story against a local gateway, narrated, in about a minute.

A lab pushes a 256 MiB weights file and a credential, an evaluator asks for access,
the lab approves, the evaluator pulls with the CLI and again as a raw age file that
the standard ``age`` program decrypts, and an auditor verifies the log and lists the
evaluator's accesses. Every step runs the real ``gateway`` command against a real
``gateway serve`` on a free port (:class:`tests.harness.LocalGateway`), in a temporary
directory. Run from the checkout: ``python -m tests.demo [SIZE_MIB]``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

from tests.harness import ORGS, LocalGateway, cli, sha256_file, write_weights


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        print(f"\n\033[1m[{time.monotonic() - self.started:5.1f}s] {text}\033[0m", flush=True)

    def run(
        self,
        who: str,
        env: Mapping[str, str],
        *args: str,
        stdin: bytes | None = None,
        show: bool = True,
    ) -> str:
        print(f"  {who}$ gateway {shlex.join(args)}", flush=True)
        done = cli(env, *args, stdin=stdin)
        out = done.stdout.decode(errors="replace").rstrip()
        if show and out:
            print("    " + out.replace("\n", "\n    "), flush=True)
        for line in done.stderr.decode(errors="replace").splitlines():
            print(f"    {line}", flush=True)
        return out


def story(gw: LocalGateway, work: Path, size: int) -> None:
    say = Narrator()
    lab, ev, au = gw.env("lab"), gw.env("evaluator"), gw.env("auditor")
    say.step(f"A local gateway is running at {gw.url} (temp dir {gw.root})")
    wid, cid, digest = _lab_pushes(say, lab, work, size)
    say.step("An auditor keeps today's checkpoint, to prove later that the log only grew")
    say.run("auditor", au, "audit", "checkpoint", "--save", str(work / "checkpoint-1.txt"))
    _access(say, lab, ev, work, [wid, cid])
    _pulls(say, ev, work, wid, cid, digest)
    _audit(say, gw, au, work)


def _push(say: Narrator, lab: Mapping[str, str], work: Path, path: Path, *how: str) -> str:
    key = str(work / "lab-signing.key")
    share = ORGS["evaluator"][0]
    return say.run("lab", lab, "push", str(path), *how, "--share-with", share, "--signing-key", key)


def _lab_pushes(
    say: Narrator, lab: Mapping[str, str], work: Path, size: int
) -> tuple[str, str, str]:
    """The lab's key, its weights and a credential pushed: (weights id, credential id, sha256)."""
    say.step("The lab makes a signing key and registers its public half")
    say.run("lab", lab, "whoami")
    say.run("lab", lab, "keygen", "--type", "signing", "-o", str(work / "lab-signing.key"))
    weights = work / "model.safetensors"
    say.step(
        f"The lab generates {size >> 20} MiB of weights and pushes them, encrypted on its own machine"
    )
    digest = write_weights(weights, size)
    print(f"    sha256 {digest}")
    wid = _push(say, lab, work, weights, "--name", "frontier-model-v1", "--kind", "weights")
    credential = work / "endpoint-credential.txt"
    credential.write_text(
        "API_KEY=sk-preview-0123456789abcdef\nENDPOINT=https://preview.frontier-lab.example/v1\n"
    )
    cid = _push(say, lab, work, credential, "--name", "preview-endpoint", "--kind", "credential")
    return wid, cid, digest


def _access(
    say: Narrator, lab: Mapping[str, str], ev: Mapping[str, str], work: Path, ids: list[str]
) -> None:
    say.step("The evaluator makes an age identity, sees the artifacts and asks for access")
    say.run("evaluator", ev, "keygen", "--type", "age", "-o", str(work / "evaluator.agekey"))
    say.run("evaluator", ev, "artifacts")
    why = "pre-deployment cyber evaluation"
    requests_made = [say.run("evaluator", ev, "request", i, "--justification", why) for i in ids]
    say.step("The lab reviews the requests and approves them")
    say.run("lab", lab, "requests", "--state", "pending")
    for rid in requests_made:
        say.run("lab", lab, "approve", rid, "--hours", "48")


def _pulls(
    say: Narrator, ev: Mapping[str, str], work: Path, wid: str, cid: str, digest: str
) -> None:
    identity = str(work / "evaluator.agekey")
    say.step(
        "The evaluator pulls the weights: decrypted, checked against the lab's signed manifest"
    )
    out = work / "pulled.safetensors"
    say.run("evaluator", ev, "pull", wid, "-o", str(out), "--identity", identity)
    print(f"    identical to the lab's file: {sha256_file(out) == digest}")
    say.step("Again as a raw age file, decrypted by the standard age program")
    raw = work / "pulled.age"
    say.run("evaluator", ev, "pull", wid, "-o", str(raw), "--raw")
    age_out = work / "pulled-by-age.safetensors"
    print(f"  evaluator$ age -d -i evaluator.agekey -o {age_out.name} {raw.name}")
    subprocess.run(["age", "-d", "-i", identity, "-o", str(age_out), str(raw)], check=True)
    print(f"    identical to the lab's file: {sha256_file(age_out) == digest}")
    say.run("evaluator", ev, "pull", cid, "-o", "-", "--identity", identity)


def _audit(say: Narrator, gw: LocalGateway, au: Mapping[str, str], work: Path) -> None:
    say.step(
        "The auditor verifies the whole log from its leaves, and that it extends the saved checkpoint"
    )
    vkey = requests.get(gw.url + "/v1/audit/key", timeout=10).text.strip()
    (work / "audit.vkey").write_text(vkey + "\n")
    print(f"    verifier key (handed to the auditor by the operator): {vkey}")
    say.run("auditor", au, "audit", "export", "-o", str(work / "audit-export.jsonl"))
    say.run(
        "auditor",
        au,
        "audit",
        "verify",
        "--key",
        str(work / "audit.vkey"),
        "--since",
        str(work / "checkpoint-1.txt"),
    )
    say.run(
        "auditor",
        au,
        "audit",
        "verify",
        "--key",
        str(work / "audit.vkey"),
        "--file",
        str(work / "audit-export.jsonl"),
    )
    say.step("The evaluator's accesses, as the auditor sees them")
    say.run("auditor", au, "audit", "tail", "-n", "30", "--org", ORGS["evaluator"][0])
    say.step("Done")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    size = int(args[0]) << 20 if args else 256 << 20
    if shutil.which("age") is None:
        print("demo: the age program is needed (Debian package age)", file=sys.stderr)
        return 1
    with LocalGateway() as gw:
        work = gw.root / "work"
        work.mkdir()
        try:
            story(gw, work, size)
        except RuntimeError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            print(
                f"demo: server log:\n{(gw.root / 'server.log').read_text()[-3000:]}",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
