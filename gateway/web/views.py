"""The dashboard as its own WSGI application, mounted under ``/ui`` beside the API.

The dashboard is a Flask app of its own, sharing the gateway's :class:`~gateway.runtime.Runtime`
(so the same database, keys, clock and configuration), with the same per-request
middleware (request ids, metrics) and its own error pages. Mounted in front of the API's
app, it leaves the API's routes, its OpenAPI document and its problem+json handlers
exactly as they are, and every answer under ``/ui`` (a page that does not exist
included) is a page with the dashboard's security headers.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from gateway.api import middleware, screen
from gateway.web import access, artifacts, audit, auth, reports
from gateway.web.base import bp

PREFIX = "/ui"
PAGES = (auth, artifacts, access, audit, reports)
"""The modules whose views are on :data:`bp` (imported for that effect)."""


def create(parent: Flask) -> Flask:
    """The dashboard's app, carrying ``parent``'s runtime."""
    app = Flask("gateway.web", static_folder=None)
    app.extensions["gateway"] = parent.extensions["gateway"]
    middleware.init_app(app, parent.extensions["gateway"].config.limits)
    screen.init_forms(app)  # the dashboard's forms: small, url-encoded, screened
    # one count per client: the pages spend the same rate budgets as the API
    app.extensions["gateway.limits"] = parent.extensions["gateway.limits"]
    app.register_blueprint(bp)
    return app


def mount(parent: Flask) -> None:
    """Serve the dashboard under :data:`PREFIX` of ``parent`` (unless ``[web] enabled`` is off)."""
    if parent.extensions["gateway"].config.web.enabled:
        parent.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
            parent.wsgi_app, {PREFIX: create(parent)}
        )
