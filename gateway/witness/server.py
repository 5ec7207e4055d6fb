"""``gateway witness serve``: the witness's WSGI app under gunicorn.

Why gunicorn rather than ``http.server``: the spec asks witnesses to support HTTP keep-alive;
a witness faces the network, so it needs request-line and header limits and a graceful stop
on SIGTERM, which gunicorn gives and the stdlib server does not; and operators already run
the gateway this way. gunicorn's gthread worker waits on a slow client without a timeout, so
the witness runs its own subclass (:mod:`gateway.witness.worker`), which bounds every read and
write and each request's whole arrival. Correctness does not depend on the server model:
every log's state is serialised by a thread lock and an ``flock``
(:mod:`gateway.witness.state`), so any number of threads or workers is safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from gateway.audit.cosignature import load_cosigners
from gateway.witness.app import WitnessApp
from gateway.witness.core import Witness
from gateway.witness.loglist import parse_log_list
from gateway.witness.state import StateDir
from gateway.witness.worker import worker_class


@dataclass(frozen=True)
class ServeOptions:
    key: Path
    state: Path
    logs: Path
    host: str = "127.0.0.1"
    port: int = 7380
    workers: int = 1
    threads: int = 4
    timeout: int = 30
    max_body: int = 256 * 1024
    request_timeout: int = 10  # seconds a client has to send a whole request
    io_timeout: int = 5  # seconds any one read from or write to a client may wait
    log_level: str = "info"


def build_app(options: ServeOptions) -> Any:
    """The witness app for ``options``: keys, log list and state loaded, or an error raised."""
    witness = Witness(
        load_cosigners(options.key),
        parse_log_list(options.logs.read_bytes()),
        StateDir(options.state),
    )
    return WitnessApp(witness, options.max_body)


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        o = self.options
        settings = {
            "bind": f"{o.host}:{o.port}",
            "workers": o.workers,
            "threads": o.threads,
            "worker_class": worker_class(o.io_timeout, o.request_timeout),
            "timeout": o.timeout,
            "graceful_timeout": 10,
            "keepalive": 30,
            "loglevel": o.log_level,
            "accesslog": "-",
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss',
            "proc_name": "gateway-witness",
            "limit_request_line": 4096,
            "limit_request_fields": 50,
        }
        if "control_socket_disable" in self.cfg.settings:  # gunicorn 27+: no control socket in ~/
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        logging.basicConfig(
            level=self.options.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return build_app(self.options)


def run(options: ServeOptions) -> None:
    worker_class(options.io_timeout, options.request_timeout)  # fail before forking, too
    build_app(options)  # fail before forking, with the reason, if keys or the log list are bad
    _Server(options).run()
