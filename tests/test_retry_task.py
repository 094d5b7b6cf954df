"""rate_limit_retry_task, unit level: a real Celery app on the in-memory broker; the retry
Celery would send is inspected instead of delivered. Real workers: tests/ratelimit."""

from __future__ import annotations

import importlib.util
import time

import pytest
from celery import Celery
from celery.exceptions import Retry

from esi_views.decorators import rate_limit_retry_task
from esi_views.deferral import is_deferring
from esi_views.exceptions import EsiErrorLimitedError, EsiLimitError, EsiRateLimitedError
from esi_views.retry import DEFER_UNTIL_HEADER, limit_wait

app = Celery("retry_unit", broker="memory://")
app.conf.update(task_ignore_result=True)

seen: list[bool] = []


def _raiser(exc: BaseException | None):
    def body(self, *args, **kwargs):
        seen.append(is_deferring())
        if exc is not None:
            raise exc
        return "ran"

    return body


def _task(exc, name, **options):
    return app.task(bind=True, name=name, **options)(rate_limit_retry_task(_raiser(exc)))


def _run_as_worker(task, retries=0, headers=None):
    """Run like a worker would (not eager, not called directly)."""
    task.push_request(
        id="t-1",
        retries=retries,
        called_directly=False,
        is_eager=False,
        headers=headers,
        delivery_info={"routing_key": "celery"},
    )
    try:
        return task.run()
    finally:
        task.pop_request()


def _deferral(task, **kwargs):
    """Run ``task`` as a worker expecting a deferral; bracket the call with the clock.

    Returns ``(retry, until, before, after)``. The code under test reads the clock somewhere
    between ``before`` and ``after``; on a loaded machine that span can be long, so bounds are
    taken from these recorded instants instead of from a later ``time.time()``.
    """
    before = time.time()
    with pytest.raises(Retry) as caught:
        _run_as_worker(task, **kwargs)
    after = time.time()
    until = caught.value.sig.options["headers"][DEFER_UNTIL_HEADER]
    # The countdown is what was left of the wait when the retry was built.
    assert until - after <= caught.value.when <= until - before
    return caught.value, until, before, after


def test_rate_limit_is_retried_after_the_reset_with_jitter_and_no_retry_used():
    task = _task(EsiRateLimitedError(retry_after=30, group="g"), "u.rate", max_retries=0)
    jitters = []
    for _ in range(20):
        seen.clear()
        retry, until, before, after = _deferral(task)
        assert seen == [True]  # the body ran inside deferring()
        assert retry.sig.options["retries"] == 0  # max_retries=0 not used up
        # Deferred to the reset plus a jitter of up to 3 s (10 % of 30 s, at least 1 s).
        assert before + 30 <= until <= after + 33
        jitters.append(until - before)
    assert len({round(j, 3) for j in jitters}) > 1  # jitter: not all at once


def test_error_limit_uses_reset():
    task = _task(EsiErrorLimitedError(reset=5), "u.errors")
    retry, until, before, after = _deferral(task, retries=2)
    assert before + 5 <= until <= after + 6  # reset + up to 1 s of jitter
    assert retry.sig.options["retries"] == 2  # unchanged


def test_a_limit_error_without_a_wait_uses_the_default():
    task = _task(EsiLimitError("no idea"), "u.default")
    _, until, before, after = _deferral(task)
    assert before + 60 <= until <= after + 66  # the 60 s default + up to 6 s of jitter


def test_countdown_never_exceeds_the_visibility_timeout(settings):
    settings.ESI_RATE_LIMIT_MAX_COUNTDOWN = 100_000
    app.conf.broker_transport_options = {"visibility_timeout": 100}
    try:
        task = _task(EsiRateLimitedError(retry_after=500), "u.long")
        before = time.time()
        with pytest.raises(Retry) as caught:
            _run_as_worker(task)
        assert caught.value.when == 90  # capped under the 100 s visibility timeout
        until = caught.value.sig.options["headers"][DEFER_UNTIL_HEADER]
        assert until >= before + 500  # the rest of the wait travels with the message
    finally:
        app.conf.broker_transport_options = {}


def test_redelivered_early_goes_back_to_sleep_without_running_the_body():
    task = _task(None, "u.early", max_retries=0)
    seen.clear()
    until = time.time() + 50
    retry, _, _, _ = _deferral(task, headers={DEFER_UNTIL_HEADER: until, "other": "kept"})
    assert seen == []
    assert retry.sig.options["headers"] == {DEFER_UNTIL_HEADER: until, "other": "kept"}
    assert retry.sig.options["retries"] == 0


def test_after_the_deferral_the_body_runs():
    task = _task(None, "u.due")
    seen.clear()
    assert _run_as_worker(task, headers={DEFER_UNTIL_HEADER: time.time() - 1}) == "ran"
    assert seen == [True]


@pytest.mark.parametrize("bad", ["soon", None, float("nan"), [1]])
def test_a_garbled_header_does_not_block_the_task(bad):
    task = _task(None, f"u.garbled.{bad!r}")
    assert _run_as_worker(task, headers={DEFER_UNTIL_HEADER: bad}) == "ran"


def test_invisible_without_a_limit_error():
    task = _task(ValueError("boom"), "u.other")
    with pytest.raises(ValueError, match="boom"):
        _run_as_worker(task)
    ok = _task(None, "u.ok")
    assert _run_as_worker(ok) == "ran"
    assert ok.__wrapped__ is not None and ok.run.__name__ == "body"


def test_eager_and_direct_calls_raise_the_limit_error():
    task = _task(EsiRateLimitedError(retry_after=1), "u.eager")
    with pytest.raises(EsiRateLimitedError):
        task()  # called directly
    with pytest.raises(EsiRateLimitedError):
        task.apply(throw=True)  # eager


def test_not_a_bound_task_reraises():
    @rate_limit_retry_task
    def plain(x):
        raise EsiRateLimitedError(retry_after=1)

    with pytest.raises(EsiRateLimitedError):
        plain(1)


def test_deferring_ends_with_the_body():
    task = _task(None, "u.scope")
    _run_as_worker(task)
    assert not is_deferring()


def test_limit_wait_recognises_only_limit_errors():
    assert limit_wait(EsiRateLimitedError(retry_after=3)) == 3
    assert limit_wait(EsiErrorLimitedError(reset=-1)) == 60  # nonsense: the default
    assert limit_wait(ValueError()) is None


@pytest.mark.skipif(
    importlib.util.find_spec("esi") is None,
    reason="django-esi is not installed here (make test-django-esi runs this)",
)
def test_django_esis_limit_exceptions_are_recognised():
    from esi.exceptions import ESIBucketLimitException, ESIErrorLimitException

    class Bucket:
        window = 15

    assert limit_wait(ESIErrorLimitException(reset=12)) == 12
    assert limit_wait(ESIErrorLimitException()) == 60
    assert limit_wait(ESIBucketLimitException(Bucket(), reset=7)) == 7
    assert limit_wait(ESIBucketLimitException(Bucket())) == 15
    task = _task(ESIErrorLimitException(reset=12), "u.django_esi", max_retries=0)
    _, until, before, after = _deferral(task)
    assert before + 12 <= until <= after + 13.2  # reset + up to 1.2 s of jitter
