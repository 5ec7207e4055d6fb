"""A chunked request body (RFC 9112 §7.1), decoded by the event loop as its bytes arrive.

:class:`ChunkedDecoder` finds where the body ends on the wire and decodes it in the same
pass, appending each chunk's data to one buffer: the work is linear in the bytes fed,
however they are cut into chunks or reads. It checks what gunicorn's own reader checks
(hex sizes, chunk extensions, the CRLF after each chunk's data, CRLF line ends) and
hands the trailer section back raw, for gunicorn's header parser.

Each chunk costs some fixed work besides its bytes, so the number of chunks is bounded
by the bytes they came in: the first :data:`MIN_CHUNKS` are free, then a chunk may start
only once the body so far averages :data:`BYTES_PER_CHUNK` raw bytes per chunk. The
loop's work per byte a client sends is then bounded whatever its chunks; a client that
needs tiny chunks sends fewer, larger ones, or a ``Content-Length``.
"""

from __future__ import annotations

from gunicorn.http.body import CHUNK_EXT_RE

#: Longest chunk-size line, or trailer line, in bytes (gunicorn's bound on one field).
LINE_LIMIT = 8192
#: Largest trailer section, in bytes.
TRAILER_LIMIT = 8192
#: A chunked body may always have this many chunks...
MIN_CHUNKS = 64
#: ...and one more for each of these bytes of its limit (4096 chunks for 1 MiB).
BYTES_PER_CHUNK = 256
_HEX = frozenset(b"0123456789abcdefABCDEF")


class ChunkedError(ValueError):
    """The chunked framing is malformed, or has more chunks than its bound."""


class ChunkedDecoder:
    """Decodes one chunked body fed its raw bytes in pieces (see the module's note).

    :meth:`feed` returns how many bytes of the piece belong to the body once its end is
    seen, else None; malformed framing raises :class:`ChunkedError`. ``body`` is the
    decoded data so far, ``trailers`` the raw trailer section (its lines, each ending
    with CRLF, without the blank line), ``scanned`` the raw bytes fed so far and
    :attr:`promised` the raw bytes the body is known to take at least.
    """

    def __init__(self) -> None:
        self.body = bytearray()
        self.trailers = bytearray()
        self.line = bytearray()
        self.state = "size"  # size -> data -> crlf -> size ...; last size 0 -> trailer
        self.left = 0
        self.chunks = 0
        self.scanned = 0

    @property
    def promised(self) -> int:
        """Raw bytes the body takes at least: those fed, and the rest of the current chunk."""
        return self.scanned + self.left

    def held(self) -> int:
        """Bytes this decoder keeps in memory."""
        return len(self.body) + len(self.trailers) + len(self.line)

    def feed(self, data: bytes | bytearray) -> int | None:
        view = memoryview(data)  # slices of it copy only into the buffers
        i, n = 0, len(data)
        while i < n:
            if self.state == "data":
                step = min(self.left, n - i)
                self.body += view[i : i + step]
                i += step
                self.left -= step
                if self.left == 0:
                    self.state = "crlf"
                continue
            if not self.line and self.state == "crlf" and data[i : i + 2] == b"\r\n":
                i += 2  # the usual case, without the line machinery
                self.state = "size"
                continue
            nl = data.find(b"\n", i)
            end = n if nl < 0 else nl + 1
            if len(self.line) + end - i > LINE_LIMIT:
                raise ChunkedError("a chunk-size or trailer line is too long")
            if nl >= 0 and not self.line:
                done = self._line_done(
                    bytes(view[i:end]), self.scanned + end
                )  # a whole line: no accumulation
            elif nl >= 0:
                self.line += view[i:end]
                done = self._line_done(bytes(self.line), self.scanned + end)
                self.line.clear()
            else:
                self.line += view[i:end]
                done = False
            i = end
            if done:
                self.scanned += i
                return i
        self.scanned += n
        return None

    def _line_done(self, line: bytes, at: int) -> bool:
        """Act on one whole line, which ends ``at`` bytes into the body; True at its end."""
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise ChunkedError("a line of the chunked body does not end with CRLF")
        if self.state == "crlf":
            if line != b"\r\n":
                raise ChunkedError("a chunk is longer than its size says")
            self.state = "size"
        elif self.state == "size":
            self._size_line(line[:-2], at)
        elif line == b"\r\n":  # the blank line that ends the trailer section
            return True
        else:
            self.trailers += line
            if len(self.trailers) > TRAILER_LIMIT:
                raise ChunkedError("the trailer section is too long")
        return False

    def _size_line(self, line: bytes, at: int) -> None:
        size, sep, ext = line.partition(b";")
        if sep:  # RFC 9112 §7.1.1: whitespace only before an extension
            size = size.rstrip(b" \t")
            if not CHUNK_EXT_RE.fullmatch(b";" + ext):
                raise ChunkedError("a chunk extension is not valid")
        if not size or len(size) > 16 or not _HEX.issuperset(size):
            raise ChunkedError(f"invalid chunk size {size[:20]!r}")
        self.left = int(size, 16)
        if self.left == 0:
            self.state = "trailer"
            return
        self.chunks += 1
        if self.chunks > MIN_CHUNKS + at // BYTES_PER_CHUNK:
            raise ChunkedError(
                f"{self.chunks} chunks in {at} bytes: chunks must average at least"
                f" {BYTES_PER_CHUNK} bytes; send fewer, larger chunks or a Content-Length"
            )
        self.state = "data"
