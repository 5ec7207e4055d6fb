"""CSRF protection of every dashboard form: Flask-WTF forms, tokens bound to the session.

Flask-WTF's own tokens live in Flask's cookie session, which the dashboard does not use
(nothing about a principal is kept in a cookie). So the forms here are Flask-WTF
``FlaskForm``\\ s whose CSRF class, plugged into WTForms' CSRF hook, does what Flask-WTF's
does (an ``itsdangerous`` timed signature of a per-session random value, compared in
constant time) with the value held server-side: the signed-in session's ``csrf_secret``,
or before sign-in the random value of the short-lived sign-in cookie. The signing key is
derived (HKDF) from the gateway's URL-signing key, so every worker and every restart
agrees on it and no further key file is needed.
"""

from __future__ import annotations

import hmac
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, g
from flask_wtf import FlaskForm
from itsdangerous import BadData, URLSafeTimedSerializer
from wtforms.csrf.core import CSRF
from wtforms.validators import ValidationError

from gateway.runtime import Runtime

_SALT = "gateway-web-csrf"
REFUSED = "this form has expired or did not come from this dashboard: reload the page and try again"


def signing_key(rt: Runtime) -> bytes:
    """The key CSRF tokens are signed with, derived from the URL-signing key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"gateway web csrf v1")
    return hkdf.derive(rt.url_key)


class SessionBoundCSRF(CSRF):  # type: ignore[misc]  # WTForms ships no types
    """A token is the timed signature of the value bound to the caller's session."""

    def setup_form(self, form: Any) -> Any:
        self.form_meta = form.meta
        return super().setup_form(form)

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.form_meta.csrf_secret, salt=_SALT)

    def generate_csrf_token(self, csrf_token_field: Any) -> str:
        return str(self._serializer().dumps(self.form_meta.csrf_context))

    def validate_csrf_token(self, form: Any, field: Any) -> None:
        bound = self.form_meta.csrf_context
        if not bound or not isinstance(field.data, str) or len(field.data) > 512:
            raise ValidationError(REFUSED)
        try:
            value = self._serializer().loads(field.data, max_age=self.form_meta.csrf_time_limit)
        except BadData:
            raise ValidationError(REFUSED) from None
        if not isinstance(value, str) or not hmac.compare_digest(value, bound):
            raise ValidationError(REFUSED)


class Form(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """Every dashboard form: Flask-WTF, with the session-bound CSRF token above."""

    class Meta:
        csrf = True
        csrf_class = SessionBoundCSRF
        csrf_field_name = "csrf_token"

        @property
        def csrf_secret(self) -> bytes:
            return signing_key(current_app.extensions["gateway"])

        @property
        def csrf_context(self) -> str | None:
            bound: str | None = g.get("csrf_bound")
            return bound

        @property
        def csrf_time_limit(self) -> int:
            seconds: int = g.get("csrf_seconds", 600)
            return seconds


class CsrfOnly(Form):
    """A form of nothing but its CSRF token: buttons (revoke, sign out) and the central check."""


def bind(value: str, seconds: int) -> None:
    """Bind this request's forms to ``value``, their tokens valid for ``seconds``."""
    g.csrf_bound, g.csrf_seconds = value, seconds


def check_post() -> bool:
    """Whether this POST carries a valid CSRF token for the caller's session."""
    return bool(g.get("csrf_bound")) and CsrfOnly().validate()
