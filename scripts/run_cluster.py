"""The production topology on this machine: ``make run-cluster``.

Starts a throwaway PostgreSQL cluster, a moto server standing in for S3 and KMS, three
``gateway serve`` instances running ``config/production.toml`` (what differs here comes
from ``GATEWAY_*`` variables, as it would per machine), and nginx in front with the
shipped ``config/nginx.conf`` and a throwaway certificate. Prints the URL, the CA
certificate to trust and a token per role; Ctrl-C stops everything and removes the
directory (``--keep`` keeps it: logs, keys, nginx's files).

Everything listens on 127.0.0.1 only. The instances believe X-Forwarded-For from
127.0.0.1 (nginx here), so on this machine anyone who reaches an instance directly can
name any client address: the production profile names only the proxies' addresses.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers of this checkout

from tests import pg  # noqa: E402 - after the path
from tests.e2e import nginx  # noqa: E402
from tests.e2e.cluster import Cluster, cluster_env, start_moto, stop_process, storage_key  # noqa: E402


def _say(line: str) -> None:
    print(f"run-cluster: {line}", file=sys.stderr, flush=True)  # noqa: T201 - a script


def start(stack: ExitStack, root: Path, instances: int, port: int) -> tuple[Cluster, str, Path]:
    """Every component, each stopped by ``stack``; the cluster, nginx's URL and its CA file."""
    _say("starting PostgreSQL")
    database = pg.start_cluster()
    stack.callback(database.stop)
    url = database.create_database("gateway")
    _say("starting moto (S3, KMS)")
    moto, endpoint = start_moto(root / "moto.log")
    stack.callback(stop_process, moto)
    env = cluster_env(
        root,
        database_url=url,
        endpoint=endpoint,
        bucket="gateway-artifacts",
        kms_key_id=storage_key(endpoint),
        settings={"GATEWAY_SERVER_TRUSTED_PROXIES": "127.0.0.1"},
    )
    cluster = Cluster(root, env, "gateway-artifacts", endpoint)
    _say("gateway init, organisations and tokens")
    cluster.init()
    _say(f"starting {instances} gateway serve instances")
    stack.callback(cluster.stop)
    cluster.start(instances)
    cert = nginx.make_certificate(root / "tls")
    conf = nginx.render(
        port=port,
        cert=cert,
        upstreams=[f"127.0.0.1:{i.port}" for i in cluster.instances],
        run_dir=root / "nginx",
    )
    proxy = nginx.Nginx(root / "nginx", conf, port)
    _say("starting nginx")
    proxy.start()
    stack.callback(proxy.stop)
    return cluster, proxy.url, cert.ca


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--port", type=int, default=8443, help="nginx's port on 127.0.0.1")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="gateway-cluster-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with ExitStack() as stack:
            cluster, url, ca = start(stack, root, args.instances, args.port)
            print(f"url       {url}")  # noqa: T201 - the script's output
            print(f"ca-cert   {ca}")  # noqa: T201
            for short, token in cluster.tokens.items():
                print(f"{short:<9} {token}")  # noqa: T201
            for n, instance in enumerate(cluster.instances, 1):
                print(f"instance{n} {instance.url}  log {instance.log}")  # noqa: T201
            _say(
                f"hint: export GATEWAY_URL={url} REQUESTS_CA_BUNDLE={ca} GATEWAY_TOKEN=<a token>,"
                " then try `gateway whoami`; Ctrl-C stops everything"
            )
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
            _say("stopping")
    except (pg.ClusterUnavailable, nginx.NginxUnavailable, RuntimeError) as exc:
        _say(f"error: {exc}")
        return 1
    except subprocess.CalledProcessError as exc:
        _say(f"error: {' '.join(exc.cmd[-2:])} failed: {(exc.stderr or '').strip()}")
        return 1
    finally:
        if args.keep:
            _say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
