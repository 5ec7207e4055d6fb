"""``python -m gateway.witness``: the same commands as ``gateway witness``."""

from gateway.witness.cli import main

main()
