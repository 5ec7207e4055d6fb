"""The syntax of an organisation's (and a principal's) name, shared by gateway and client.

The gateway refuses any other name when it makes one (``services.identity.check_name``);
the client refuses any other name a gateway sends before it pins or prints a key under
it, so a look-alike (``demo‑lab`` with U+2011, ``demo-lab `` with a trailing space) can
never be trusted as if it were a name the gateway could have made.
"""

from __future__ import annotations

import re

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z", re.ASCII)
"""1-64 ASCII lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.

Anchored with ``\\Z`` (not ``$``, which also matches before a final newline), so
``NAME.match`` and ``NAME.fullmatch`` agree."""


def is_name(value: object) -> bool:
    """Whether ``value`` is a string of the name syntax."""
    return isinstance(value, str) and NAME.match(value) is not None
