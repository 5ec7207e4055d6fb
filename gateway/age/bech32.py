"""Bech32 (BIP 173) without the 90-character limit, as the age spec uses it.

Design note (C2SP age, "Conventions"): strings are all lowercase or all uppercase, the
checksum is computed over the lowercase form, and there is no length limit on the data
part, so the 1216-byte hybrid recipients of the spec encode too. This is an encoding,
not a cryptographic primitive.
"""

from __future__ import annotations

from gateway.age.errors import KeyFormatError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(CHARSET)}
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
MAX_LENGTH = 8192


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GEN[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or (acc << (tobits - bits)) & maxv:
        raise KeyFormatError("invalid Bech32 padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Bech32-encode ``data`` under ``hrp``; uppercase output if ``hrp`` is uppercase."""
    lower = hrp.lower()
    values = _convert(data, 8, 5, True)
    checksum = _polymod(_hrp_expand(lower) + values + [0] * 6) ^ 1
    values += [(checksum >> 5 * (5 - i)) & 31 for i in range(6)]
    text = lower + "1" + "".join(CHARSET[v] for v in values)
    return text.upper() if hrp.isupper() else text


def decode(text: str) -> tuple[str, bytes]:
    """The (human-readable part, data) of a Bech32 string, HRP in the string's case."""
    if len(text) > MAX_LENGTH:
        raise KeyFormatError("Bech32 string too long")
    if text.lower() != text and text.upper() != text:
        raise KeyFormatError("Bech32 string mixes upper and lower case")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise KeyFormatError("Bech32 string has an invalid character")
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise KeyFormatError("Bech32 string has no separator or a too short checksum")
    hrp, lower = text[:pos], text.lower()
    try:
        values = [_VALUES[c] for c in lower[pos + 1 :]]
    except KeyError:
        raise KeyFormatError("Bech32 string has an invalid character") from None
    if _polymod(_hrp_expand(lower[:pos]) + values) != 1:
        raise KeyFormatError("Bech32 checksum does not match")
    return hrp, bytes(_convert(values[:-6], 5, 8, False))
