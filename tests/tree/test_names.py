"""Member names: what the profile admits, what clashes, and the archive's order."""

from __future__ import annotations

import pytest

from gateway.tree.errors import BadName
from gateway.tree.names import RESERVED, check_name, fold_key, sort_key


@pytest.mark.parametrize(
    "name",
    ["a", "a/b", "model-00001-of-00003.safetensors", "tokenizer/tokenizer.json", "é/ü", "x" * 255],
)
def test_admits_plain_relative_names(name: str) -> None:
    assert check_name(name) == tuple(name.split("/"))


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/./b", "'.'"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\\b", "backslash"),
        ("bad\x1b[31m", "control"),
        ("nul\x00", "control"),
        ("c1\x9b", "control"),
        ("x" * 256, "255 bytes"),
        ("/".join(["d"] * 65), "deeper"),
        ("a" * 4097, "4096"),
        ("bad\udcff", "UTF-8"),
        (RESERVED, "reserved"),
        (RESERVED + "/x", "reserved"),
    ],
)
def test_refuses_names_outside_the_profile(name: str, why: str) -> None:
    with pytest.raises(BadName, match=why):
        check_name(name)


def test_refusal_escapes_what_it_prints() -> None:
    with pytest.raises(BadName) as err:
        check_name("bad\x1b[31m")
    assert "\x1b" not in str(err.value)


def test_names_that_differ_by_case_or_normalisation_share_a_key() -> None:
    assert fold_key("README.md") == fold_key("readme.MD")
    assert fold_key("café") == fold_key("cafe\u0301")
    assert fold_key("a/b") != fold_key("a/c")


def test_order_is_by_component_bytes_so_directories_precede_their_contents() -> None:
    names = ["a-b", "a/b", "a", "B", "a/a/z", "é", "z"]
    assert sorted(names, key=sort_key) == ["B", "a", "a/a/z", "a/b", "a-b", "z", "é"]
