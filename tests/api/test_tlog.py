"""The C2SP tlog-tiles API under /v1/audit/tlog/, byte for byte against published logs.

The logs are the vectors of ``tests/audit/test_tiles.py``, loaded into the gateway's own
audit store: the 15-entry log of transparency-dev/tessera ``testdata/log/`` (signed with its
published test key, so the gateway's checkpoint is the one tessera committed, byte for
byte) and the 300-entry tree of FiloSottile/sunlight ``cmd/skylight/testdata/``. Every tile
and bundle is then served over HTTP and compared with the SHA-256 of the committed file,
and read back with :class:`~gateway.audit.tilereader.TileReader` (c2sp.org/tlog-tiles
"Merkle Tree", "Partial Tiles", "Log entries", "Checkpoints").
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.audit import merkle, note, store, tiles
from gateway.audit.leaf import utc_naive
from gateway.audit.tilereader import TileReader
from gateway.clock import FrozenClock
from gateway.config import Config
from gateway.runtime import AUDIT_KEY_FILE, Runtime
from tests.audit.test_tiles import (
    SKYLIGHT_ROOT,
    SKYLIGHT_TILES,
    TESSERA_CHECKPOINTS,
    TESSERA_FILES,
    TESSERA_KEY,
    TESSERA_LEAVES,
)
from tests.conftest import Principals

PREFIX = "/v1/audit/tlog/"


def load_leaves(rt: Runtime, leaves: list[bytes]) -> None:
    """Put ``leaves`` in the audit store as its append path does: entries, subtrees, head."""
    rng = merkle.CompactRange()
    with rt.db.session() as s:
        start = store.size(s)
        assert start == 0
        for i, leaf in enumerate(leaves):
            created = rng.append(merkle.leaf_hash(leaf))
            s.add(
                store.Entry(
                    index=i, leaf=leaf, time=utc_naive(rt.now()), actor="prn_x", org="o",
                    role="auditor", action="vector", outcome="ok",
                )
            )  # fmt: skip
            s.add_all(store.Subtree(level=n.level, index=n.index, hash=h) for n, h in created)
        s.merge(
            store.Head(
                id=store.HEAD_ID, size=rng.size, root=rng.root(), border=b"".join(rng.hashes)
            )
        )


@pytest.fixture
def tessera(config: Config, db_url: str, clock: FrozenClock) -> Iterator[FlaskClient]:
    """A gateway whose log is tessera's test log, signing with tessera's test key."""
    from gateway import bootstrap

    config = config.replace(**{"database.url": db_url, "audit.origin": "example.com/log/testdata"})
    list(bootstrap.init(config))
    key = Path(config.keys.dir) / AUDIT_KEY_FILE
    key.chmod(0o600)
    key.write_text(TESSERA_KEY + "\n")
    rt = Runtime(config, clock=clock)
    with rt.db.session() as s:  # bootstrap.init logs what it made: start from an empty log
        s.execute(store.Entry.__table__.delete())
        s.execute(store.Subtree.__table__.delete())
        s.execute(store.Head.__table__.delete())
    load_leaves(rt, TESSERA_LEAVES)
    yield create_app(config, runtime=rt).test_client()
    rt.close()


def _get(client: FlaskClient, auth: dict[str, str], path: str, **headers: str) -> bytes:
    r = client.get(PREFIX + path, headers={**auth, **headers})
    assert r.status_code == 200, (path, r.get_json(silent=True))
    return r.data


def test_tessera_log_is_served_byte_for_byte(tessera: FlaskClient, principals: Principals) -> None:
    auditor = principals.auth("auditor")
    r = tessera.get(PREFIX + "checkpoint", headers=auditor)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Cache-Control"] == "private, max-age=5"
    assert r.text == TESSERA_CHECKPOINTS[15]
    for n, (bundle_sha, tile_sha) in TESSERA_FILES.items():
        bundle = _get(tessera, auditor, f"tile/entries/000.p/{n}")
        assert hashlib.sha256(bundle).hexdigest() == bundle_sha, n
        assert hashlib.sha256(_get(tessera, auditor, f"tile/0/000.p/{n}")).hexdigest() == tile_sha
    r = tessera.get(PREFIX + "tile/0/000.p/15", headers=auditor)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Cache-Control"] == "private, max-age=60"
    vkey = note.Signer.from_private_key(TESSERA_KEY).verifier
    cp = note.open_checkpoint(_get(tessera, auditor, "checkpoint"), [vkey])
    reader = TileReader(cp.size, cp.root, lambda t: _get(tessera, auditor, t.path()))
    entries = reader.entries(0, _get(tessera, auditor, "tile/entries/000.p/15"))
    assert entries == TESSERA_LEAVES


def test_entry_bundles_are_gzipped_when_the_client_accepts_it(
    tessera: FlaskClient, principals: Principals
) -> None:
    auditor = principals.auth("auditor")
    plain = tessera.get(PREFIX + "tile/entries/000.p/15", headers=auditor)
    assert "Content-Encoding" not in plain.headers and "Accept-Encoding" in plain.headers["Vary"]
    zipped = tessera.get(
        PREFIX + "tile/entries/000.p/15", headers={**auditor, "Accept-Encoding": "gzip"}
    )
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == plain.data


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/000",  # not full: the log has 15 entries
        "tile/0/000.p/16",  # wider than the tile is
        "tile/0/001.p/1",  # beyond the head
        "tile/1/000.p/1",  # level 1 has no hash yet
        "tile/entries/000",
        "tile/entries/000.p/16",
        "tile/0/x000/000.p/1",  # non-canonical index
        "tile/0/000.p/015",  # non-canonical width
        "tile/00/000.p/1",  # non-canonical level
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/64/000.p/1",
        "tile/entries",
        "tile/../checkpoint",
    ],
)
def test_tiles_the_log_does_not_have_are_404_problems(
    tessera: FlaskClient, principals: Principals, path: str
) -> None:
    r = tessera.get(PREFIX + path, headers=principals.auth("auditor"))
    assert r.status_code == 404, r.data[:100]
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.get_json()["detail"]


def test_who_may_read_tiles_and_bundles(tessera: FlaskClient, principals: Principals) -> None:
    """Hash tiles to whoever may read proofs (audit.proof), entry bundles to auditors only."""
    for who, tile, bundle in (
        ("auditor", 200, 200),
        ("lab", 200, 403),
        ("eval", 200, 403),  # an agency reads proofs of the entries about it
        ("admin", 403, 403),
    ):
        auth = principals.auth(who)
        assert tessera.get(PREFIX + "tile/0/000.p/3", headers=auth).status_code == tile, who
        assert tessera.get(PREFIX + "tile/entries/000.p/3", headers=auth).status_code == bundle
        assert tessera.get(PREFIX + "checkpoint", headers=auth).status_code == tile, who
    for path in ("checkpoint", "signed-checkpoint", "tile/0/000.p/3", "tile/entries/000.p/3"):
        assert tessera.get(PREFIX + path).status_code == 401


def test_a_refused_bundle_is_on_record(tessera: FlaskClient, principals: Principals) -> None:
    app_rt: Runtime = tessera.application.extensions["gateway"]
    with app_rt.db.session() as s:
        before = s.scalar(select(func.count()).select_from(store.Entry))
    assert (
        tessera.get(PREFIX + "tile/entries/000.p/3", headers=principals.auth("lab")).status_code
        == 403
    )
    with app_rt.db.session() as s:
        last = store.entries(s, before, 10)
    assert [(e.action, e.outcome, e.entry()["details"].get("attempted")) for e in last] == [
        ("auth.denied", "denied", "audit.bundles")
    ]


def test_skylight_tiles_across_levels(
    rt: Runtime, client: FlaskClient, principals: Principals
) -> None:
    with rt.db.session() as s:
        s.execute(store.Entry.__table__.delete())
        s.execute(store.Subtree.__table__.delete())
        s.execute(store.Head.__table__.delete())
    load_leaves(rt, [f"record {i}".encode() for i in range(300)])
    lab = principals.auth("lab")
    for path, digest in SKYLIGHT_TILES.items():
        r = client.get(PREFIX + path, headers=lab)
        assert r.status_code == 200, path
        assert hashlib.sha256(r.data).hexdigest() == digest, path
    full = client.get(PREFIX + "tile/0/000", headers=lab)
    assert full.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    signed = client.get(PREFIX + "signed-checkpoint", headers=lab)
    cp = note.open_checkpoint(signed.text, [rt.audit_signer.verifier_key])
    assert (cp.size, note.format_checkpoint(cp).split("\n")[2]) == (300, SKYLIGHT_ROOT)
    reader = TileReader(cp.size, cp.root, lambda t: _get(client, lab, t.path()))
    with rt.db.session() as s:
        for index in (0, 255, 256, 299):
            assert reader.inclusion_proof(index) == store.inclusion_proof(s, index, 300)
        assert reader.consistency_proof(17) == store.consistency_proof(s, 17, 300)
    assert tiles.tile_width(1, 0, 300) == 1
