"""Member names: the one place that decides which relative paths an archive may hold.

Design note. A member name is a relative POSIX path of ``/``-separated components, held
as a ``str`` that is valid UTF-8 (no lone surrogates, so no undecodable file name gets
in). It is refused when it is empty or absolute, when a component is empty, ``.`` or
``..``, holds a backslash (a separator elsewhere) or a control character (C0, DEL, C1:
names are printed in messages and must not drive a terminal), when a component is over
255 bytes or the whole over :data:`MAX_PATH_BYTES`, or deeper than :data:`MAX_DEPTH`.
Names are *not* normalised: the bytes restored are the bytes pushed. Two names that
:func:`fold_key` maps to the same key (Unicode NFC, then case folding) are refused as a
clash by both the walker and the extractor, whatever the filesystem at hand, so an
archive restores to the same tree on case-folding or normalising filesystems (macOS,
Windows) as on Linux. The top-level name :data:`RESERVED` is the extractor's own.
"""

from __future__ import annotations

import unicodedata

from gateway.tree.errors import BadName

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_DEPTH = 64
RESERVED = ".gateway-incoming"


def quoted(path: str) -> str:
    """``path`` for a message: quoted, every non-printable or non-ASCII character escaped."""
    return ascii(path)


def _bad_char(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code < 0xA0 or ch == "\\"


def check_name(path: str) -> tuple[str, ...]:
    """The components of a valid member name; BadName naming it otherwise."""
    shown = quoted(path)
    if not path:
        raise BadName("an empty member name", path=path)
    if path.startswith("/"):
        raise BadName(f"{shown}: an absolute path", path=path)
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadName(f"{shown}: not valid UTF-8", path=path) from None
    if size > MAX_PATH_BYTES:
        raise BadName(f"{shown}: longer than {MAX_PATH_BYTES} bytes", path=path)
    parts = tuple(path.split("/"))
    if len(parts) > MAX_DEPTH:
        raise BadName(f"{shown}: deeper than {MAX_DEPTH} directories", path=path)
    for part in parts:
        if part in ("", ".", ".."):
            raise BadName(f"{shown}: has an empty, '.' or '..' component", path=path)
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise BadName(f"{shown}: a component is over {MAX_COMPONENT_BYTES} bytes", path=path)
        if any(_bad_char(ch) for ch in part):
            raise BadName(f"{shown}: holds a control character or a backslash", path=path)
    if parts[0] == RESERVED:
        raise BadName(f"{shown}: {RESERVED} is reserved for extraction", path=path)
    return parts


def fold_key(path: str) -> str:
    """The key under which two names clash: NFC, then Unicode case folding."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


def sort_key(path: str) -> tuple[bytes, ...]:
    """The archive's order: component by component, each by its UTF-8 bytes.

    This is a depth-first walk with each directory's entries in byte order, the order of
    GNU ``tar --sort=name``, and it puts every directory before what it holds.
    """
    return tuple(part.encode("utf-8") for part in path.split("/"))
