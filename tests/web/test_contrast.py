"""The stylesheet's colours meet WCAG 2.1 contrast: 4.5:1 for text, 3:1 for marks and focus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gateway.web

CSS = (Path(gateway.web.__file__).parent / "static" / "style.css").read_text()

# (foreground, background, minimum ratio): every pair the stylesheet puts together.
PAIRS = [
    ("ink", "paper", 4.5),  # body text
    ("ink", "panel", 4.5),  # table heads, the header bar, code blocks, neutral badges
    ("muted", "paper", 4.5),  # hints, labels of facts
    ("muted", "panel", 4.5),  # who is signed in, in the header bar
    ("accent", "paper", 4.5),  # links
    ("accent", "panel", 4.5),  # links in the header bar
    ("accent-ink", "accent", 4.5),  # buttons
    ("danger-ink", "danger", 4.5),  # danger buttons, denied badges
    ("danger", "paper", 4.5),  # errors, refusals
    ("ok", "paper", 4.5),  # "proven"
    ("accent-ink", "ok", 4.5),  # available / active badges
    ("warn-ink", "warn-bg", 4.5),  # the withdrawal warning, pending badges
    ("focus", "paper", 3.0),  # the focus ring (non-text, WCAG 1.4.11)
    ("line", "paper", 1.2),  # rules between rows: decoration only
    ("accent", "paper", 3.0),  # timeline marks (non-text)
    ("ink", "paper", 3.0),
    ("warn-ink", "paper", 3.0),
    ("ok", "paper", 3.0),
    ("danger", "paper", 3.0),
]


def colours() -> dict[str, str]:
    root = re.search(r":root\s*\{([^}]*)\}", CSS)
    assert root
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})\s*;", root.group(1)))


def luminance(hex_colour: str) -> float:
    """WCAG 2.1 relative luminance of an sRGB colour."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def ratio(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_the_formula_matches_known_ratios() -> None:
    assert ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert ratio("#ffffff", "#ffffff") == pytest.approx(1.0)


@pytest.mark.parametrize(("fg", "bg", "minimum"), PAIRS)
def test_each_pair_has_enough_contrast(fg: str, bg: str, minimum: float) -> None:
    c = colours()
    assert ratio(c[fg], c[bg]) >= minimum, (fg, bg, round(ratio(c[fg], c[bg]), 2))


def test_no_colour_is_used_outside_the_palette() -> None:
    """Every colour in a rule is one of the named ones above, so the pairs cover them all."""
    body = CSS.split("}", 1)[1]
    assert not re.findall(r"#[0-9a-fA-F]{3,8}\b|rgb\(|hsl\(", body)
    used = set(re.findall(r"var\(--([a-z-]+)\)", body))
    assert used <= set(colours())
    assert used <= {name for pair in PAIRS for name in pair[:2]}
