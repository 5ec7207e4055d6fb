"""Fixtures for the shredding tests: the access tests' lab, evaluator, artifact and grant."""

from tests.services.conftest import evaluator, granted, lab, shared

__all__ = ["evaluator", "granted", "lab", "shared"]
