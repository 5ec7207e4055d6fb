"""Problem details become one-line errors; retries back off and stop where they should."""

from __future__ import annotations

import time

import pytest

from gateway.client.http import Api, ApiError, backoff_delays, with_retries
from tests.client.fakeserver import PartStore, serving


def test_backoff_grows_exponentially_with_a_cap() -> None:
    top = list(backoff_delays(6, base=0.5, cap=3.0, rng=lambda lo, hi: hi))
    assert top == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(0 <= d <= 3.0 for d in backoff_delays(50, base=0.5, cap=3.0))


def test_retries_transient_errors_then_succeeds() -> None:
    calls, slept = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ApiError("busy", status=503)
        return "done"

    assert with_retries(flaky, sleep=slept.append) == "done"
    assert len(calls) == 3 and len(slept) == 2


def test_gives_up_after_the_last_attempt() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise ApiError("cannot reach the gateway", status=0)

    with pytest.raises(ApiError, match="cannot reach"):
        with_retries(down, attempts=4, sleep=lambda s: None)
    assert len(calls) == 4


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise ApiError("no", status=status)

    with pytest.raises(ApiError):
        with_retries(refused, sleep=lambda s: None)
    assert len(calls) == 1


def test_problem_detail_is_the_message() -> None:
    store = PartStore(faults={7: ["403"]})
    with serving(store) as url:
        api = Api(url, "t")
        with pytest.raises(ApiError) as info:
            api.request(
                "PUT", "/v1/uploads/u1/parts/7", data=b"x", headers={"X-Content-SHA256": "0"}
            )
    assert info.value.diagnostics() == "upload u1 is not yours" and info.value.status == 403


def test_unreachable_gateway_is_one_line() -> None:
    api = Api("http://127.0.0.1:9", "t", timeout=2)
    with pytest.raises(
        ApiError, match=r"cannot reach the gateway at http://127\.0\.0\.1:9"
    ) as info:
        api.get("/v1/me")
    assert info.value.retryable and "\n" not in str(info.value)


def test_a_429_waits_what_retry_after_asks_and_no_longer_than_the_bound() -> None:
    from gateway.client.http import MAX_RETRY_AFTER

    calls, slept = [], []

    def limited() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ApiError("slow down", status=429, retry_after=3)
        return "done"

    assert with_retries(limited, sleep=slept.append) == "done"
    assert slept == [3, 3]

    def far_off() -> None:
        raise ApiError("come back tomorrow", status=429, retry_after=MAX_RETRY_AFTER + 1)

    waited: list[float] = []
    with pytest.raises(ApiError, match="tomorrow"):
        with_retries(far_off, sleep=waited.append)
    assert waited == [], "a wait past the bound is not waited for"


def test_a_gateway_that_refuses_connections_is_given_up_on_within_seconds() -> None:
    slept: list[float] = []
    api = Api("http://127.0.0.1:9", "t", timeout=2)
    with pytest.raises(ApiError, match="connection refused") as info:
        with_retries(lambda: api.get("/v1/me"), attempts=8, base=4.0, sleep=slept.append)
    assert info.value.refused and len(slept) == 7
    assert max(slept) <= 1.0 and sum(slept) <= 7.0, slept


def test_a_part_refused_with_429_is_sent_again_after_retry_after() -> None:
    from gateway.client.parts import PartSender

    store = PartStore(faults={1: ["429"]})
    with serving(store) as url:
        sender = PartSender(Api(url, "t"), "u1", {}, lambda n: None, backoff=0.01)
        started = time.monotonic()
        sender.send(1, memoryview(b"part one"))
        took = time.monotonic() - started
    assert store.attempts[1] == 2 and store.parts[1] == b"part one"
    assert took >= 0.9, "it waited the second the gateway asked for"
