"""What the client says when the gateway is out of room (507): which upload, what was kept,
the command that resumes. The gateway's quotas answer 507; this gateway stands in for one."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway import age
from gateway.cli import main
from tests import helpers
from tests.client.fakeserver import Routes, serving_routes

UPLOAD = "up_0123456789abcdef0123"


def test_a_push_past_the_gateways_space_says_so_and_how_to_resume(tmp_path: Path) -> None:
    from nacl.signing import SigningKey

    from gateway import manifest

    key = SigningKey.generate()
    key_file = tmp_path / "lab.key"
    manifest.save_signing_key(key_file, key)
    custody = age.X25519Identity.generate()
    routes = Routes(
        {
            ("GET", "/v1/me"): (200, {"name": "alice", "org": "lab-a", "role": "lab"}),
            ("GET", "/v1/orgs/lab-a/signing-keys"): (
                200,
                {"items": [{"public_key": helpers.public_b64(key)}]},
            ),
            ("POST", "/v1/uploads"): (
                201,
                {"id": UPLOAD, "recipient": str(custody.to_recipient()), "part_size": 8 << 20},
            ),
            ("GET", f"/v1/uploads/{UPLOAD}"): (200, {"id": UPLOAD, "state": "open", "parts": []}),
            ("PUT", f"/v1/uploads/{UPLOAD}/parts/1"): (
                507,
                {"status": 507, "detail": "lab-a is over its quota of 10.0 GiB"},
            ),
        }
    )
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w" * 1000)
    with serving_routes(routes) as url:
        env = {"GATEWAY_URL": url, "GATEWAY_TOKEN": "gw_x", "XDG_CONFIG_HOME": str(tmp_path)}
        args = ["push", str(weights), "--share-with", "agency-a", "--signing-key", str(key_file)]
        done = CliRunner(env=env).invoke(main, args)
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [
        "gateway: error: the gateway is out of space, or your organisation is over its quota: "
        f"lab-a is over its quota of 10.0 GiB; upload {UPLOAD} holds 0 of 1 parts",
        "gateway: hint: once there is room, run the same command again, or "
        f"`gateway push --resume {UPLOAD} --signing-key {key_file}`, to send only what is missing",
    ]
    assert routes.seen.count(("PUT", f"/v1/uploads/{UPLOAD}/parts/1")) == 1, "a 507 is not retried"
