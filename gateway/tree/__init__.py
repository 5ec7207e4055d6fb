"""Whole directories as one archive: a deterministic tar stream, a verifying extractor, OMS.

A model directory travels as the plaintext of one age file: a POSIX tar archive in a
fixed profile (:mod:`.tarfmt`), made from a validated plan of the tree (:mod:`.plan`,
names by :mod:`.names`), readable from any offset (:mod:`.writer`), and restored by an
extractor that writes only inside the target directory and names each file only once
its commitment matches the signed manifest (:mod:`.extract`, strict parsing in
:mod:`.tarread`, resume journal in :mod:`.journal`). The commitments are the caller's
hashers (:mod:`.commit`); OpenSSF Model Signing lives in :mod:`.oms`. Nothing here
talks to the gateway.

Entry points for ``gateway push DIR`` (the lab)::

    plan = plan_tree(DIR)                            # PlanError names a refused path
    oms.find_signature(plan)                         # model.sig inside: record it
    oms.sign_directory(DIR, KEY)                     # --oms-key, before plan_tree
    size = archive_size(plan)                        # plaintext size of the age file
    src, pieces = age_file_from(plan, aead, header + nonce, offset,
                                commit=commit, on_file=keep)
    ...send pieces: the age file from byte ``offset`` (0, or where the first part the
       gateway lacks begins), e.g. send_parts numbering from that part...
    src.close()                                      # src.commitments now complete
    (seal_tree(plan, aead, start_chunk=c, ...) gives the bare STREAM from chunk c.)
    files = file_entries(plan.members, commitments)  # the manifest's files list
    whole = archive_commitment(plan.members, commitments, hasher)

    Keep ``plan.to_json()`` and each ``on_file`` commitment in the push state: a resume
    re-plans, compares ``fingerprint()``, and starts at the first chunk the gateway
    lacks without reading any file before it (commitments of earlier files come from
    the state; a file cut by the restart is read once more from its start, only hashed).

Entry points for ``gateway pull ART -o DIR`` (the evaluator)::

    c = resume_chunk(DIR)                            # 0, or where an interrupted one stops
    pieces = <STREAM plaintext from chunk c>         # Payload.unseal_from(src, c)
    extract_payload(pieces, DIR, files, commit, start_chunk=c,
                    archive=ArchiveCheck(whole, hasher))
    oms.verify_directory(DIR, material)              # when the manifest says model.sig

    A decryptor that writes to a file object (``pull.Decrypting`` writes to its sink)
    takes an :class:`ExtractSink` instead: ``sink = ExtractSink(DIR, files, commit,
    start_chunk=c, archive=...)``, then ``sink.close()`` (the result, or the refusal) or,
    when the download fails for good, ``sink.abort()`` (resumable).

(:func:`gateway.tree.extract.extract` takes any ``readinto`` source; the package does
not re-export it, so ``gateway.tree.extract`` stays the module.)

Errors are :class:`TreeError` subclasses with a one-line ``detail`` for
``gateway: error: ...`` and the member in ``path``.
"""

from gateway.tree import oms
from gateway.tree.commit import (
    Commit,
    FileEntry,
    Hasher,
    Transcript,
    archive_commitment,
    file_entries,
)
from gateway.tree.errors import (
    BadName,
    CommitmentMismatch,
    ExtractError,
    FileChanged,
    OmsError,
    PlanError,
    ResumeError,
    TreeError,
)
from gateway.tree.extract import ArchiveCheck, Extracted, restart_offset
from gateway.tree.plan import Identity, Member, Plan, plan_tree
from gateway.tree.sink import ExtractSink
from gateway.tree.transfer import (
    age_file_from,
    archive_size,
    extract_payload,
    resume_chunk,
    seal_tree,
)
from gateway.tree.writer import TarStream

__all__ = [
    "ArchiveCheck",
    "BadName",
    "Commit",
    "CommitmentMismatch",
    "ExtractError",
    "ExtractSink",
    "Extracted",
    "FileChanged",
    "FileEntry",
    "Hasher",
    "Identity",
    "Member",
    "OmsError",
    "Plan",
    "PlanError",
    "ResumeError",
    "TarStream",
    "Transcript",
    "TreeError",
    "archive_commitment",
    "age_file_from",
    "archive_size",
    "extract_payload",
    "file_entries",
    "oms",
    "plan_tree",
    "restart_offset",
    "resume_chunk",
    "seal_tree",
]
