"""The audit log: a signed RFC 6962 transparency log of every access.

- :mod:`gateway.audit.merkle`: pure tree math. ``leaf_hash``, ``node_hash``, ``empty_root``;
  ``root_nodes(size)``, ``inclusion_nodes(index, size)``, ``consistency_nodes(old, new)`` name
  the stored subtrees a root or proof needs (``ProofNodes.rehash`` folds the right border);
  ``verify_inclusion(index, size, leaf_hash, proof, root)``,
  ``verify_consistency(size1, size2, proof, root1, root2)`` and ``root_from_inclusion`` raise
  ``ProofError``.
- :mod:`gateway.audit.leaf`: the entry format (canonical JSON leaf bytes).
- :mod:`gateway.audit.note`: C2SP signed notes and tlog-checkpoints. ``Signer`` (``.verifier_key``),
  ``create_signer_file`` / ``load_signer`` (``keys/audit-signing.key``), ``sign_note``,
  ``open_note``, ``parse_verifier_key``, ``Checkpoint``, ``format_checkpoint``,
  ``parse_checkpoint``, ``sign_checkpoint``, ``open_checkpoint``; errors derive from ``NoteError``.
- :mod:`gateway.audit.store`: the log in the metadata database. ``append`` (in the caller's
  transaction), ``size``, ``root``, ``inclusion_proof``, ``consistency_proof``, ``entries``,
  ``leaf``, ``iter_leaves``, ``checkpoint``, ``sign_checkpoint``, ``export``.
- :mod:`gateway.audit.verify`: offline verification by auditors. ``verify_export``,
  ``verify_log`` return a ``Verdict``; ``export_lines`` / ``read_export`` / ``iter_export``
  write and read the JSON Lines export.
"""
