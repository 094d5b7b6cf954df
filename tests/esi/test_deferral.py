"""The client inside rate_limit_retry_task: a spent bucket defers the task at once."""

from __future__ import annotations

import pytest
from celery import Celery
from celery.exceptions import Retry

from esi_views.decorators import rate_limit_retry_task
from esi_views.esi import signals

pytestmark = pytest.mark.django_db
WALLET = "esi-wallet.read_character_wallet.v1"

app = Celery("esi_deferral", broker="memory://")
app.conf.update(task_ignore_result=True)
sessions: dict[str, object] = {}


@app.task(bind=True, name="tests.esi.wallet", max_retries=0)
@rate_limit_retry_task
def wallet(self, character_id):
    return sessions["s"].get("/characters/{character_id}/wallet/", character_id=character_id).data


def run_as_worker(task, *args):
    task.push_request(
        id="t-1",
        retries=0,
        called_directly=False,
        is_eager=False,
        headers=None,
        delivery_info={"routing_key": "celery"},
    )
    try:
        return task.run(*args)
    finally:
        task.pop_request()


def test_spent_bucket_defers_without_waiting_or_using_retries(fake_esi, esi_token, settings):
    settings.ESI_MAX_WAIT = 60.0  # an interactive call would sleep; the task must not
    fake_esi.set_limit("char-wallet", 6, window=2)
    token = esi_token(character_id=90000001, scopes=[WALLET])
    sessions["s"] = token.esi()
    ran, delays = 0, []
    signals.esi_delay.connect(
        lambda **kw: delays.append(kw["action"]), weak=False, dispatch_uid="t-deferral"
    )
    try:
        with pytest.raises(Retry) as caught:
            for _ in range(10):
                assert run_as_worker(wallet, 90000001) == 1234.5
                ran += 1
    finally:
        signals.esi_delay.disconnect(dispatch_uid="t-deferral")
    assert delays == ["defer"]  # raised at once, never slept in the worker
    assert 1 <= ran < 10
    assert caught.value.sig.options["retries"] == 0  # max_retries=0 not used up
    assert 0 < caught.value.when <= 2 + 6.01  # the bucket's wait plus the decorator's jitter
    assert fake_esi.calls["status:429"] == 0
