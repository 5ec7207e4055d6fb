"""Audit commands: tail, checkpoint, export, verify."""

from __future__ import annotations

import click


@click.group("audit")
def audit_group() -> None:
    """Read and verify the signed transparency log."""
