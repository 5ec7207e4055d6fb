"""HTTP to the gateway: one ``requests`` session, problem details turned into errors.

Every failure a user can meet (the server's RFC 9457 problem ``detail``, a refused
connection, a timeout) becomes an :class:`ApiError`, which the CLI prints as one line
``gateway: error: <detail>`` with a non-zero exit status. :func:`with_retries` retries
what is safe to retry (a transport failure, 408, 429, 5xx) with exponential backoff
and full jitter, so a flaky link costs time, not the transfer; a 429 waits what its
``Retry-After`` asks (up to :data:`MAX_RETRY_AFTER` seconds), and a gateway that refuses
connections outright is given up on within seconds (:data:`REFUSED_DELAY` at most
between tries), since a stopped server does not come back by itself.

TLS: ``verify`` is what every request is checked with: a CA file (``--ca-cert``), or
True for requests' own choice (``REQUESTS_CA_BUNDLE`` when set, else its CA bundle).
It is passed with each request, because requests lets ``REQUESTS_CA_BUNDLE`` override
a session's setting. A certificate that does not verify is one error naming
``--ca-cert``, never retried: waiting does not make it trusted.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from gateway.client.errors import ClientError
from gateway.client.refusals import in_words

log = logging.getLogger("gateway.client.http")
T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "gateway-client/0.1"
CONNECT_TIMEOUT = 10.0
MAX_RETRY_AFTER = 120.0
REFUSED_DELAY = 1.0


class ApiError(ClientError):
    """A request the gateway refused (``status``: the one it answered), or one that never
    reached it (``status`` 0)."""

    def __init__(
        self,
        detail: str,
        status: int = 0,
        problem: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
        refused: bool = False,
        hint: str | None = None,
        lasting: bool = False,
    ) -> None:
        super().__init__(detail, hint=hint)
        self.status = status
        self.problem_body = problem or {}
        self.retry_after = retry_after
        self.refused = refused
        self.lasting = lasting  # a failure no retry mends (a certificate not trusted)

    @property
    def retryable(self) -> bool:
        if self.lasting:
            return False
        return self.status == 0 or self.status in RETRYABLE_STATUS


def error_from(response: requests.Response) -> ApiError:
    """The error a non-2xx response stands for, with the server's ``detail`` when given."""
    problem: dict[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict):
            problem = body
    except ValueError:
        pass
    detail = problem.get("detail") or problem.get("title")
    if not detail:
        detail = f"{response.status_code} {response.reason or 'error'} from {response.request.method} {_path(response.url)}"
    return ApiError(
        in_words(str(detail)) if response.status_code == 403 else str(detail),
        status=response.status_code,
        problem=problem,
        retry_after=_seconds(response.headers.get("Retry-After")),
    )


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (its delta form; an HTTP date is taken as no advice)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


class Api:
    """A gateway endpoint with a bearer token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 60.0,
        session: requests.Session | None = None,
        pool: int = 8,
        verify: bool | str = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.verify = verify
        self.session = session or requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["User-Agent"] = USER_AGENT

    def close(self) -> None:
        self.session.close()

    def _tls_error(self, exc: requests.exceptions.SSLError) -> ApiError:
        """The one line for a TLS failure: an untrusted certificate names ``--ca-cert``."""
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" not in text:
            return ApiError(
                f"cannot reach the gateway at {self.url}: the TLS handshake failed",
                hint="if the gateway is served over plain HTTP, use an http:// URL",
                lasting=True,
            )
        why = _verify_reason(text)
        trusted = f"the CA in {self.verify}" if isinstance(self.verify, str) else "this machine"
        return ApiError(
            f"the server's TLS certificate is not trusted by {trusted} ({why}): {self.url}",
            hint="if the gateway's certificate is signed by your organisation's CA, give that "
            "CA's certificate with --ca-cert FILE (or GATEWAY_CA_CERT, or the profile's ca_cert)",
            lasting=True,
        )

    def request(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204), **kwargs: Any
    ) -> requests.Response:
        """Send one request; a status outside ``ok`` raises :class:`ApiError`."""
        kwargs.setdefault("timeout", (min(CONNECT_TIMEOUT, self.timeout), self.timeout))
        kwargs.setdefault("verify", self.verify)
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(exc) from None
        except requests.exceptions.ConnectionError as exc:
            reason = _reason(exc)
            raise ApiError(
                f"cannot reach the gateway at {self.url}: {reason}",
                refused=reason == "connection refused",
            ) from None
        except requests.exceptions.Timeout:
            raise ApiError(f"the gateway at {self.url} did not answer in time") from None
        except requests.exceptions.RequestException as exc:
            raise ApiError(f"request to {self.url} failed: {_reason(exc)}") from None
        log.debug("%s %s: %s", method, path, response.status_code)
        if response.status_code not in ok:
            try:
                raise error_from(response)
            finally:
                response.close()
        return response

    def json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.request(method, path, json=body, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the gateway sent a response that is not JSON for {path}") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.json("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.json("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> Any:
        return self.json("PUT", path, body)

    def delete(self, path: str) -> Any:
        """``DELETE path``; the answer's JSON (a 202 says what is still pending), or None."""
        response = self.request("DELETE", path, ok=(200, 202, 204))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def items(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list (``items`` and ``next_cursor``), 1000 a page."""
        params.setdefault("limit", 1000)
        cursor: str | None = None
        while True:
            page = self.get(path, cursor=cursor, **params)
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def text(self, path: str, **params: Any) -> str:
        return self.request("GET", path, params=params or None).text


def _verify_reason(text: str) -> str:
    """OpenSSL's reason, from requests' message ``... certificate verify failed: REASON (_ssl.c...)``."""
    _, _, after = text.partition("certificate verify failed: ")
    reason = after.split(" (_ssl.c", 1)[0].strip() if after else ""
    return reason[:120] or "certificate verify failed"


def _reason(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else exc.__class__.__name__
    if "Connection refused" in text:
        return "connection refused"
    return text.split(": ", 1)[-1][:200] if len(text) > 200 else text


def backoff_delays(
    attempts: int,
    base: float = 0.5,
    cap: float = 30.0,
    rng: Callable[[float, float], float] = random.uniform,
) -> Iterator[float]:
    """Delays before each retry: exponential with full jitter (0 to base * 2^n, capped)."""
    for n in range(attempts - 1):
        yield rng(0.0, min(cap, base * (2**n)))


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 6,
    base: float = 0.5,
    cap: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    retry_if: Callable[[ApiError], bool] = lambda e: e.retryable,
    on_retry: Callable[[ApiError, float], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying errors ``retry_if`` accepts, at most ``attempts`` times.

    A 429's ``Retry-After`` is waited for instead of the backoff (a longer one than
    :data:`MAX_RETRY_AFTER` ends the retries); a refused connection waits at most
    :data:`REFUSED_DELAY`, so a stopped gateway is reported within seconds.
    """
    delays = backoff_delays(attempts, base, cap)
    while True:
        try:
            return fn()
        except ApiError as exc:
            if not retry_if(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            if exc.retry_after is not None:
                if exc.retry_after > MAX_RETRY_AFTER:
                    raise
                delay = exc.retry_after
            elif exc.refused:
                delay = min(delay, REFUSED_DELAY)
            log.info("retrying in %.1f s: %s", delay, exc.detail)
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
