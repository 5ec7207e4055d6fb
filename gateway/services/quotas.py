"""Quotas: what one organisation may hold in open uploads, and the disk's free-space floor.

Per organisation (``[quotas]``):

- ``open_uploads_per_org``: uploads in state ``open`` (timed-out ones count until the
  sweeper ends them: their parts are still on the disk);
- ``in_flight_gib_per_org``: the bytes in flight, the sum over the org's open uploads of
  the declared ``size`` when one was declared (it is what the upload will take), else of
  the sizes of the parts received so far.

And for everyone, ``min_free_mib``: the free space the volume of the local object store
(``storage.root``) and, with SQLite, the database's volume keep. A part is refused when
storing it would leave less than that, and an upload is not opened below it, so the disk
never fills under the audit log (a full disk would make every audited action fail closed).

Past any of them the answer is 507 and nothing is stored. The checks are made before the
upload or the part is, in a read of their own: requests racing past a check at the same
moment can overshoot a quota by at most the parts they carry.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.errors import InsufficientStorage, PayloadTooLarge
from gateway.models import Upload, UploadPart, UploadState
from gateway.runtime import Runtime
from gateway.storage import MAX_PART_SIZE

GIB, MIB = 1 << 30, 1 << 20


def open_uploads(session: Session, org: str) -> int:
    """How many uploads ``org`` has open."""
    query = select(func.count()).where(Upload.org == org, Upload.state == UploadState.OPEN)
    return int(session.scalar(query) or 0)


def in_flight(session: Session, org: str) -> int:
    """``org``'s bytes in flight, as defined at the top."""
    received = (
        select(func.coalesce(func.sum(UploadPart.size), 0))
        .where(UploadPart.upload_id == Upload.id)
        .scalar_subquery()
    )
    query = select(func.coalesce(func.sum(func.coalesce(Upload.expected_size, received)), 0))
    query = query.where(Upload.org == org, Upload.state == UploadState.OPEN)
    return int(session.scalar(query) or 0)


def volumes(rt: Runtime) -> list[Path]:
    """The directories whose volumes must keep the floor: the local store's, SQLite's."""
    found = []
    if rt.config.storage.backend == "local":
        found.append(Path(rt.config.storage.root))
    url = make_url(rt.config.database.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        found.append(Path(str(url.database)).parent)
    return found


def free_bytes(path: Path) -> int:
    """Free space on ``path``'s volume (the nearest existing parent, if it is not made yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _refuse(quota: str, detail: str) -> InsufficientStorage:
    metrics.QUOTA_REFUSALS.labels(quota).inc()
    return InsufficientStorage(detail, quota=quota)


def check_floor(rt: Runtime, incoming: int) -> None:
    """507 if storing ``incoming`` more bytes would leave any volume below the floor."""
    floor = rt.config.quotas.min_free_mib * MIB
    for path in volumes(rt):
        if free_bytes(path) - incoming < floor:
            raise _refuse(
                "free_space",
                f"the gateway's storage is below its free-space floor ({floor // MIB} MiB); "
                "nothing was stored, try again later",
            )


def check_create(rt: Runtime, org: str, size: int | None) -> None:
    """Before an upload of ``org`` is opened (``size`` as declared): 507 past a quota or the floor.

    A declared size past the in-flight quota on its own is 413: no wait would admit it.
    """
    q = rt.config.quotas
    with rt.db.session() as session:
        count, flying = open_uploads(session, org), in_flight(session, org)
    if count >= q.open_uploads_per_org:
        raise _refuse(
            "open_uploads",
            f"organisation {org} has {count} open uploads, its quota; complete or abort one first",
        )
    if size is not None and _fits_an_upload(rt, size):  # else the upload refuses it: 422
        if size > q.in_flight_gib_per_org * GIB:  # never, whatever else completes: not a 507
            raise PayloadTooLarge(
                f"an upload of {size} bytes is larger than organisation {org}'s quota of "
                f"{q.in_flight_gib_per_org} GiB in open uploads, so it can never be accepted"
            )
        _check_in_flight(org, flying, size, q.in_flight_gib_per_org)
    check_floor(rt, 0)


def _fits_an_upload(rt: Runtime, size: int) -> bool:
    parts = rt.config.uploads.max_parts
    return math.ceil(size / parts / MIB) * MIB <= MAX_PART_SIZE


def check_part(rt: Runtime, upload: Upload, number: int, length: int) -> None:
    """Before part ``number`` (``length`` bytes) of ``upload`` is stored: 507 past a quota or the floor."""
    if upload.expected_size is None:
        with rt.db.session() as session:
            flying = in_flight(session, upload.org)
            old = session.get(UploadPart, (upload.id, number))
        replaced = old.size if old is not None else 0
        quota = rt.config.quotas.in_flight_gib_per_org
        _check_in_flight(upload.org, flying, length - replaced, quota)
    check_floor(rt, length)


def _check_in_flight(org: str, flying: int, more: int, quota_gib: int) -> None:
    if flying + more > quota_gib * GIB:
        raise _refuse(
            "bytes_in_flight",
            f"organisation {org} would have {flying + more} bytes in open uploads, past its "
            f"quota of {quota_gib} GiB; complete or abort an upload first",
        )
