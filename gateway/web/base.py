"""The dashboard's blueprint: sessions in, security headers out, errors as pages.

Before every view: the session cookie becomes
the request's :class:`~gateway.caller.Caller`, built as the API builds it (the actor, and
the request id and address of :mod:`gateway.api.middleware`); a POST must carry a valid
CSRF token (else 400, nothing done). After every answer: the security headers. Errors the
services raise are rendered as a page with the same status and detail the API would give.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from gateway import metrics
from gateway.api.context import runtime
from gateway.api.middleware import request_meta
from gateway.caller import Caller
from gateway.errors import BadRequest, GatewayError, Unauthorized
from gateway.paging import PageRequest
from gateway.web import csrf, present, sessions

log = logging.getLogger("gateway.web")

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

SESSION_COOKIE, SECURE_SESSION_COOKIE = "gw_session", "__Host-gw_session"
SIGN_IN_COOKIE, SECURE_SIGN_IN_COOKIE = "gw_sign_in", "__Host-gw_sign_in"
PUBLIC = frozenset({"web.sign_in", "web.static"})

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def secure() -> bool:
    """Whether cookies must be ``Secure`` (and ``__Host-``): TLS here, or a TLS proxy in front."""
    return request.is_secure or runtime().config.web.behind_tls_proxy


def cookie_name(plain: str, prefixed: str) -> str:
    return prefixed if secure() else plain


def set_cookie(response: BaseResponse, plain: str, prefixed: str, value: str, seconds: int) -> None:
    """An ``HttpOnly``, ``SameSite=Strict`` cookie; ``Secure`` and ``__Host-`` behind TLS."""
    response.set_cookie(
        cookie_name(plain, prefixed),
        value,
        max_age=seconds,
        path="/" if secure() else request.script_root or "/",
        secure=secure(),
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(response: BaseResponse, plain: str, prefixed: str) -> None:
    response.delete_cookie(
        cookie_name(plain, prefixed),
        path="/" if secure() else request.script_root or "/",
        secure=secure(),
        httponly=True,
        samesite="Strict",
    )


def caller() -> Caller:
    """The signed-in caller of this request (set before the view ran)."""
    who: Caller = g.caller
    return who


def page_request() -> PageRequest:
    """The page a list view shows: ``[web] page_size`` rows after ``?cursor=``."""
    cursor = request.args.get("cursor") or None
    return PageRequest(runtime().config.web.page_size, cursor)


def render(template: str, code: int = 200, **context: Any) -> Response:
    rt = runtime()
    response = Response(
        render_template(template, now=rt.now(), present=present, **context),
        status=code,
        mimetype="text/html",
    )
    return response


@bp.context_processor
def _helpers() -> dict[str, Any]:
    def csrf_field() -> Markup:
        """The hidden CSRF input of a form that has no other fields (a button)."""
        return Markup(str(csrf.CsrfOnly().csrf_token))  # noqa: S704 - WTForms escapes its own input

    def next_url(cursor: str) -> str:
        """This page with the same filters, at ``cursor``."""
        values: dict[str, Any] = {k: v for k, v in request.args.items() if k != "cursor" and v}
        values.update(request.view_args or {})
        values["cursor"] = cursor
        return url_for(request.endpoint or "web.home", **values)

    return {"csrf_field": csrf_field, "next_url": next_url}


@bp.before_request
def _begin() -> ResponseReturnValue | None:
    rt = runtime()
    if request.endpoint in PUBLIC:
        return None
    try:
        live = sessions.resume(
            rt, request.cookies.get(cookie_name(SESSION_COOKIE, SECURE_SESSION_COOKIE))
        )
    except Unauthorized:
        metrics.UNAUTHENTICATED.inc()
        if request.method == "GET":
            here = request.script_root + request.full_path.rstrip("?")
            return redirect(url_for("web.sign_in", next=here))
        raise
    g.caller = Caller(live.actor, request_meta())
    g.web_session = live.id
    csrf.bind(live.csrf_secret, rt.config.web.idle_minutes * 60)
    if request.method == "POST" and not csrf.check_post():
        raise BadRequest(csrf.REFUSED)
    return None


@bp.after_app_request
def _headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers[name] = value
    return response


@bp.app_errorhandler(GatewayError)
def _gateway_error(exc: GatewayError) -> ResponseReturnValue:
    if exc.status >= 500:
        log.error("request %s failed: %s", request_meta().request_id, exc.detail)
    response = render(
        "error.html", exc.status, status=exc.status, title=exc.title, detail=exc.detail
    )
    for name, value in exc.headers.items():
        if name != "WWW-Authenticate":
            response.headers[name] = value
    return response


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    status = exc.code or 500
    detail = f"no page {request.script_root}{request.path}" if status == 404 else exc.description
    return render("error.html", status, status=status, title=exc.name, detail=detail)


@bp.app_errorhandler(Exception)
def _unexpected(exc: Exception) -> ResponseReturnValue:
    request_id = request_meta().request_id
    log.exception("request %s failed unexpectedly", request_id, exc_info=exc)
    detail = f"an internal error occurred; quote request id {request_id}"
    return render("error.html", 500, status=500, title="Internal error", detail=detail)
