"""Token and SSO-flow cleanup: fault modes, the single-use age rule, subsets, races, the command."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
import time
import types
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import CommandError, call_command, load_command_class
from django.core.management.base import OutputWrapper
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from esi_views import cleanup
from esi_views.exceptions import InvalidClientError
from esi_views.management.commands.esi_cleanup import EXIT_TRANSIENT
from esi_views.models import CallbackRedirect, Token
from esi_views.refresh import refresh_tokens
from tests import processes

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("cleaner")


@pytest.fixture(autouse=True)
def _fresh_subset_counters():
    cache = caches["default"]
    for fraction in (1, 2, 3, 4, 5, 48):
        cache.delete(f"esi_views:cleanup:subset:{fraction}")


def _expire(*tokens: Token, minutes: int = 1) -> None:
    Token.objects.filter(pk__in=[t.pk for t in tokens]).update(
        expires_at=timezone.now() - timedelta(minutes=minutes)
    )


def _clones(token: Token, count: int, **fields) -> list[Token]:
    """Copies of a real token (same refresh token, valid at the fake SSO), cheaply."""
    copies = [
        Token(
            user_id=token.user_id,
            character_id=token.character_id,
            character_name=token.character_name,
            character_owner_hash=token.character_owner_hash,
            access_token=token.access_token,
            refresh_token=token.refresh_token,
            expires_at=token.expires_at,
            **fields,
        )
        for _ in range(count)
    ]
    return Token.objects.bulk_create(copies)


@pytest.fixture
def handed(monkeypatch):
    """Records the pks of every batch cleanup hands to refresh_tokens, in order."""
    batches: list[list[int]] = []

    def recording(tokens, **kwargs):
        tokens = list(tokens)
        batches.append([t.pk for t in tokens])
        return refresh_tokens(tokens, **kwargs)

    monkeypatch.setattr(cleanup, "refresh_tokens", recording)
    return batches


def _snapshot() -> dict[int, tuple]:
    return {
        pk: (expires, refresh)
        for pk, expires, refresh in Token.objects.values_list("pk", "expires_at", "refresh_token")
    }


# -- callback redirects -------------------------------------------------------------------


def test_callback_redirects_older_than_max_age_are_deleted():
    ages = {"new": 10, "edge": 299, "old": 301, "ancient": 86400}
    for state, age in ages.items():
        redirect = CallbackRedirect.objects.create(
            session_hash="s", state=state, code_verifier="v", return_url="/"
        )
        CallbackRedirect.objects.filter(pk=redirect.pk).update(
            created=timezone.now() - timedelta(seconds=age)
        )
    assert cleanup.cleanup_callbackredirect() == 2
    assert set(CallbackRedirect.objects.values_list("state", flat=True)) == {"new", "edge"}
    assert cleanup.cleanup_callbackredirect(max_age=5) == 2
    assert not CallbackRedirect.objects.exists()


# -- outcomes --------------------------------------------------------------------------------


def test_expired_tokens_are_refreshed_and_fresh_ones_left_alone(esi_token, user, fake_sso, handed):
    fresh = [esi_token(user, character_id=90001000 + i) for i in range(3)]
    expired = [esi_token(user, character_id=90001010 + i) for i in range(3)]
    _expire(*expired)
    report = cleanup.cleanup_token()
    assert report.refreshed == 3 and report.deleted_total == 0
    assert fake_sso.calls["token:refresh_token"] == 3
    assert sorted(pk for batch in handed for pk in batch) == sorted(t.pk for t in expired)
    assert Token.objects.count() == 6
    assert not any(t.expired for t in Token.objects.all())
    assert {t.pk for t in fresh} <= set(Token.objects.values_list("pk", flat=True))


def test_exactly_the_dead_ones_are_deleted(esi_token, user, fake_sso):
    good = esi_token(user, character_id=90001101)
    revoked = esi_token(user, character_id=90001102)
    sold = esi_token(user, character_id=90001103)
    no_refresh = esi_token(user, character_id=90001104)
    fresh_but_revoked = esi_token(user, character_id=90001105)
    _expire(good, revoked, sold, no_refresh)
    Token.objects.filter(pk=no_refresh.pk).update(refresh_token="")
    fake_sso.revoke_all(90001102)
    fake_sso.revoke_all(90001105)
    fake_sso.change_owner(90001103)
    report = cleanup.cleanup_token()
    assert dict(report.deleted) == {"invalid_grant": 1, "owner_changed": 1, "no_refresh_token": 1}
    assert set(Token.objects.values_list("pk", flat=True)) == {good.pk, fresh_but_revoked.pk}
    assert report.refreshed == 1 and report.skipped_transient == 0
    assert fake_sso.calls["token:refresh_token"] == 3  # not for the one without refresh token


def test_invalid_token_answer_deletes(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    fake_sso.inject("invalid_token")
    assert dict(cleanup.cleanup_token().deleted) == {"invalid_token": 1}
    assert not Token.objects.exists()


TRANSIENT_FAULTS = [
    pytest.param("server_error", {"status": 500}, id="500"),
    pytest.param("server_error", {"status": 503}, id="503"),
    pytest.param("rate_limited", {"retry_after": 120}, id="429-long-retry-after"),
    pytest.param("timeout", {"seconds": 1.0}, id="timeout"),
    pytest.param("malformed_json", {}, id="malformed"),
    pytest.param("bad_signature", {}, id="bad-jwt"),
]


@pytest.mark.parametrize(("fault", "params"), TRANSIENT_FAULTS)
def test_transient_faults_delete_nothing_and_stop_calling_the_sso(
    esi_token, user, fake_sso, settings, fault, params
):
    settings.ESI_SSO_TIMEOUT = (2.0, 0.3)
    settings.ESI_CLEANUP_MAX_TRANSIENT_FAILURES = 3
    token = esi_token(user)
    tokens = [token, *_clones(token, 11)]
    _expire(*tokens)
    before = _snapshot()
    fake_sso.inject(fault, times=None, **params)
    report = cleanup.cleanup_token()
    assert _snapshot() == before  # nothing deleted, nothing changed
    assert report.deleted_total == 0 and report.refreshed == 0
    assert report.skipped_transient == 12
    assert report.stopped
    # The probe batch is as large as the failure allowance: 3 refreshes, each sent at
    # most twice (ESI_SSO_MAX_RETRIES=1 retries a 503 once), and no more.
    retries = 2 if params.get("status") == 503 else 1
    assert 3 <= fake_sso.calls["token:refresh_token"] <= 3 * retries
    if fault == "rate_limited":
        assert report.retry_after == 120
        assert "retry after 120" in report.stopped


def test_configuration_error_raises_and_deletes_nothing(esi_token, user, fake_sso, caplog):
    token = esi_token(user)
    tokens = [token, *_clones(token, 3)]
    _expire(*tokens)
    fake_sso.inject("invalid_client", times=None)
    with (
        caplog.at_level(logging.INFO, logger="esi_views.cleanup"),
        pytest.raises(InvalidClientError),
    ):
        cleanup.cleanup_token()
    assert Token.objects.count() == 4
    assert "stopped early: configuration error" in caplog.text


def test_a_few_transient_failures_do_not_stop_the_run(esi_token, user, fake_sso):
    token = esi_token(user)
    tokens = [token, *_clones(token, 9)]
    _expire(*tokens)
    fake_sso.inject("server_error", status=500, times=2)
    report = cleanup.cleanup_token()
    assert report.stopped == ""
    assert (report.refreshed, report.skipped_transient, report.deleted_total) == (8, 2, 0)
    assert Token.objects.count() == 10


def test_a_short_retry_after_is_waited_for(esi_token, user, fake_sso, settings, monkeypatch):
    settings.ESI_SSO_MAX_RETRY_AFTER = 0  # the HTTP layer gives up: cleanup must wait
    token = esi_token(user)
    _expire(token, *_clones(token, 9))
    slept: list[float] = []
    # cleanup's own clock only: time.sleep itself is also how other waits (urllib3's
    # backoff, the SSO concurrency cap's polling) pass, and they are not cleanup's.
    monkeypatch.setattr(
        cleanup, "time", types.SimpleNamespace(sleep=slept.append, monotonic=time.monotonic)
    )
    fake_sso.inject("rate_limited", retry_after=7, times=2)
    report = cleanup.cleanup_token()
    assert slept == [7.0]
    assert report.stopped == "" and report.retry_after is None
    assert (report.refreshed, report.skipped_transient) == (8, 2)


def test_a_rejected_refresh_keeps_the_token(esi_token, user, fake_sso, monkeypatch):
    from esi_views import refresh as refresh_module
    from esi_views.exceptions import SSORejectedError

    token = esi_token(user)
    _expire(token)
    monkeypatch.setattr(
        refresh_module,
        "_call_sso",
        lambda _token: SSORejectedError(message="refused", error="invalid_scope"),
    )
    report = cleanup.cleanup_token()
    assert report.skipped_rejected == 1 and report.deleted_total == 0
    assert Token.objects.filter(pk=token.pk).exists()


# -- single-use tokens ------------------------------------------------------------------------


def test_user_less_tokens_are_deleted_only_past_the_max_age(esi_token, user, fake_sso, settings):
    settings.ESI_SINGLE_USE_TOKEN_MAX_AGE = 3600
    young_dead = esi_token(None, character_id=90001201)
    young_no_refresh = esi_token(None, character_id=90001202)
    young_fresh = esi_token(None, character_id=90001203)
    old_fresh = esi_token(None, character_id=90001204)
    old_expired = esi_token(None, character_id=90001205)
    _expire(young_dead, young_no_refresh, old_expired, minutes=120)
    Token.objects.filter(pk=young_no_refresh.pk).update(refresh_token="")
    Token.objects.filter(pk__in=[old_fresh.pk, old_expired.pk]).update(
        created=timezone.now() - timedelta(seconds=3601)
    )
    fake_sso.revoke_all(90001201)
    report = cleanup.cleanup_token()
    assert set(Token.objects.values_list("pk", flat=True)) == {
        young_dead.pk,
        young_no_refresh.pk,
        young_fresh.pk,
    }
    assert dict(report.deleted) == {"single_use_old": 2}
    assert report.kept_young_single_use == 2
    assert fake_sso.calls["token:refresh_token"] == 0  # young ones: not even refreshed


def test_single_use_max_age_setting_is_honoured(esi_token, fake_sso, settings):
    token = esi_token(None)
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(seconds=100))
    settings.ESI_SINGLE_USE_TOKEN_MAX_AGE = 200
    assert cleanup.cleanup_token().deleted_total == 0
    settings.ESI_SINGLE_USE_TOKEN_MAX_AGE = 50
    assert cleanup.cleanup_token().deleted["single_use_old"] == 1
    assert not Token.objects.exists()


# -- scale: keyset pages, SQL-side skipping, queries per batch --------------------------------


def test_oldest_expiry_first_in_batches(esi_token, user, fake_sso, handed):
    token = esi_token(user)
    tokens = [token, *_clones(token, 6)]
    now = timezone.now()
    # Expiry order is the reverse of pk order, with a tie broken by pk.
    for minutes, t in zip([70, 60, 50, 40, 30, 20, 20], tokens, strict=True):
        Token.objects.filter(pk=t.pk).update(expires_at=now - timedelta(minutes=minutes))
    cleanup.cleanup_tokens(batch_size=2)
    order = [pk for batch in handed for pk in batch]
    assert order == [t.pk for t in tokens]
    assert max(len(batch) for batch in handed) == 2


def _queries(**kwargs) -> int:
    with CaptureQueriesContext(connection) as captured:
        cleanup.cleanup_tokens(**kwargs)
    return len(captured.captured_queries)


def test_queries_grow_with_batches_not_tokens(esi_token, user, fake_sso, handed):
    token = esi_token(user)
    expired = [token, *_clones(token, 19)]
    _expire(*expired)
    few_batches = _queries(batch_size=20)
    _expire(*expired)
    _clones(token, 200)  # fresh ones: filtered out in SQL, cost nothing
    assert _queries(batch_size=20) == few_batches
    assert all(len(batch) <= 20 for batch in handed)
    assert {pk for batch in handed for pk in batch} == {t.pk for t in expired}
    _expire(*expired)
    many_batches = _queries(batch_size=2)
    assert few_batches < many_batches
    assert few_batches <= 25


# -- subsets ----------------------------------------------------------------------------------


def test_subset_runs_cover_every_token_once_per_cycle(esi_token, user, fake_sso, handed):
    token = esi_token(user)
    tokens = [token, *_clones(token, 22)]
    fraction = 4
    buckets, visited = [], []
    for run in range(2 * fraction):
        _expire(*Token.objects.all())
        if run == 1:  # tokens come and go mid-cycle
            Token.objects.filter(pk=tokens[5].pk).delete()
            tokens.append(_clones(token, 1)[0])
        handed.clear()
        report = cleanup.cleanup_token_subset(fraction=fraction)
        buckets.append(report.bucket)
        visited.append({pk for batch in handed for pk in batch})
        assert report.refreshed == len(visited[-1])
    assert buckets == [0, 1, 2, 3, 0, 1, 2, 3]
    for cycle in (visited[:fraction], visited[fraction:]):
        counts = {}
        for pks in cycle:
            for pk in pks:
                counts[pk] = counts.get(pk, 0) + 1
        assert set(counts.values()) == {1}
    second = set().union(*visited[fraction:])
    assert second == set(Token.objects.values_list("pk", flat=True))
    for pks, bucket in zip(visited, buckets, strict=True):
        assert all(pk % fraction == bucket for pk in pks)
        assert len(pks) <= len(tokens) // fraction + 2


def test_subset_bucket_can_be_given_and_is_checked(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    report = cleanup.cleanup_token_subset(fraction=3, bucket=token.pk % 3)
    assert report.refreshed == 1 and report.bucket == token.pk % 3
    with pytest.raises(ValueError, match="bucket"):
        cleanup.cleanup_token_subset(fraction=3, bucket=3)


# -- dry run, logging -------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_calls_no_sso(esi_token, user, fake_sso):
    token = esi_token(user)
    expired = [token, *_clones(token, 4)]
    _expire(*expired)
    Token.objects.filter(pk=expired[0].pk).update(refresh_token="")
    old = esi_token(None, character_id=90001301)
    Token.objects.filter(pk=old.pk).update(created=timezone.now() - timedelta(days=1))
    before = _snapshot()
    report = cleanup.cleanup_tokens(dry_run=True)
    assert _snapshot() == before
    assert fake_sso.calls["token:refresh_token"] == 0
    assert report.refreshed == 4
    assert dict(report.deleted) == {"no_refresh_token": 1, "single_use_old": 1}


def test_each_run_logs_one_summary_line(esi_token, user, fake_sso, caplog):
    token = esi_token(user)
    a, b = token, _clones(token, 1)[0]
    _expire(a, b)
    Token.objects.filter(pk=b.pk).update(refresh_token="")
    with caplog.at_level(logging.INFO, logger="esi_views.cleanup"):
        cleanup.cleanup_token()
    lines = [r.getMessage() for r in caplog.records if r.name == "esi_views.cleanup"]
    assert len(lines) == 1
    assert "refreshed 1" in lines[0] and "deleted 1 (no_refresh_token=1)" in lines[0]
    assert "skipped transient 0" in lines[0]


# -- racing a request ------------------------------------------------------------------------


def test_a_token_refreshed_by_a_request_meanwhile_is_kept(esi_token, user, fake_sso, monkeypatch):
    fake_sso.refresh_token_mode = "rotate"  # the cleanup's stale read would be dead now
    token = esi_token(user)
    _expire(token)

    def request_first(tokens, **kwargs):
        Token.objects.get(pk=token.pk).valid_access_token()  # a web request wins the race
        return refresh_tokens(tokens, **kwargs)

    monkeypatch.setattr(cleanup, "refresh_tokens", request_first)
    report = cleanup.cleanup_token()
    assert (report.already_fresh, report.refreshed, report.deleted_total) == (1, 0, 0)
    assert fake_sso.calls["token:refresh_token"] == 1
    assert not Token.objects.get(pk=token.pk).expired


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cleanup_first", [True, False])
def test_cleanup_racing_a_request_makes_one_sso_call(esi_token, fake_sso, cleanup_first):
    """Threads with their own connections: row locks on PostgreSQL, stripes on SQLite."""
    user = get_user_model().objects.create_user("racer")
    token = esi_token(user)
    _expire(token)
    fake_sso.refresh_token_mode = "rotate"
    fake_sso.latency = 0.3
    in_flight = threading.Event()
    results, errors = {}, []
    original = cleanup.refresh_tokens

    def run(name, target):
        try:
            results[name] = target()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    def cleanup_run():
        def signalling(tokens, **kwargs):
            in_flight.set()
            return original(tokens, **kwargs)

        if not cleanup_first:
            in_flight.wait(10)
        cleanup.refresh_tokens = signalling if cleanup_first else original
        return cleanup.cleanup_token()

    def request():
        if cleanup_first:
            in_flight.wait(10)
        else:
            in_flight.set()
        return Token.objects.get(pk=token.pk).valid_access_token()

    try:
        threads = [
            threading.Thread(target=run, args=("cleanup", cleanup_run)),
            threading.Thread(target=run, args=("request", request)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        cleanup.refresh_tokens = original
    assert errors == []
    assert fake_sso.calls["token:refresh_token"] == 1
    stored = Token.objects.get(pk=token.pk)
    assert stored.access_token == results["request"]
    report = results["cleanup"]
    assert report.deleted_total == 0
    assert report.refreshed + report.already_fresh + report.skipped_locked == 1


@pytest.mark.django_db(transaction=True)
def test_cleanup_skips_a_token_locked_by_a_request(esi_token, fake_sso):
    """A row lock held by another connection (or thread) is not waited for."""
    user = get_user_model().objects.create_user("holder")
    token = esi_token(user)
    other = _clones(token, 1)[0]
    _expire(token, other)
    holding, release = threading.Event(), threading.Event()

    def hold():
        # PostgreSQL: only the row lock (what another process would hold); SQLite has
        # no row locks, so there the in-process stripe is what a request holds.
        from django.db import transaction

        from esi_views.refresh import _process_locks

        row_locks = connection.features.has_select_for_update
        try:
            if row_locks:
                with transaction.atomic():
                    list(Token.objects.select_for_update().filter(pk=token.pk))
                    holding.set()
                    release.wait(20)
            else:
                with _process_locks([token.pk]):
                    holding.set()
                    release.wait(20)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        report = cleanup.cleanup_token()
    finally:
        release.set()
        holder.join(20)
    assert (report.skipped_locked, report.refreshed) == (1, 1)
    assert fake_sso.calls["token:refresh_token"] == 1
    assert Token.objects.get(pk=token.pk).expired  # untouched, for the next run


_GATE = 7_000_222  # a PostgreSQL advisory lock key: the child's starting gate

_CLEANUP = """
from esi_views.cleanup import cleanup_token
wait_at_gate(int(sys.argv[1]))
print(json.dumps(cleanup_token().as_dict()))
"""


def _wait_for(condition, proc, what: str) -> None:
    """Poll a recorded fact (not a clock window); fail early if the child died."""
    deadline = time.monotonic() + 120  # only a hang guard: a loaded box may be slow
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["cleanup", "request"])
def test_cleanup_process_racing_a_request_makes_one_sso_call(esi_token, fake_sso, first):
    """Real processes, so only row locks can keep them apart: PostgreSQL only.

    The order is made with recorded facts, not sleeps: the child waits at an advisory-lock
    gate (seen in pg_locks), and "the first one is in its SSO call" is the fake SSO's counter.
    """
    processes.require_postgresql()
    import json

    user = get_user_model().objects.create_user("process-racer")
    token = esi_token(user)
    _expire(token)
    fake_sso.refresh_token_mode = "rotate"
    # The first refresher holds the row lock for this long. For "request first" the child
    # must select the token within it; it is already connected and waiting at the gate, so
    # this only has to cover scheduling noise on a loaded machine.
    fake_sso.latency = 1.0
    seen: list[str] = []

    def request() -> None:
        try:
            seen.append(Token.objects.get(pk=token.pk).valid_access_token())
        finally:
            connection.close()

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [_GATE])
    try:
        proc = processes.start(_CLEANUP, _GATE, fake_sso=fake_sso)
        _wait_for(lambda: processes.waiting_at_gate(_GATE) == 1, proc, "the child at the gate")
        if first == "request":
            requester = threading.Thread(target=request)
            requester.start()
            _wait_for(
                lambda: fake_sso.calls["token:refresh_token"] == 1, proc, "the request's SSO call"
            )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_GATE])
    if first == "cleanup":
        _wait_for(
            lambda: fake_sso.calls["token:refresh_token"] == 1, proc, "the cleanup's SSO call"
        )
        request()
    else:
        requester.join(60)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert fake_sso.calls["token:refresh_token"] == 1
    assert report["deleted"] == {}
    # The child saw the token (it raced), and refreshed it only if it came first.
    assert report["refreshed"] == (1 if first == "cleanup" else 0)
    assert report["refreshed"] + report["already_fresh"] + report["skipped_locked"] == 1
    assert len(seen) == 1 and Token.objects.get(pk=token.pk).access_token == seen[0]


# -- the command -------------------------------------------------------------------------------


def _command(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("esi_cleanup", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_command_prints_progress_and_summary(esi_token, user, fake_sso):
    token = esi_token(user)
    tokens = [token, *_clones(token, 6)]
    _expire(*tokens)
    fake_sso.revoke_all(token.character_id)
    Token.objects.filter(pk=tokens[0].pk).update(refresh_token="")
    out, err = _command("--batch-size", "3")
    assert "100%" in err and "7/7 tokens" in err and "[" in err
    assert "Token cleanup of all tokens:" in out
    assert "deleted" in out and "invalid_grant" in out and "no_refresh_token" in out
    lines = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.strip()}
    assert lines["invalid_grant"] == "6" and lines["no_refresh_token"] == "1"
    assert not Token.objects.exists()


def test_command_dry_run_and_subset(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    out, _ = _command("--dry-run", "--no-progress")
    assert "(dry run)" in out and "would refresh" in out
    assert Token.objects.get(pk=token.pk).expired
    assert fake_sso.calls["token:refresh_token"] == 0
    out, _ = _command("--subset", "2", "--bucket", str(1 - token.pk % 2))
    assert "subset bucket" in out and Token.objects.get(pk=token.pk).expired
    out, _ = _command("--subset", "2", "--bucket", str(token.pk % 2))
    assert not Token.objects.get(pk=token.pk).expired
    with pytest.raises(CommandError):
        _command("--bucket", "1")
    with pytest.raises(CommandError):
        _command("--subset", "2", "--bucket", "2")


def _command_exit(monkeypatch, *args) -> tuple[int, str, str]:
    """Run the command as manage.py does: its exit status, stdout and stderr."""
    # run_from_argv closes the connections afterwards, which would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    out, err = io.StringIO(), io.StringIO()
    command = load_command_class("esi_views", "esi_cleanup")
    command.stdout, command.stderr = OutputWrapper(out), OutputWrapper(err)
    try:
        command.run_from_argv(["manage.py", "esi_cleanup", *args])
    except SystemExit as exit_:
        return exit_.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


def test_command_reports_a_stop_and_exits_non_zero(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token, *_clones(token, 9))
    fake_sso.inject("server_error", status=500, times=None)
    with pytest.raises(CommandError, match="10 expired token") as info:
        _command("--no-progress")
    assert info.value.returncode == EXIT_TRANSIENT == 3
    assert Token.objects.count() == 10


def test_transient_failures_exit_3_for_cron_unless_allowed(esi_token, user, fake_sso, monkeypatch):
    token = esi_token(user)
    _expire(token, *_clones(token, 2))
    fake_sso.inject("server_error", status=503, times=None)
    status, out, err = _command_exit(monkeypatch, "--no-progress")
    assert status == 3
    assert "skipped transient" in out and "3 expired token(s) were kept" in err
    status, out, err = _command_exit(monkeypatch, "--no-progress", "--allow-transient")
    assert status == 0 and "skipped transient" in out and err == ""
    assert Token.objects.count() == 3


def test_command_exits_0_when_all_went_well(esi_token, user, fake_sso):
    token = esi_token(user)
    _expire(token)
    out, _ = _command("--no-progress")  # no CommandError
    assert "Done." in out and not Token.objects.get(pk=token.pk).expired


def test_command_says_how_many_tokens_it_examined(esi_token, user, fake_sso):
    token = esi_token(user)
    _clones(token, 4)  # fresh: examined, not candidates
    _expire(token)
    out, _ = _command("--no-progress")
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:] if line.strip()}
    assert rows["examined"] == "5" and rows["candidates"] == "1"
    assert cleanup.cleanup_token().as_dict()["examined"] == 5
    out, _ = _command("--no-progress", "--dry-run")
    assert "examined" in out


def test_every_command_option_has_help_text():
    parser = load_command_class("esi_views", "esi_cleanup").create_parser(
        "manage.py", "esi_cleanup"
    )
    ours = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {"allow_transient", "redirect_max_age", "subset", "dry_run"} <= {a.dest for a in ours}
    missing = [a.option_strings[0] for a in ours if not (a.help or "").strip()]
    assert missing == []


def test_cleanup_and_the_command_work_without_celery():
    script = (
        "import sys; sys.modules['celery'] = None\n"
        "import django; django.setup()\n"
        "import esi_views.cleanup, esi_views.management.commands.esi_cleanup\n"
        "print('celery' in sys.modules and sys.modules['celery'] is not None)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
