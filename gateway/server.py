"""``gateway serve``: gunicorn with threaded workers, and the periodic sweeper."""

from __future__ import annotations

import logging
import threading
from typing import Any

from gunicorn.app.base import BaseApplication

from gateway.config import Config
from gateway.edge import claim_descriptors
from gateway.worker import EdgeWorker

log = logging.getLogger("gateway.server")


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config) -> None:
        self.gateway_config = config
        super().__init__()

    def load_config(self) -> None:
        s = self.gateway_config.server
        settings = {
            "bind": f"{s.host}:{s.port}",
            "workers": s.workers,
            "threads": s.threads,
            # Our own gthread: heads and small bodies read in the event loop, every wait bounded.
            "worker_class": EdgeWorker.bound(s),
            "worker_connections": s.max_connections,
            # The master's heartbeat check: a worker silent this long is restarted.
            "timeout": s.timeout,
            "graceful_timeout": 30,
            "keepalive": s.idle_timeout_seconds,
            # gunicorn's own reading of X-Forwarded-Proto (wsgi.url_scheme): from the same
            # proxies the application believes (server.trusted_proxies), by default none.
            "forwarded_allow_ips": ",".join(s.trusted_proxies),
            # Responses go through the worker's send guard (timeouts, minimum rate), never sendfile.
            "sendfile": False,
            "loglevel": s.log_level,
            "accesslog": "-",
            # The access log must never carry secrets: method and path only (signed URLs carry one in the query).
            "access_log_format": '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s',
            "post_worker_init": _start_sweeper(self.gateway_config),
            "proc_name": "gateway",
        }
        if "control_socket_disable" in self.cfg.settings:  # gunicorn 27+: no control socket in ~/
            settings["control_socket_disable"] = True
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from gateway.app import create_app

        logging.basicConfig(
            level=self.gateway_config.server.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return create_app(self.gateway_config)


def _start_sweeper(config: Config) -> Any:
    """A sweeper thread and the log's integrator in each worker, started after the fork.

    Never in the forking master. Sweeps and integration rounds are transactional and run
    under leader locks, so several workers running them is harmless.
    """

    def post_worker_init(_worker: Any) -> None:
        from gateway.audit import integrator

        a = config.audit
        integrator.start(config.database.url, a.integrate_interval_ms, a.integrate_batch)
        interval = config.sweeper.interval_seconds
        if interval <= 0:
            return
        thread = threading.Thread(
            target=_sweep_forever, args=(config, interval), name="sweeper", daemon=True
        )
        thread.start()

    return post_worker_init


def _sweep_forever(config: Config, interval: int) -> None:
    from gateway.runtime import Runtime
    from gateway.sweeper import sweep_once

    gw = Runtime(config)
    stop = threading.Event()
    while not stop.wait(interval):
        try:
            report = sweep_once(gw)
            if any(report.values()):
                log.info("sweep: %s", ", ".join(f"{k}={v}" for k, v in report.items()))
        except Exception:  # noqa: BLE001 - the sweeper must outlive one bad sweep
            log.exception("sweep failed; retrying in %ss", interval)


def run(config: Config) -> None:
    """Serve until stopped; refuses to start when the process may open too few files."""
    claim_descriptors(config.server)
    _Server(config).run()
