"""A throwaway SoftHSM2 token directory for the ``pkcs11`` custody tests.

SoftHSM2 reads ``$SOFTHSM2_CONF`` and discovers its tokens once, when the PKCS#11
library is initialised in a process; so each test process gets one configuration and
two tokens, made before the library is first loaded: ``main`` for the backend and
``pin`` for the wrong-PIN test (no session of this process ever logs into it).

Without the ``softhsm2`` package (or ``python-pkcs11``) the tests skip with the reason;
with ``GATEWAY_REQUIRE_VECTORS=1`` (CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True)
class SoftHsm:
    module: str
    conf: Path
    token: str
    pin: str
    pin_token: str  # a second token whose PIN the wrong-PIN test gets wrong
    pin_token_pin: str

    def _listed(self, script: str, **args: str) -> str:
        """What ``script`` prints, run by another process logged in to the token."""
        opening = (
            "import json, sys, pkcs11\n"
            "from pkcs11 import Attribute, ObjectClass\n"
            "a = json.loads(sys.argv[1])\n"
            "token = pkcs11.lib(a['module']).get_token(token_label=a['token'])\n"
            "with token.open(user_pin=a['pin']) as s:\n"
        )
        given = {"module": self.module, "token": self.token, "pin": self.pin, **args}
        done = subprocess.run(
            [sys.executable, "-c", opening + script, json.dumps(given)],
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    def labels(self, label: str) -> int:
        """How many objects labelled ``label`` the token holds, counted by a separate process."""
        script = "    print(len(list(s.get_objects({Attribute.LABEL: a['label']}))))\n"
        return int(self._listed(script, label=label))

    def secret_labels(self, prefix: str) -> list[str]:
        """The labels of the token's secret keys that start with ``prefix``, by another process."""
        script = (
            "    keys = s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})\n"
            "    print(json.dumps([k.label for k in keys if k.label.startswith(a['prefix'])]))\n"
        )
        return list(json.loads(self._listed(script, prefix=prefix)))


def unavailable(reason: str) -> None:
    if os.environ.get("GATEWAY_REQUIRE_VECTORS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def module_path() -> str:
    found = next((m for m in MODULE_CANDIDATES if Path(m).is_file()), None)
    if found is None or shutil.which("softhsm2-util") is None:
        unavailable("SoftHSM2 is not installed (Debian package softhsm2; `make deps`)")
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        unavailable("python-pkcs11 is not installed (pip install -e '.[test]')")
    assert found is not None
    return found


def make_softhsm(root: Path) -> SoftHsm:
    """Write a configuration under ``root``, point ``$SOFTHSM2_CONF`` at it, init two tokens."""
    module = module_path()
    tokens = root / "tokens"
    tokens.mkdir(parents=True, mode=0o700)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    hsm = SoftHsm(
        module=module,
        conf=conf,
        token="gw-custody-test",
        pin=secrets.token_hex(8),
        pin_token="gw-custody-pin",
        pin_token_pin=secrets.token_hex(8),
    )
    for label, pin in ((hsm.token, hsm.pin), (hsm.pin_token, hsm.pin_token_pin)):
        subprocess.run(
            [
                "softhsm2-util",
                "--init-token",
                "--free",
                "--label",
                label,
                "--so-pin",
                secrets.token_hex(8),
                "--pin",
                pin,
            ],
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
            capture_output=True,
            check=True,
            timeout=60,
        )
    return hsm
