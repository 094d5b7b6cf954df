"""Refreshing: outcomes, Token methods, require_valid, and the one-SSO-call race."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from esi_views.exceptions import (
    InvalidClientError,
    InvalidGrantError,
    OwnerChangedError,
    SSOServerError,
    SSOTransientError,
)
from esi_views.models import Token
from tests import processes

SKILLS = "esi-skills.read_skills.v1"


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("refresher")


def _expire(*tokens: Token) -> None:
    Token.objects.filter(pk__in=[t.pk for t in tokens]).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    for token in tokens:
        token.refresh_from_db()


# -- Token methods -------------------------------------------------------------------------


def test_valid_access_token_of_a_fresh_token_needs_no_sso(esi_token, user, fake_sso):
    token = esi_token(user)
    before = fake_sso.calls["token:refresh_token"]
    assert token.valid_access_token() == token.access_token
    assert fake_sso.calls["token:refresh_token"] == before


def test_valid_access_token_refreshes_an_expired_token(esi_token, user, fake_sso):
    token = esi_token(user, scopes=[SKILLS])
    old = token.access_token
    _expire(token)
    new = token.valid_access_token()
    assert new != old and not token.expired
    assert fake_sso.calls["token:refresh_token"] == 1
    stored = Token.objects.get(pk=token.pk)
    assert stored.access_token == new and stored.expires_at == token.expires_at


def test_refresh_is_forced_and_keeps_a_rotated_refresh_token(esi_token, user, fake_sso):
    token = esi_token(user)
    fake_sso.refresh_token_mode = "rotate"
    old_refresh = token.refresh_token
    token.refresh()
    assert token.refresh_token != old_refresh
    assert Token.objects.get(pk=token.pk).refresh_token == token.refresh_token
    token.refresh()  # the stored, rotated one works
    assert fake_sso.calls["token:refresh_token"] == 2


def test_dead_token_is_deleted_and_raised(esi_token, user, fake_sso):
    token = esi_token(user)
    fake_sso.revoke_all(token.character_id)
    with pytest.raises(InvalidGrantError):
        token.refresh()
    assert not Token.objects.filter(pk=token.pk).exists()


def test_refresh_or_delete(esi_token, user, fake_sso):
    good, dead = esi_token(user, character_id=90000101), esi_token(user, character_id=90000102)
    fake_sso.revoke_all(90000102)
    assert good.refresh_or_delete() is True
    assert dead.refresh_or_delete() is False
    assert list(Token.objects.values_list("character_id", flat=True)) == [90000101]


def test_transient_failure_keeps_the_token(esi_token, user, fake_sso):
    token = esi_token(user)
    fake_sso.inject("server_error", status=500)
    with pytest.raises(SSOServerError):
        token.refresh_or_delete()
    assert Token.objects.filter(pk=token.pk).exists()


def test_owner_change_deletes(esi_token, user, fake_sso):
    token = esi_token(user)
    fake_sso.inject("owner_hash_change")
    with pytest.raises(OwnerChangedError):
        token.refresh()
    assert not Token.objects.filter(pk=token.pk).exists()


def test_configuration_error_is_raised_and_deletes_nothing(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    fake_sso.inject("invalid_client")
    with pytest.raises(InvalidClientError):
        list(Token.objects.require_valid())
    assert Token.objects.filter(pk=token.pk).exists()


def test_revoke_tells_the_sso_and_deletes(esi_token, user, fake_sso):
    token = esi_token(user)
    refresh_token = token.refresh_token
    token.revoke()
    assert fake_sso.calls["revoke"] == 1
    assert not Token.objects.filter(pk=token.pk).exists()
    from esi_views import sso

    with pytest.raises(InvalidGrantError):
        sso.refresh(refresh_token)


# -- require_valid and bulk_refresh ------------------------------------------------------


def test_require_valid_sorts_tokens_by_outcome(esi_token, user, fake_sso):
    fresh = esi_token(user, character_id=90000201)
    expired = esi_token(user, character_id=90000202)
    dead = esi_token(user, character_id=90000203)
    no_refresh = esi_token(user, character_id=90000204)
    _expire(expired, dead, no_refresh)
    Token.objects.filter(pk=no_refresh.pk).update(refresh_token="")
    fake_sso.revoke_all(90000203)
    valid = Token.objects.filter(user=user).require_valid()
    assert set(valid.values_list("character_id", flat=True)) == {90000201, 90000202}
    assert set(Token.objects.values_list("character_id", flat=True)) == {90000201, 90000202}
    assert fake_sso.calls["token:refresh_token"] == 2  # fresh: no call; no refresh token: none
    assert fresh.pk in valid.values_list("pk", flat=True)


def test_require_valid_keeps_but_excludes_transient_failures(esi_token, user, fake_sso):
    tokens = [esi_token(user, character_id=90000300 + i) for i in range(3)]
    _expire(*tokens)
    fake_sso.inject("server_error", status=500, times=None)
    assert list(Token.objects.require_valid()) == []
    assert Token.objects.count() == 3


def test_require_valid_refreshes_many_in_parallel_with_bounded_concurrency(
    esi_token, user, fake_sso, settings
):
    settings.ESI_REFRESH_CONCURRENCY = 4
    tokens = [esi_token(user, character_id=90000400 + i) for i in range(8)]
    _expire(*tokens)
    fake_sso.latency = 0.15
    valid = list(Token.objects.require_valid())
    assert len(valid) == 8 and len({t.access_token for t in valid}) == 8
    # Measured by the SSO itself, not by a clock a loaded machine slows down: the calls
    # overlapped, never more than ESI_REFRESH_CONCURRENCY at once.
    assert 2 <= fake_sso.max_concurrent["token"] <= 4
    assert fake_sso.calls["token:refresh_token"] == 8


def test_bulk_refresh_returns_refreshed_and_deletes_dead(esi_token, user, fake_sso):
    esi_token(user, character_id=90000501)
    esi_token(user, character_id=90000502)
    fake_sso.revoke_all(90000502)
    refreshed = Token.objects.all().bulk_refresh()
    assert list(refreshed.values_list("character_id", flat=True)) == [90000501]
    assert Token.objects.count() == 1


# -- the race: many workers, one expired token, one SSO call -----------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["same", "rotate"])
def test_eight_threads_needing_one_expired_token_make_one_sso_call(esi_token, fake_sso, mode):
    user = get_user_model().objects.create_user("racer")
    token = esi_token(user)
    _expire(token)
    fake_sso.refresh_token_mode = mode
    fake_sso.latency = 0.05
    barrier, seen, errors = threading.Barrier(8), [], []

    def worker():
        try:
            mine = Token.objects.get(pk=token.pk)
            barrier.wait()
            seen.append(mine.valid_access_token())
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert fake_sso.calls["token:refresh_token"] == 1
    assert len(seen) == 8 and len(set(seen)) == 1
    assert Token.objects.get(pk=token.pk).access_token == seen[0]


_GATE = 7_000_333  # a PostgreSQL advisory lock key: the children's starting gate

_VALID_ACCESS_TOKEN = """
from esi_views.models import Token
token = Token.objects.get(pk=int(sys.argv[1]))
wait_at_gate(int(sys.argv[2]))
print(token.valid_access_token())
"""


@pytest.mark.django_db(transaction=True)
def test_eight_processes_needing_one_expired_token_make_one_sso_call(esi_token, fake_sso):
    """Row locks across processes: PostgreSQL only (SQLite has no SELECT FOR UPDATE)."""
    processes.require_postgresql()
    user = get_user_model().objects.create_user("process-racer")
    token = esi_token(user)
    _expire(token)
    fake_sso.refresh_token_mode = "rotate"
    fake_sso.latency = 0.05
    # All eight set up and waiting at the gate before it opens: a real race however slow
    # the machine is to start them (a start time 3 s ahead was missed under load).
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [_GATE])
    try:
        procs = [
            processes.start(_VALID_ACCESS_TOKEN, token.pk, _GATE, fake_sso=fake_sso)
            for _ in range(8)
        ]
        deadline = time.monotonic() + 120  # a hang guard only
        while processes.waiting_at_gate(_GATE) < 8:
            assert all(proc.poll() is None for proc in procs), procs[0].communicate()
            assert time.monotonic() < deadline, "the children did not reach the gate"
            time.sleep(0.05)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_GATE])
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    seen = {out.strip() for out, _ in outputs}
    assert len(seen) == 1
    assert fake_sso.calls["token:refresh_token"] == 1
    assert Token.objects.get(pk=token.pk).access_token == seen.pop()


# -- an answer we cannot use must not cost us the rotated refresh token -------------------------


@pytest.mark.parametrize(
    ("fault", "endpoint"), [("expired_jwt", "token"), ("server_error", "jwks")]
)
def test_an_unusable_refresh_answer_keeps_the_rotated_refresh_token(
    esi_token, user, fake_sso, fault, endpoint
):
    from esi_views import jwks

    token = esi_token(user)
    fake_sso.refresh_token_mode = "rotate"
    _expire(token)
    if endpoint == "jwks":  # the SSO rotated its keys and its JWKS is down just then
        fake_sso.rotate_keys()
        jwks.clear_jwks_cache()
        fake_sso.inject("server_error", endpoint="jwks", status=503, times=None)
    else:
        fake_sso.inject(fault)
    with pytest.raises(SSOTransientError):
        Token.objects.get(pk=token.pk).valid_access_token()
    fake_sso.clear_faults()
    jwks.clear_jwks_cache()
    # The SSO retired the old refresh token; we stored the new one, so this works.
    assert Token.objects.get(pk=token.pk).valid_access_token()
    assert fake_sso.calls["token:refresh_token"] == 2


def test_a_malformed_expires_in_is_transient_not_a_crash(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    fake_sso.inject("missing_fields", fields=["expires_in"])
    with pytest.raises(SSOTransientError):
        Token.objects.get(pk=token.pk).valid_access_token()
    assert Token.objects.filter(pk=token.pk).exists()


def test_one_unexpected_error_does_not_undo_the_batch(esi_token, user, fake_sso, monkeypatch):
    from esi_views import sso
    from esi_views.refresh import refresh_tokens

    tokens = [esi_token(user, character_id=90000600 + i) for i in range(4)]
    fake_sso.refresh_token_mode = "rotate"
    _expire(*tokens)
    real, calls = sso.verify_access_token, []

    def flaky(token, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("the JWKS cache's Redis is down")
        return real(token, **kwargs)

    monkeypatch.setattr(sso, "verify_access_token", flaky)
    report = refresh_tokens(tokens)
    assert len(report.refreshed) == 3
    ((_, error),) = report.transient  # kept, with the refresh token the SSO rotated
    assert "Redis is down" in str(error) and error.refresh_token
    monkeypatch.setattr(sso, "verify_access_token", real)
    for token in tokens:  # all four still usable: the three refreshed ones were saved
        assert Token.objects.get(pk=token.pk).valid_access_token()


@pytest.mark.django_db(transaction=True)
def test_a_request_rolled_back_after_a_refresh_keeps_the_rotated_token(esi_token, fake_sso):
    """ATOMIC_REQUESTS: the refresh commits on its own connection (PostgreSQL)."""
    from django.db import transaction

    processes.require_postgresql()
    user = get_user_model().objects.create_user("atomic-requests")
    token = esi_token(user)
    fake_sso.refresh_token_mode = "rotate"
    _expire(token)
    with pytest.raises(RuntimeError), transaction.atomic():
        refreshed = Token.objects.get(pk=token.pk).valid_access_token()
        raise RuntimeError("the view fails after refreshing")
    stored = Token.objects.get(pk=token.pk)
    assert stored.access_token == refreshed  # committed despite the rollback
    stored.refresh()  # and the rotated refresh token works


def test_a_crash_before_the_sso_answers_keeps_that_token_and_saves_the_rest(
    esi_token, user, fake_sso, monkeypatch
):
    from esi_views import sso
    from esi_views.refresh import UnexpectedRefreshError, refresh_tokens

    tokens = [esi_token(user, character_id=90000700 + i) for i in range(3)]
    _expire(*tokens)
    real = sso.refresh

    def buggy(refresh_token, **kwargs):
        if refresh_token == tokens[1].refresh_token:
            raise KeyError("a bug")
        return real(refresh_token, **kwargs)

    monkeypatch.setattr(sso, "refresh", buggy)
    report = refresh_tokens(tokens)
    assert sorted(t.pk for t in report.refreshed) == [tokens[0].pk, tokens[2].pk]
    assert [(t.pk, type(e)) for t, e in report.other] == [(tokens[1].pk, UnexpectedRefreshError)]
    assert Token.objects.filter(pk=tokens[1].pk).exists()
    with pytest.raises(UnexpectedRefreshError):
        report.raise_for(tokens[1])


def test_a_token_that_cannot_be_decrypted_spoils_only_itself(esi_token, user, fake_sso):
    from esi_views import crypto
    from esi_views.fields import Ciphertext
    from esi_views.refresh import UnexpectedRefreshError, refresh_tokens

    good = [esi_token(user, character_id=90000800 + i) for i in range(3)]
    bad = esi_token(user, character_id=90000810)
    foreign = crypto._derive("a key no longer configured").encrypt(b"refresh").decode()
    Token.objects.filter(pk=bad.pk).update(refresh_token=Ciphertext(foreign))
    fake_sso.refresh_token_mode = "rotate"
    _expire(*good)
    Token.objects.filter(pk=bad.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    report = refresh_tokens(list(Token.objects.all()))
    assert sorted(t.pk for t in report.refreshed) == sorted(t.pk for t in good)
    assert [(t.pk, type(e)) for t, e in report.other] == [(bad.pk, UnexpectedRefreshError)]
    for token in good:  # their rotated refresh tokens were saved
        Token.objects.get(pk=token.pk).refresh()


def _run_in_thread(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():  # free the blocked backends, or the test run hangs
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "datname = current_database() AND pid <> pg_backend_pid()"
            )
        thread.join(10)
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_dead_token_is_deleted_in_the_callers_transaction(esi_token, fake_sso):
    """The delete cascades to rows the caller may hold locks on: no separate connection."""
    from django.db import transaction

    from esi_views.models import CallbackRedirect

    processes.require_postgresql()
    user = get_user_model().objects.create_user("cascade")
    token = esi_token(user)
    flow = CallbackRedirect.objects.create(
        session_hash="s", state="s" * 20, return_url="/", token=token
    )
    _expire(token)
    fake_sso.revoke_all(token.character_id)
    outcome = {}

    def request():
        try:
            with transaction.atomic():  # ATOMIC_REQUESTS
                CallbackRedirect.objects.filter(pk=flow.pk).update(return_url="/x")
                Token.objects.get(pk=token.pk).valid_access_token()
        except InvalidGrantError:
            outcome["dead"] = True
        finally:
            connection.close()

    assert not _run_in_thread(request).is_alive()
    assert outcome == {"dead": True}
    # The caller's transaction rolled back with the error, and the delete with it; the
    # next use outside one deletes the token for good.
    with pytest.raises(InvalidGrantError):
        Token.objects.get(pk=token.pk).refresh()
    assert not Token.objects.filter(pk=token.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_caller_holding_the_row_and_a_worker_refreshing_it_do_not_deadlock(esi_token, fake_sso):
    from django.db import transaction

    from esi_views.refresh import refresh_tokens

    processes.require_postgresql()
    user = get_user_model().objects.create_user("no-deadlock")
    token = esi_token(user)
    row_locked, outcome = threading.Event(), {}

    def request():
        try:
            with transaction.atomic():
                mine = Token.objects.get(pk=token.pk)
                mine.character_name = "Renamed"
                mine.save()  # holds the row lock until commit
                row_locked.set()
                time.sleep(0.5)  # the worker is waiting for the row meanwhile
                mine.refresh()
            outcome["request"] = "ok"
        finally:
            connection.close()

    def worker():
        row_locked.wait(10)
        try:
            refresh_tokens([Token(pk=token.pk)], force=True)
            outcome["worker"] = "ok"
        finally:
            connection.close()

    other = threading.Thread(target=worker, daemon=True)
    other.start()
    assert not _run_in_thread(request).is_alive()
    other.join(20)
    assert outcome == {"request": "ok", "worker": "ok"}
