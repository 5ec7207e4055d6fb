"""The sizes of an age file and the STREAM arithmetic on them (C2SP age, "File key", "Payload").

Design note. A file key is 16 random bytes. The payload is a 16-byte nonce, then the
plaintext in chunks of 64 KiB, each sealed with ChaCha20-Poly1305 (a 16-byte tag after
it); the last chunk may be short, and is empty only when the whole plaintext is, so a
plaintext of ``n`` bytes takes ``max(1, ceil(n / 64 KiB))`` chunks. Chunk ``i`` is sealed
under the 12-byte nonce ``i`` (11 bytes, big endian) ``||`` ``0x01`` for the final chunk
and ``0x00`` otherwise. Every size and nonce the package (and anything that addresses an
age file by chunk) uses comes from here.
"""

from __future__ import annotations

FILE_KEY_SIZE = 16
NONCE_SIZE = 16
CHUNK = 64 * 1024
TAG = 16
SEALED = CHUNK + TAG
#: A file key sealed with ChaCha20-Poly1305, as the X25519, scrypt and hybrid stanzas carry it.
WRAPPED_FILE_KEY_SIZE = FILE_KEY_SIZE + TAG


def chunk_nonces(first: int, count: int, final: bool) -> list[bytes]:
    """The STREAM nonces of chunks ``first`` to ``first + count - 1``, the last one final if
    ``final``: each is the chunk's index in 11 bytes, big endian, then the flag byte.

    Built as the 96-bit integer ``index << 8 | flag``, one allocation per nonce (a batch's
    worth is made for every MiB sealed or opened); OverflowError past 2**88 chunks.
    """
    nonces = [(index << 8).to_bytes(12, "big") for index in range(first, first + count)]
    if final and count:
        nonces[-1] = ((first + count - 1) << 8 | 1).to_bytes(12, "big")
    return nonces


def chunk_nonce(index: int, last: bool) -> bytes:
    """The STREAM nonce of chunk ``index`` (:func:`chunk_nonces` of one chunk)."""
    return chunk_nonces(index, 1, last)[0]


def chunk_count(plaintext_size: int) -> int:
    """How many STREAM chunks a plaintext of this size takes (at least one)."""
    return max(1, -(-plaintext_size // CHUNK))


def sealed_size(plaintext_size: int) -> int:
    """The STREAM's bytes for a plaintext of this size: the plaintext and a tag per chunk."""
    return plaintext_size + TAG * chunk_count(plaintext_size)


def payload_size(plaintext_size: int) -> int:
    """Bytes after the header: the nonce, the plaintext and one tag per chunk."""
    return NONCE_SIZE + sealed_size(plaintext_size)


def sealed_offset(index: int) -> int:
    """Where chunk ``index`` starts in the payload (the nonce comes first)."""
    return NONCE_SIZE + index * SEALED


def plaintext_size(payload: int) -> int:
    """The plaintext size a payload of ``payload`` bytes (nonce included) decrypts to.

    ValueError when no valid payload has that size.
    """
    body = payload - NONCE_SIZE
    if body < TAG:
        raise ValueError("the payload is too short")
    full, rest = divmod(body, SEALED)
    if rest == 0:
        return full * CHUNK
    if rest <= TAG and full > 0:
        raise ValueError("the payload ends inside a tag")
    return full * CHUNK + rest - TAG
