"""Whole directories as one archive stream: plan, tar writer, safe extractor, OMS."""
