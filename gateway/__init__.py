"""Secure model-artifact transfer gateway.

Labs upload age-encrypted model weights and credentials; evaluators receive the key,
re-headered to their own age recipient, under a time-limited grant approved by the
lab; every access is recorded in a signed, verifiable transparency log.
"""

__version__ = "0.1.0"
