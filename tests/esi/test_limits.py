"""The shared budget, 429s, the error limit, bad headers and Redis outages, over real HTTP."""

from __future__ import annotations

import logging
import threading

import pytest

from esi_views.deferral import deferring
from esi_views.esi import (
    EsiErrorLimitedError,
    EsiLimiterUnavailableError,
    EsiRateLimitedError,
    EsiResponseError,
    limiter,
    public,
    signals,
)
from esi_views.esi.testing_support import clear_client_state

SKILLS = "esi-skills.read_skills.v1"
WALLET = "esi-wallet.read_character_wallet.v1"
SKILLS_PATH = "/characters/{character_id}/skills/"
WALLET_PATH = "/characters/{character_id}/wallet/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(fake_esi, esi_token):
    return esi_token(character_id=90000001, scopes=[SKILLS, WALLET])


@pytest.fixture
def no_wait(settings):
    settings.ESI_MAX_WAIT = 0.0


def wallet(session):
    return session.get(WALLET_PATH, character_id=90000001)


def test_one_round_trip_to_reserve(token, fake_esi):
    session = token.esi()
    wallet(session)  # learns the group
    before = dict(limiter.round_trips)
    for _ in range(5):
        wallet(session)
    assert limiter.round_trips["reserve"] - before.get("reserve", 0) == 5


def test_threads_share_the_budget_without_429(token, fake_esi, settings):
    fake_esi.set_limit("char-wallet", 24, window=2)
    settings.ESI_MAX_WAIT = 30.0
    settings.ESI_HEADROOM = 0.0
    session = token.esi()
    wallet(session)
    errors = []

    def work():
        try:
            for _ in range(6):
                wallet(session)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert fake_esi.calls["status:429"] == 0
    assert fake_esi.calls["/characters/{character_id}/wallet"] == 37


def test_spent_bucket_raises_when_the_wait_is_long(token, fake_esi, no_wait):
    fake_esi.set_limit("char-wallet", 10, window=2)
    session = token.esi()
    with pytest.raises(EsiRateLimitedError) as caught:
        for _ in range(20):
            wallet(session)
    assert caught.value.group == "char-wallet"
    assert 0 < caught.value.retry_after <= 2.1
    assert fake_esi.calls["status:429"] == 0


def test_deferring_raises_at_once(token, fake_esi, settings):
    settings.ESI_MAX_WAIT = 60.0  # would wait outside deferring()
    fake_esi.set_limit("char-wallet", 10, window=2)
    session = token.esi()
    delays = []
    signals.esi_delay.connect(lambda **kw: delays.append(kw), weak=False, dispatch_uid="t-defer")
    try:
        with deferring(), pytest.raises(EsiRateLimitedError):
            for _ in range(20):
                wallet(session)
    finally:
        signals.esi_delay.disconnect(dispatch_uid="t-defer")
    assert delays and delays[-1]["action"] == "defer" and delays[-1]["group"] == "char-wallet"


def test_server_429_blocks_the_bucket_for_everyone(token, fake_esi, no_wait, esi_token):
    session = token.esi()
    wallet(session)
    fake_esi.set_limit("char-wallet", 2)  # ESI now has less room than we learned
    with pytest.raises(EsiRateLimitedError) as caught:
        wallet(session)
    assert caught.value.retry_after >= 1
    assert fake_esi.calls["status:429"] == 1
    calls = sum(fake_esi.calls.values())
    limiter.forget_local_state()
    with pytest.raises(EsiRateLimitedError):
        wallet(token.__class__.objects.get(pk=token.pk).esi())  # another session, same bucket
    assert sum(fake_esi.calls.values()) == calls  # blocked before any request


def test_429_without_headers_backs_off_shared(token, fake_esi, no_wait):
    session = token.esi()
    wallet(session)
    fake_esi.inject("rate_limited_no_headers")
    with pytest.raises(EsiRateLimitedError) as caught:
        wallet(session)
    assert 0.4 <= caught.value.retry_after <= 2.5
    calls = sum(fake_esi.calls.values())
    with pytest.raises(EsiRateLimitedError):
        wallet(session)
    assert sum(fake_esi.calls.values()) == calls


def test_short_429_is_waited_out_and_retried(token, fake_esi, settings):
    settings.ESI_MAX_WAIT = 10.0
    settings.ESI_BACKOFF_MAX = 1.0
    session = token.esi()
    wallet(session)
    fake_esi.inject("rate_limited_no_headers")
    assert wallet(session).status == 200
    assert fake_esi.calls["status:429"] == 1


@pytest.mark.parametrize(
    "fault, low, high",
    [
        ("negative_retry_after", 0.4, 2.5),  # ignored: the shared backoff instead
        ("huge_retry_after", 3599, 3602),  # capped
    ],
)
def test_unbelievable_retry_after(token, fake_esi, no_wait, caplog, fault, low, high):
    session = token.esi()
    wallet(session)
    fake_esi.set_limit("char-wallet", 2)
    fake_esi.inject(fault)
    with pytest.raises(EsiRateLimitedError) as caught:
        wallet(session)
    assert low <= caught.value.retry_after <= high
    assert "Retry-After" in caplog.text


def test_malformed_limit_falls_back_to_the_default(token, fake_esi, caplog, settings):
    fake_esi.inject("malformed_limit")
    assert wallet(token.esi()).status == 200
    assert "X-Ratelimit-Limit" in caplog.text
    from esi_views.esi import groups

    info = groups.lookup("GET", "/characters/{character_id}/wallet")
    assert (info.group, info.limit, info.window) == ("char-wallet", 150, 900.0)


def test_missing_headers_mean_unlimited(fake_esi):
    fake_esi.inject("missing_headers")
    assert public().get("/characters/{character_id}/", character_id=7).status == 200
    from esi_views.esi import groups

    assert groups.lookup("GET", "/characters/{character_id}").group is None
    before = limiter.round_trips["reserve"]
    public().get("/characters/{character_id}/", character_id=8)
    assert limiter.round_trips["reserve"] == before  # no bucket to reserve in


def test_error_limit_threshold_stops_failing_calls_only(token, fake_esi, no_wait, settings):
    settings.ESI_ERROR_LIMIT_THRESHOLD = 98
    session = token.esi()
    fake_esi.inject("not_found", times=3, route="/characters/{character_id}/wallet")
    for _ in range(3):
        with pytest.raises(EsiResponseError):
            wallet(session)
    with pytest.raises(EsiErrorLimitedError) as caught:
        wallet(session)  # failed last time: not tried under the threshold
    assert 0 < caught.value.reset <= 60
    assert fake_esi.calls["/characters/{character_id}/wallet"] == 3
    assert session.get(SKILLS_PATH, character_id=90000001).status == 200


def test_420_stops_every_call_until_the_reset(token, fake_esi, no_wait):
    fake_esi.inject("error_limited")
    with pytest.raises(EsiErrorLimitedError):
        wallet(token.esi())
    calls = sum(fake_esi.calls.values())
    limiter.forget_local_state()  # another process: reads the shared state
    with pytest.raises(EsiErrorLimitedError):
        public().get("/status/")
    assert sum(fake_esi.calls.values()) == calls


def test_redis_down_interactive_call_gets_a_clear_error(token, fake_esi, settings):
    wallet(token.esi())
    settings.ESI_RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:9/0"
    clear_client_state()
    calls = sum(fake_esi.calls.values())
    with pytest.raises(EsiLimiterUnavailableError, match="Redis is unavailable"):
        wallet(token.esi())
    assert sum(fake_esi.calls.values()) == calls


def test_redis_down_deferred_task_fails_closed(token, fake_esi, settings):
    settings.ESI_RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:9/0"
    clear_client_state()
    with deferring(), pytest.raises(EsiRateLimitedError) as caught:
        wallet(token.esi())
    assert caught.value.retry_after > 0
    assert sum(fake_esi.calls.values()) == 0


def test_call_signal_carries_the_numbers(token, fake_esi):
    seen = []
    signals.esi_call.connect(lambda **kw: seen.append(kw), weak=False, dispatch_uid="t-call")
    try:
        wallet(token.esi())
        public().get("/status/")
        public().get("/status/")
    finally:
        signals.esi_call.disconnect(dispatch_uid="t-call")
    first = seen[0]
    assert (first["group"], first["character_id"], first["status"], first["cost"]) == (
        "char-wallet",
        90000001,
        200,
        2,
    )
    assert first["remaining"] == 148 and first["duration"] > 0 and not first["from_cache"]
    assert seen[2]["from_cache"] and seen[2]["cost"] == 0


def test_log_line_for_bad_group_name(fake_esi, caplog):
    caplog.set_level(logging.WARNING)
    from esi_views.esi import headers

    assert headers.rate_limit({"X-Ratelimit-Group": "a}{b:c"}).group is None
    assert "X-Ratelimit-Group" in caplog.text


def test_settled_cost_counts_from_the_answer_not_the_reservation():
    import uuid

    user = f"app:{uuid.uuid4().hex}"
    # ESI starts a call's window when the request reaches it, after we reserved: the
    # settled cost must come back one window after the answer, never earlier.
    from esi_views.redis_scripts import get_redis, redis_time

    reservation = limiter.reserve("test-group", user, 2, limit=100, window=60.0)
    assert reservation.wait == 0.0
    client = get_redis()
    reserved_at = client.zscore(reservation.key, f"{reservation.member}|2")
    assert reserved_at is not None
    # Let Redis time move on by at least a few milliseconds before the answer.
    start = redis_time(client)
    while redis_time(client) - start < 0.02:
        pass
    limiter.settle("test-group", user, reservation.member, 2, 5)
    settled_at = client.zscore(reservation.key, f"{reservation.member}|5")
    assert client.zscore(reservation.key, f"{reservation.member}|2") is None
    assert settled_at is not None and settled_at >= reserved_at + 20
