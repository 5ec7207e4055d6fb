"""Signing in and out, and the landing page of each role."""

from __future__ import annotations

import secrets

from flask import g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from gateway import metrics
from gateway.api.context import runtime
from gateway.errors import Unauthorized
from gateway.models import Role
from gateway.web import csrf, forms, sessions
from gateway.web.base import (
    SECURE_SESSION_COOKIE,
    SECURE_SIGN_IN_COOKIE,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    bp,
    caller,
    clear_cookie,
    cookie_name,
    render,
    set_cookie,
)

HOME: dict[str, str] = {
    Role.LAB: "web.artifacts_index",
    Role.EVALUATOR: "web.artifacts_index",
    Role.AUDITOR: "web.audit",
    Role.ADMIN: "web.grants",
}


def _next_path() -> str:
    """Where to go after signing in: a path of this dashboard only (never another site)."""
    wanted = request.values.get("next", "")
    prefix = request.script_root + "/"
    if wanted.startswith(prefix) and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return url_for("web.home")


@bp.get("/")
def home() -> ResponseReturnValue:
    return redirect(url_for(HOME.get(caller().actor.role, "web.artifacts_index")))


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    rt = runtime()
    seconds = rt.config.web.sign_in_minutes * 60
    bound = request.cookies.get(cookie_name(SIGN_IN_COOKIE, SECURE_SIGN_IN_COOKIE), "")
    fresh = request.method == "GET" or not bound
    if fresh:
        bound = secrets.token_urlsafe(32)
    csrf.bind(bound, seconds)
    form = forms.SignIn()
    status, error = 200, None
    if request.method == "POST":
        if not form.validate():
            status, error = 400, forms.first_error(form) or csrf.REFUSED
        else:
            try:
                secret, _live = sessions.start(rt, form.token.data or "")
            except Unauthorized as exc:
                metrics.UNAUTHENTICATED.inc()
                status, error = 401, exc.detail
            else:
                response = redirect(_next_path(), code=303)
                set_cookie(
                    response,
                    SESSION_COOKIE,
                    SECURE_SESSION_COOKIE,
                    secret,
                    rt.config.web.absolute_hours * 3600,
                )
                clear_cookie(response, SIGN_IN_COOKIE, SECURE_SIGN_IN_COOKIE)
                return response
    form.token.data = ""  # never echo a token back into the page
    page = render(
        "sign_in.html", status, form=form, error=error, next=request.values.get("next", "")
    )
    if fresh:
        set_cookie(page, SIGN_IN_COOKIE, SECURE_SIGN_IN_COOKIE, bound, seconds)
    return page


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    sessions.end(runtime(), g.web_session)
    response = redirect(url_for("web.sign_in"), code=303)
    clear_cookie(response, SESSION_COOKIE, SECURE_SESSION_COOKIE)
    return response
