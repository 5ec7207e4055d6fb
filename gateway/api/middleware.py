"""Per request: its id, metadata and address budget before the view; headers on the answer.

The request id is always the gateway's own (``req_`` and 96 random bits): every answer
carries it in ``X-Request-Id``, and every audit entry of the request in ``request_id``
(through :class:`gateway.events.ClientRequest`). A client may name its request too
(``X-Request-Id``, up to 64 characters of ``[A-Za-z0-9._-]``): that name is kept in each
entry's ``details.client_request_id`` and echoed in ``X-Client-Request-Id``, never
taken as the gateway's id (one client could otherwise reuse another's). A name that does
not fit is ignored.

Before anything else, the request counts against its client address's rate budget
(:mod:`gateway.limits`); an authenticated one then counts against its principal's too
(:func:`gateway.api.context.authenticate_request`).

Behind a proxy (``server.trusted_proxies``), the client's address is the one the proxy
passes on in ``X-Forwarded-For`` (and the scheme its ``X-Forwarded-Proto``), believed only
when the request's peer is one of those proxies (:class:`TrustedProxies`); from any other
peer those headers are ignored, so no client can choose the address its entries carry or
the rate budget it counts against.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway import metrics
from gateway.api import screen
from gateway.caller import RequestMeta
from gateway.config import LimitsConfig
from gateway.events import ClientRequest
from gateway.limits import ADDRESS, RateLimits, budget_of

_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Views whose requests carry no principal's token: a signed URL is its own credential.
BEARERLESS = frozenset({"content.signed"})
CLIENT_ID_HEADER = "X-Client-Request-Id"

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class TrustedProxies:
    """WSGI: ``X-Forwarded-For`` and ``-Proto`` applied only when the peer is a trusted proxy.

    From a trusted peer, the last ``X-Forwarded-For`` value (the one that proxy added:
    anything before it came from the client) becomes ``REMOTE_ADDR``
    (werkzeug's ``ProxyFix``, one hop). From any other peer the request passes unchanged.
    """

    def __init__(self, app: WSGIApplication, proxies: Iterable[str]) -> None:
        self.app = app
        self.networks = tuple(ipaddress.ip_network(p) for p in proxies)
        self.behind_proxy = ProxyFix(app, x_for=1, x_proto=1)

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` (a ``REMOTE_ADDR``) is one of the trusted proxies."""
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.trusts(environ.get("REMOTE_ADDR")):
            return self.behind_proxy(environ, start_response)
        return self.app(environ, start_response)


def request_meta() -> RequestMeta:
    """The current request's metadata (set before any view runs)."""
    meta: RequestMeta = g.meta
    return meta


def rate_limits() -> RateLimits:
    found: RateLimits = current_app.extensions["gateway.limits"]
    return found


def budget() -> str:
    """The rate budget the current request counts against."""
    return budget_of(request.method, request.endpoint)


def _begin() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.meta = ClientRequest(
        request_id="req_" + secrets.token_hex(12),
        ip=request.remote_addr,
        client_request_id=given if _CLIENT_ID.fullmatch(given) else None,
        bearerless=request.endpoint in BEARERLESS,
    )
    rate_limits().hit(ADDRESS, budget(), request.remote_addr or "-")


def _finish(response: Response) -> Response:
    meta: RequestMeta | None = g.get("meta")
    response.headers["X-Request-Id"] = meta.request_id if meta is not None else ""
    if isinstance(meta, ClientRequest) and meta.client_request_id is not None:
        response.headers[CLIENT_ID_HEADER] = meta.client_request_id
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    metrics.observe_response(request, response)
    return response


def init_app(app: Flask, limits: LimitsConfig) -> None:
    proxies = app.extensions["gateway"].config.server.trusted_proxies
    if proxies:
        app.wsgi_app = TrustedProxies(app.wsgi_app, proxies)  # type: ignore[method-assign]
    app.extensions["gateway.limits"] = RateLimits(limits)
    app.before_request(_begin)
    screen.init_app(app)  # every string a route takes, checked once for all
    app.after_request(_finish)
