"""c2sp.org/tlog-tiles: paths, widths, tile contents and entry bundles, byte for byte.

Vectors, each cited where it is used:

- tlog-tiles.md (C2SP/C2SP at 5ba5ee830903e91240fc6f9f3a7a9293d49e69c9): the index example
  ``x001/x234/067`` and the worked examples of "Partial Tiles" (sizes 70,000 and 256).
- transparency-dev/tessera at 1811ae1a7c401c971d9cff2a5cfdfba07a26161e:
  ``api/layout/paths_test.go`` (path cases) and ``testdata/log/`` (a 15-entry log built by
  ``testdata/build_log.sh``: its entry bundles, level-0 tiles and signed checkpoints, here as
  the SHA-256 of each file and the checkpoint texts).
- FiloSottile/sunlight at ed0bc38779aeb73c99cee6ab0c294a6ce9a2d9ba,
  ``cmd/skylight/testdata/gen.go``: a 300-entry tree of ``record <i>`` leaves, whose hash
  tiles are committed under ``testdata/witness/mirror/000de184.../tile/`` (SHA-256 here).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

import pytest

from gateway.audit import merkle, note, tiles
from gateway.audit.tiles import Bundle, Tile, TileError
from tests.audit import reference

# tessera testdata/log: the leaves appended by build_log.sh, then for n = 1..15 the SHA-256
# of tile/entries/000.p/<n> and of tile/0/000.p/<n>.
TESSERA_LEAVES = (
    b"one two three four five six seven eit nain ten ileven twelf threeten fourten fivten"
).split()
TESSERA_FILES = {
    1: ("217eb5c174b50240976ae2b9b7a2a213c8ebe7f525fde0f0ea7561adcb4794e1", "ccfdec58d220e811be8903398a8867fde33e93bba97faecad3315bd7c753bd2f"),
    2: ("8d26204429edb13ff9b074af489a8e984bdccb3e0ea2ee1d531d5f19195b7d24", "59e16c84b7f06104607760ad7916b9535d578914c7f29ae5f51ad990e6a66113"),
    3: ("17872b3223966b3b743f99f79fab73e8d54556aa39adeb6918a5b84da91b9735", "6168c234ffb69c4c34476551c18dfc6041752648b15012695bff139659d59c8a"),
    4: ("0f19d664a8c5a97ae47831b162c04ed6a68de060759cc19cb82085d9bdc58c7c", "9959e95e8017bc56a4dbaa0afda926b25a7b54c0ca055cff26f1093ab55f2da1"),
    5: ("22c2e51f0b2aa8e6a9d3770d59942127a28da1376cfab9bec868c4ada07e83b7", "cde9addac215d77831b3c28a05c63ee8679350a51760d2a63885af0d178716eb"),
    6: ("51c4a9b199a7272c00d56d4f9e7346ca0ab68549ccd076484c7340a61dadb351", "1ef4dd027e37c71ac19b68502238c107b0370b6742119c278fddd0a4b75ed350"),
    7: ("545bd03b5a0b5be95070fa06c2acd61bbb80c80702ca68e130fe06dfa289287b", "7294908b09b009d5a476bcd8c2086466c4794ceacbc40f556b32280e1a012db4"),
    8: ("a4413f345504eb3637bcab7f9f188baaf7efe71fcd9d05cbf1cb9f850bd23aeb", "92b3acf68d583ef1bfb61cf39bf9e89ff3cbe3e19f39fc698f50c91ab6360e59"),
    9: ("eda107446820475a7382b1f3c34e0cb6833cbb976b183dd11de46ba607b9bff8", "0acd41c3ef3e5db1efbcf9952282808aeedd41d12bd410d9e24395a0750e66c0"),
    10: ("81330784e6e1b74137a76d17f894317e622a918a8a91c6c7005f228ae431f488", "6dcd13cc0a93d63bf0867206365aaf370de67c8f5488b149bc5e9f3925d86b54"),
    11: ("e4391087ee6b8f34bb4bdb292a590cbeb410f3ea03e60bb6d04fbd10448b322d", "a17105d6da8c53a8051d85b9fbe52dc887478ec71aa61aa6601720b3e385d32f"),
    12: ("cbb703dd472823ec9c870229060474365f5f92f7ea1a4587541a72def784e5a3", "9b8621625e84f41ca91f60c2c9068eefa2f7df8a4732a3da17c81c7ead22c7b7"),
    13: ("0a0c8b26118fd8cc64c942ce11580a967c49bb494b931db9d8040736f4b8596a", "e0e226249b7c08f78b9f20f1ec08dc2f625867632c4240e843b091480aa3820b"),
    14: ("bb309a3d4f081ad2cafac932239a831a22eb8c839497f1d2ec383ef69da23927", "014a1bdd661336c4d00606431741c06d18fd02e9f5de72e020e794d9c84dfda5"),
    15: ("9ac6a9fc9012f2b4d67ac26041933c119e1505defc5c808ed614c5778c9f1716", "93593af14d2cce39867d2e73fe4ca400a38581605c5c4501a03e752d9b51a130"),
}  # fmt: skip
TESSERA_KEY = (
    "PRIVATE+KEY+example.com/log/testdata+33d7b496+AeymY/SZAX0jZcJ8enZ5FY1Dz+wTML2yWSkK+9DSF3eg"
)
TESSERA_VKEY = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"
TESSERA_CHECKPOINTS = {
    0: "example.com/log/testdata\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
    "— example.com/log/testdata M9e0lhxJACzE1KoUdqKuPa+9p6R7dSW8BlEvrg/noo8FkGg6PbJoRNOcdjqjOq89"
    "wVvTA60eubCc4oufo5BvIVEgtQc=\n",
    7: "example.com/log/testdata\n7\nIrSXADBqJ7EQoUODSDKROySgNveeL6CFhik2w/+fS7U=\n\n"
    "— example.com/log/testdata M9e0luA5JhTRUki/BBQD0QNiH6AEJ2pdtsA5CQjqJErViuuKrN6513RCTL2640wX"
    "Jv0dCed3neRGI6dMzBq9uANf2Qc=\n",
    15: "example.com/log/testdata\n15\nrKbDipCvhuX1GZ7g5BBe8sA6BbJ7ja/1nk427v383cs=\n\n"
    "— example.com/log/testdata M9e0luh4jTG+UMBqOUo9/q+yAEvx1ilBEniMvjf1zfcBOhg+CKubMt53MvIt/uEW"
    "P6zdkdIQzd/fmwlM/dlPWF74ewI=\n",
}

# sunlight cmd/skylight/testdata: the mirror's tree of 300 "record <i>" leaves.
SKYLIGHT_ROOT = "gw31yQrqZZCcEOPrzX+bpy3nJ6QgngTKn8G1m0i62uU="
SKYLIGHT_TILES = {
    "tile/0/000": "66a1d43136a854a5776d5bce14bf101c925fc7d4b32f1be23b658f636ebfcddb",
    "tile/0/001.p/44": "699f078d937f13343d71ad39321757de3ecf391e8d7a1b2015ad38bd36f5d60a",
    "tile/1/000.p/1": "dcef9e571841bfe2defd16306f8a7d69f5054092fb8b7f983970c646f7f5fd85",
}


class StoredTree:
    """What the audit store keeps: the hash of every complete subtree, as the log grows."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.nodes: dict[merkle.NodeID, bytes] = {}
        self.range = merkle.CompactRange()
        for leaf in leaves:
            self.nodes.update(self.range.append(merkle.leaf_hash(leaf)))

    def hashes(self, ids: Sequence[merkle.NodeID]) -> list[bytes]:
        return [self.nodes[n] for n in ids]

    def tiles(self) -> dict[str, bytes]:
        return {
            t.path(): tiles.build_hash_tile(t, self.hashes)
            for t in tiles.new_tiles(0, self.range.size)
        }


def test_index_encoding_is_the_spec_example() -> None:
    """tlog-tiles "Merkle Tree": "index 1234067 will be encoded as x001/x234/067"."""
    assert tiles.encode_index(1234067) == "x001/x234/067"
    assert tiles.parse_index("x001/x234/067") == 1234067
    assert Tile(0, 1234067, 8).path() == "tile/0/x001/x234/067.p/8"


@pytest.mark.parametrize(
    "tile,path",
    [
        # tessera api/layout/paths_test.go TestTilePath
        (Tile(0, 0), "tile/0/000"),
        (Tile(0, 0, 255), "tile/0/000.p/255"),
        (Tile(1, 0), "tile/1/000"),
        (Tile(15, 455667), "tile/15/x455/667"),
        (Tile(15, 123456789, 41), "tile/15/x123/x456/789.p/41"),
        # TestEntriesPath and TestEntriesPathForLogIndex
        (Bundle(0), "tile/entries/000"),
        (Bundle(0, 8), "tile/entries/000.p/8"),
        (Bundle(255), "tile/entries/255"),
        (Bundle(255, 253), "tile/entries/255.p/253"),
        (tiles.bundle_at(251 // 256, 255), "tile/entries/000.p/255"),
        (tiles.bundle_at(256 // 256, 257), "tile/entries/001.p/1"),
        (tiles.bundle_at(123456789, 123456790 * 256), "tile/entries/x123/x456/789"),
        (Tile(63, 999999999999999999, 255), "tile/63/x999/x999/x999/x999/x999/999.p/255"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_paths_match_tessera(tile: Tile | Bundle, path: str) -> None:
    assert tile.path() == path
    assert tiles.parse_path(path) == tile


@pytest.mark.parametrize(
    "path",
    [
        # tessera TestParseTileLevelIndexPartial, the cases it refuses
        "tile/0/x001/x234/067.p/",
        "tile/0/x001/x234/067.p",
        "tile/0/x001/x234/",
        "tile/0/x001/x234",
        "tile/0/x001/",
        "tile/0/x001",
        "tile/1/x001/.p/abc",
        "tile/64/x001/002",
        "tile/-1/x001/002",
        "tile/abc/x001/002",
        "tile/8/001/002",
        "tile/8/x001/0002",
        "tile/8/x001/-002",
        "tile/8/x001/002.p/256",
        "tile/63/x999/x999/x999/x999/x999/x999/999.p/255",  # beyond 2**64
        # canonical form only (golang.org/x/mod sumdb/tlog ParseTilePath re-encodes and compares)
        "tile/0/x000/001",
        "tile/00/001",
        "tile/0/001.p/07",
        "tile/0/001.p/0",
        "tile/0/001.p/256",
        "tile/0/1",
        "tile/entries/x000/001",
        "tile/data/001",
        "tiles/0/001",
        "tile/0",
        "",
        # numbers of any length are refused as malformed, never past int()'s digit limit
        "tile/" + "9" * 5000 + "/001",
        "tile/0/001.p/" + "9" * 5000,
        "tile/0/" + "x000/" * 5000 + "001",
    ],
)
def test_malformed_and_non_canonical_paths_are_refused(path: str) -> None:
    with pytest.raises(TileError):
        tiles.parse_path(path)


def test_partial_tiles_are_the_spec_worked_examples() -> None:
    """tlog-tiles "Partial Tiles": the trees of size 70,000 and 256."""
    got = list(tiles.new_tiles(0, 70_000))
    level0 = [t for t in got if t.level == 0]
    assert sum(not t.partial for t in level0) == 273
    assert [t.width for t in level0 if t.partial] == [112]
    assert [(t.level, t.width) for t in got if t.level > 0] == [(1, 256), (1, 17), (2, 1)]
    assert list(tiles.new_tiles(0, 256)) == [Tile(0, 0), Tile(1, 0, 1)]
    assert tiles.tile_width(0, 273, 70_000) == 112
    assert tiles.tile_width(0, 274, 70_000) == 0
    assert tiles.tile_width(2, 0, 70_000) == 1
    assert list(tiles.new_tiles(0, 0)) == []


def test_new_tiles_name_what_growth_adds() -> None:
    assert list(tiles.new_tiles(100, 101)) == [Tile(0, 0, 101)]
    assert list(tiles.new_tiles(255, 257)) == [Tile(0, 0), Tile(0, 1, 1), Tile(1, 0, 1)]
    assert list(tiles.new_tiles(1, 1)) == []
    assert list(tiles.new_bundles(250, 600)) == [Bundle(0), Bundle(1), Bundle(2, 88)]
    every = {t.path() for t in tiles.new_tiles(0, 70_000)}
    grown = {
        t.path()
        for a, b in ((0, 30_000), (30_000, 69_999), (69_999, 70_000))
        for t in tiles.new_tiles(a, b)
    }
    assert every <= grown  # the tiles of the final tree were all published on the way


def test_tile_contents_are_the_spec_formula() -> None:
    """Hash i of tile n at level L is MTH(D[(n*256+i)*256**L : (n*256+i+1)*256**L]) = node (8L, n*256+i)."""
    leaves = [b"leaf %d" % i for i in range(256 * 2 + 7)]
    tree = StoredTree(leaves)
    for tile in tiles.new_tiles(0, len(leaves)):
        data = tiles.build_hash_tile(tile, tree.hashes)
        span = 256**tile.level
        for i, h in enumerate(tiles.split_hash_tile(tile, data)):
            begin = (tile.index * 256 + i) * span
            assert h == reference.mth(leaves[begin : begin + span])
        assert tile.node_ids()[0] == merkle.NodeID(8 * tile.level, tile.index * 256)
        assert tile.leaf_range()[1] <= len(leaves)


def test_hash_tiles_reproduce_sunlight_byte_for_byte() -> None:
    tree = StoredTree([b"record %d" % i for i in range(300)])
    assert base64.b64encode(tree.range.root()).decode() == SKYLIGHT_ROOT
    got = {p: hashlib.sha256(d).hexdigest() for p, d in tree.tiles().items()}
    assert got == SKYLIGHT_TILES


@pytest.mark.parametrize("n", sorted(TESSERA_FILES))
def test_bundles_tiles_and_checkpoints_reproduce_tessera(n: int) -> None:
    tree = StoredTree(TESSERA_LEAVES[:n])
    bundle = tiles.encode_entry_bundle(TESSERA_LEAVES[:n])
    tile = tiles.build_hash_tile(tiles.tile_at(0, 0, n), tree.hashes)
    want_bundle, want_tile = TESSERA_FILES[n]
    assert (hashlib.sha256(bundle).hexdigest(), hashlib.sha256(tile).hexdigest()) == (
        want_bundle,
        want_tile,
    )
    assert tiles.bundle_at(0, n).path() == f"tile/entries/000.p/{n}"
    assert tiles.decode_entry_bundle(bundle, n) == TESSERA_LEAVES[:n]
    if n in TESSERA_CHECKPOINTS:
        signer = note.Signer.from_private_key(TESSERA_KEY)
        cp = note.Checkpoint("example.com/log/testdata", n, tree.range.root())
        assert note.sign_checkpoint(cp, signer) == TESSERA_CHECKPOINTS[n]
        assert note.open_checkpoint(TESSERA_CHECKPOINTS[n], [TESSERA_VKEY]) == cp


def test_tessera_empty_checkpoint_has_the_empty_root() -> None:
    signer = note.Signer.from_private_key(TESSERA_KEY)
    cp = note.Checkpoint("example.com/log/testdata", 0, merkle.empty_root())
    assert note.sign_checkpoint(cp, signer) == TESSERA_CHECKPOINTS[0]


def test_entry_bundles_are_uint16_length_prefixed() -> None:
    """tlog-tiles "Log entries": big-endian uint16 length prefixes."""
    assert tiles.encode_entry_bundle([b"one", b"", b"x" * 258]) == (
        b"\x00\x03one" + b"\x00\x00" + b"\x01\x02" + b"x" * 258
    )
    assert tiles.MAX_ENTRY_SIZE == 65535
    biggest = b"\xff" * 65535
    assert tiles.decode_entry_bundle(tiles.encode_entry_bundle([biggest])) == [biggest]
    with pytest.raises(tiles.EntryTooLarge):
        tiles.encode_entry_bundle([biggest + b"\xff"])
    with pytest.raises(TileError):
        tiles.encode_entry_bundle([])
    with pytest.raises(TileError):
        tiles.encode_entry_bundle([b"e"] * 257)


@pytest.mark.parametrize(
    "data,width",
    [
        (b"\x00", None),  # ends inside a length prefix
        (b"\x00\x05abc", None),  # runs past the end
        (b"", None),  # no entry
        (b"\x00\x01a\x00\x01b", 3),  # not the width the tree says
        (b"\x00\x00" * 257, None),  # more than 256 entries
    ],
)
def test_malformed_entry_bundles_are_refused(data: bytes, width: int | None) -> None:
    with pytest.raises(TileError):
        tiles.decode_entry_bundle(data, width)


def test_tiles_that_cannot_exist_are_refused() -> None:
    for args in ((64, 0), (0, -1), (0, 1 << 64), (0, 0, 0), (0, 0, 257)):
        with pytest.raises(TileError):
            Tile(*args)
    with pytest.raises(TileError):
        tiles.tile_at(0, 1, 256)
    with pytest.raises(TileError):
        tiles.bundle_at(0, 0)
    with pytest.raises(TileError, match="hash source"):
        tiles.build_hash_tile(Tile(0, 0, 2), lambda ids: [b"\x00" * 32])
    with pytest.raises(TileError):
        tiles.split_hash_tile(Tile(0, 0, 2), b"\x00" * 63)
