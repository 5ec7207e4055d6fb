"""The audit log: a signed RFC 6962 transparency log of every access.

- :mod:`gateway.audit.merkle`: pure tree math (hashes, node ids, proof verification).
- :mod:`gateway.audit.note`: C2SP signed notes and tlog-checkpoints (Ed25519 signer/verifier).
- :mod:`gateway.audit.store`: the log in the metadata database (append, proofs, checkpoints).
- :mod:`gateway.audit.verify`: offline verification of an exported log by an auditor.
"""
