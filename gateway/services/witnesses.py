"""The gateway's witnesses, as its ``[audit]`` settings name them, and its own tlog-policy.

Design note (c2sp.org/tlog-policy for the policy, c2sp.org/tlog-witness for the witnesses):

- ``audit.witnesses`` lists one witness a line: its URL (the submission prefix, which is
  also its monitoring prefix), then the verifier keys it cosigns with (``gateway witness
  vkeys``), which all carry the witness's one name. ``audit.quorum`` is how many of them
  must cosign a checkpoint before it is published (0: all of them). A witness has cosigned
  when every key listed for it has.
- Or ``audit.policy_file`` is a tlog-policy file: its one ``log`` line must be this
  gateway's verifier key, and the gateway submits to every witness line that has a URL
  (the keys of one URL are one witness server); its quorum is the policy's.
- Either way :func:`for_gateway` gives the policy the gateway holds itself to (the one
  ``gateway audit policy`` prints for auditors to keep) and one
  :class:`~gateway.audit.witness.WitnessClient` per witness server. With neither, the
  policy's quorum is ``none``: checkpoints are published with the gateway's signature alone.

The settings are read as text, so :func:`parse_witness_lines` also serves the
configuration's own check at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.audit import note, trust
from gateway.audit.witness import WitnessClient

GROUP = "witnesses"
"""The name of the group the quorum is drawn from, when several witnesses are listed."""


@dataclass(frozen=True)
class WitnessLine:
    """One witness of ``audit.witnesses``: its URL and its cosigning keys (one name)."""

    url: str
    keys: tuple[note.Verifier, ...]

    @property
    def name(self) -> str:
        return self.keys[0].name


@dataclass(frozen=True)
class LogWitnesses:
    """The gateway's own policy (and its text), and the witnesses it submits checkpoints to."""

    policy: trust.Policy
    text: str
    clients: tuple[WitnessClient, ...]

    @property
    def required(self) -> bool:
        """Whether a checkpoint needs cosignatures before it is published."""
        return self.policy.quorum != trust.NONE


def parse_witness_lines(text: str) -> list[WitnessLine]:
    """``audit.witnesses``: ``URL VKEY [VKEY ...]`` a line; raise ValueError naming the line."""
    out: list[WitnessLine] = []
    for number, line in enumerate(text.splitlines(), start=1):
        items = line.split()
        if not items or items[0].startswith("#"):
            continue
        where = f"audit.witnesses: line {number}"
        if not items[0].startswith(("http://", "https://")) or len(items) < 2:
            raise ValueError(f"{where}: want a witness URL (http:// or https://) and its vkeys")
        try:
            keys = tuple(note.parse_verifier_key(v, trust.WITNESS_KEY_TYPES) for v in items[1:])
        except note.InvalidKey as exc:
            raise ValueError(f"{where}: {exc}") from None
        if len({k.name for k in keys}) != 1:
            raise ValueError(f"{where}: the keys of one witness carry one name")
        if any(w.url == items[0] or w.name == keys[0].name for w in out):
            raise ValueError(f"{where}: the witness {keys[0].name} is listed twice")
        out.append(WitnessLine(items[0].rstrip("/"), keys))
    return out


def _key_name(key: note.Verifier) -> str:
    return f"{key.name}+{key.key_id.hex()}"


def policy_from_lines(log_vkey: str, lines: Sequence[WitnessLine], quorum: int) -> str:
    """The tlog-policy text of this log with these witnesses, ``quorum`` of them (0: all)."""
    out = [f"log {log_vkey}"]
    names = []
    for w in lines:
        for key in w.keys:
            out.append(
                f"witness {_key_name(key) if len(w.keys) > 1 else w.name} {key.vkey} {w.url}"
            )
        if len(w.keys) > 1:
            out.append(f"group {w.name} all {' '.join(_key_name(k) for k in w.keys)}")
        names.append(w.name)
    if not names:
        out.append(f"quorum {trust.NONE}")
    elif len(names) == 1:
        out.append(f"quorum {names[0]}")
    else:
        out.append(f"group {GROUP} {quorum or 'all'} {' '.join(names)}")
        out.append(f"quorum {GROUP}")
    return "\n".join(out) + "\n"


def _clients(policy: trust.Policy, timeout: float, deadline: float) -> tuple[WitnessClient, ...]:
    """One client per witness URL of ``policy``, with the keys listed under that URL."""
    by_url: dict[str, list[note.Verifier]] = {}
    for w in policy.witnesses.values():
        if w.url:
            by_url.setdefault(w.url.rstrip("/"), []).append(w.verifier)
    return tuple(
        WitnessClient(url, keys, timeout=timeout, deadline=deadline) for url, keys in by_url.items()
    )


def for_gateway(
    *,
    log_vkey: str,
    witnesses: str,
    policy_file: str,
    quorum: int,
    timeout: float,
    deadline: float,
) -> LogWitnesses:
    """The gateway's policy and witness clients from its ``[audit]`` settings.

    Raises ValueError naming the setting at fault (a policy file that cannot be read or
    parsed, or whose log is not this gateway's key).
    """
    if policy_file:
        try:
            text = Path(policy_file).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"audit.policy_file {policy_file}: cannot read it: {exc}") from None
    else:
        text = policy_from_lines(log_vkey, parse_witness_lines(witnesses), quorum)
    try:
        policy = trust.parse_policy(text)
    except trust.PolicyError as exc:
        where = f"audit.policy_file {policy_file}" if policy_file else "audit.witnesses"
        raise ValueError(f"{where}: {exc}") from None
    logs = [log.verifier.vkey for log in policy.logs]
    if logs != [log_vkey]:
        raise ValueError(
            f"audit.policy_file {policy_file}: its one log line must be this gateway's key "
            f"{log_vkey}"
        )
    return LogWitnesses(policy, text, _clients(policy, timeout, deadline))
