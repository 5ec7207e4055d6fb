"""The application factory: it assembles, and does nothing else.

Defaults, then the configuration (given, or loaded from the file and the environment),
then the runtime, then the problem renderer and the per-request middleware (request ids,
rate limits), then the routing of integers (ASCII digits only), then one blueprint per area.
"""

from __future__ import annotations

from flask import Flask

from gateway.api import (
    access,
    artifacts,
    audit,
    content,
    identity,
    inputs,
    middleware,
    principals,
    problems,
    service,
    uploads,
)
from gateway.clock import Clock
from gateway.config import Config, load
from gateway.runtime import Runtime
from gateway.web import views as web

BLUEPRINTS = (service, identity, uploads, artifacts, access, content, audit, principals)


def create_app(
    config: Config | None = None, *, clock: Clock | None = None, runtime: Runtime | None = None
) -> Flask:
    """The app for ``config`` (else the one loaded from the file and the environment).

    ``runtime`` is the one to carry (tests share one with their fixtures); by default one is
    built from the configuration, with ``clock``.
    """
    config = config or load()
    app = Flask("gateway", static_folder=None)  # the gateway serves no static files
    app.config["MAX_CONTENT_LENGTH"] = None  # parts are large; each view bounds its own body
    app.json.sort_keys = False  # type: ignore[attr-defined]  # the provider has it; the base does not say
    app.extensions["gateway"] = runtime or Runtime(config, clock=clock)
    problems.init_app(app)
    middleware.init_app(app, config.limits)
    # Before the blueprints: a rule takes its converter when it is added.
    app.url_map.converters["int"] = inputs.AsciiIntConverter
    for module in BLUEPRINTS:
        app.register_blueprint(module.bp)
    web.mount(app)
    return app
