"""Turning what people type and read into what the gateway knows, and back.

- :class:`Names` turns principal ids into ``name@org`` with one batch lookup
  (``GET /v1/principals?id=...``) per hundred ids, within what the caller may see; an id
  it may not see (or a gateway without that route) stays an id.
- :func:`resolve` turns a short id (``art_948e968d``, as tables print them) back into
  the whole id, among the objects of that kind the caller can list, the way git takes a
  unique prefix of a commit; a whole id is passed through untouched, unlisted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.client import humane
from gateway.client.errors import InvocationError
from gateway.client.http import Api, ApiError

BATCH = 100
LISTS = {
    "art": ("/v1/artifacts", "artifact"),
    "req": ("/v1/access-requests", "access request"),
    "grt": ("/v1/grants", "grant"),
}


class Names:
    """``name@org`` for principal ids, fetched in batches and kept."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.known: dict[str, str] = {}

    def load(self, ids: Iterable[object]) -> Names:
        wanted = [i for i in dict.fromkeys(ids) if isinstance(i, str) and i.startswith("prn_")]
        wanted = [i for i in wanted if i not in self.known]
        for start in range(0, len(wanted), BATCH):
            try:
                page = self.api.get("/v1/principals", id=wanted[start : start + BATCH])
            except ApiError as exc:
                if exc.status in (400, 403, 404, 405):  # an older gateway, or none visible
                    return self
                raise
            for item in page.get("items", []):
                self.known[str(item["id"])] = f"{item['name']}@{item['org']}"
        return self

    def __call__(self, principal: object) -> object:
        """The name of ``principal``, or the id itself when it cannot be named."""
        return self.known.get(principal, principal) if isinstance(principal, str) else principal


def artifact_names(api: Api) -> dict[str, str]:
    """Every artifact the caller can see: id to name."""
    return {str(a["id"]): str(a.get("name")) for a in api.items("/v1/artifacts")}


def resolve(api: Api, value: str, kind: str) -> str:
    """The whole id that ``value`` (a whole id, or a unique prefix of one) stands for."""
    if humane.ID.match(value) or not re.match(rf"^{kind}_[0-9a-f]{{4,19}}$", value):
        return value
    path, what = LISTS[kind]
    matches = [str(item["id"]) for item in api.items(path) if str(item["id"]).startswith(value)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InvocationError(f"no {what} you can see has an id starting with {value}")
    raise InvocationError(
        f"{value} is the start of {len(matches)} {what} ids: {', '.join(sorted(matches)[:4])}",
        hint="give more of the id",
    )
