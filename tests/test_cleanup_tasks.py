"""The Celery wrappers: names, the beat schedule, and that they run the cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Celery
from celery.schedules import crontab
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.utils import timezone

from esi_views import tasks
from esi_views.models import CallbackRedirect, Token

NAMES = ("cleanup_callbackredirect", "cleanup_token", "cleanup_token_subset")


@pytest.fixture
def app():
    """A Celery app of our own: shared tasks bind to every app once it is finalized."""
    celery_app = Celery("esi-views-tests", set_as_current=False)
    celery_app.finalize()
    return celery_app


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("tasks-user")


@pytest.mark.parametrize("name", NAMES)
def test_tasks_are_registered_under_their_spec_names(app, name):
    registered = app.tasks[f"esi_views.tasks.{name}"]
    assert registered.name == getattr(tasks, name).name == f"esi_views.tasks.{name}"
    assert registered.__module__ == "esi_views.tasks"


def test_beat_schedule_has_the_recommended_intervals(app):
    schedule = tasks.BEAT_SCHEDULE
    assert set(schedule) == {"esi_cleanup_callbackredirect", "esi_cleanup_token_subset"}
    redirects = schedule["esi_cleanup_callbackredirect"]
    subset = schedule["esi_cleanup_token_subset"]
    assert redirects["task"] == "esi_views.tasks.cleanup_callbackredirect"
    assert subset["task"] == "esi_views.tasks.cleanup_token_subset"
    assert redirects["schedule"] == crontab(minute="0", hour="*/4")
    assert redirects["schedule"].hour == {0, 4, 8, 12, 16, 20}
    assert redirects["schedule"].minute == {0}
    assert subset["schedule"].hour == set(range(24)) and subset["schedule"].minute == {0}
    for entry in schedule.values():  # every scheduled name is a registered task
        assert entry["task"] in app.tasks


def test_the_specs_settings_snippet_works_with_our_task_names(app):
    # The developer guide's CELERYBEAT_SCHEDULE, with esi. replaced by esi_views.
    snippet = {
        "esi_cleanup_callbackredirect": {
            "task": "esi_views.tasks.cleanup_callbackredirect",
            "schedule": crontab(hour="*/4"),
        },
        "esi_cleanup_token_subset": {
            "task": "esi_views.tasks.cleanup_token_subset",
            "schedule": crontab(minute="0", hour="*/1"),
        },
    }
    app.conf.beat_schedule = snippet
    from celery.beat import Scheduler

    scheduler = Scheduler(app, lazy=True)
    scheduler.setup_schedule()
    for name, entry in snippet.items():
        assert scheduler.schedule[name].task == entry["task"]
        assert entry["task"] in app.tasks


@pytest.mark.django_db
def test_cleanup_callbackredirect_task_runs(app):
    for state, age in (("keep", 30), ("drop", 90)):
        redirect = CallbackRedirect.objects.create(
            session_hash="s", state=state, code_verifier="v", return_url="/"
        )
        CallbackRedirect.objects.filter(pk=redirect.pk).update(
            created=timezone.now() - timedelta(seconds=age)
        )
    result = tasks.cleanup_callbackredirect.apply(kwargs={"max_age": 60})
    assert result.successful() and result.get() == 1
    assert list(CallbackRedirect.objects.values_list("state", flat=True)) == ["keep"]


@pytest.mark.django_db
def test_cleanup_token_task_refreshes_and_deletes(esi_token, user, fake_sso):
    good = esi_token(user, character_id=90002001)
    dead = esi_token(user, character_id=90002002)
    Token.objects.update(expires_at=timezone.now() - timedelta(minutes=5))
    fake_sso.revoke_all(90002002)
    result = tasks.cleanup_token.apply()
    assert result.successful()
    summary = result.get()
    assert summary["refreshed"] == 1 and summary["deleted"] == {"invalid_grant": 1}
    assert list(Token.objects.values_list("pk", flat=True)) == [good.pk]
    assert dead.pk not in Token.objects.values_list("pk", flat=True)


@pytest.mark.django_db
def test_cleanup_token_subset_task_takes_the_next_bucket(esi_token, user, fake_sso):
    caches["default"].delete("esi_views:cleanup:subset:2")
    token = esi_token(user)
    Token.objects.update(expires_at=timezone.now() - timedelta(minutes=5))
    first = tasks.cleanup_token_subset.apply(kwargs={"fraction": 2}).get()
    second = tasks.cleanup_token_subset.apply(kwargs={"fraction": 2}).get()
    assert (first["bucket"], second["bucket"]) == (0, 1)
    assert first["refreshed"] + second["refreshed"] == 1
    assert [first, second][token.pk % 2]["refreshed"] == 1
    assert fake_sso.calls["token:refresh_token"] == 1


@pytest.mark.django_db
def test_default_fraction_is_48(user):
    caches["default"].delete("esi_views:cleanup:subset:48")
    summary = tasks.cleanup_token_subset.apply().get()
    assert summary["fraction"] == 48 and summary["bucket"] == 0


def test_beat_schedule_can_be_imported_from_a_settings_module():
    """No Django set-up yet (as in settings.py): the module must not touch the models."""
    script = (
        "import esi_views.tasks as t, sys\n"
        "assert 'esi_views.models' not in sys.modules\n"
        "print(sorted(entry['task'] for entry in t.BEAT_SCHEDULE.values()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "esi_views.tasks.cleanup_token_subset" in done.stdout


# -- a user-less token past ESI_SINGLE_USE_TOKEN_MAX_AGE goes at the next run of any task ------


def _single_use_tokens(esi_token, user, count: int = 6):
    """``count`` stale user-less tokens (pks in several subset buckets), a young one, a user's."""
    stale = [esi_token(None, character_id=90002100 + n) for n in range(count)]
    young = esi_token(None, character_id=90002199)
    owned = esi_token(user, character_id=90002198)
    Token.objects.filter(pk__in=[t.pk for t in [*stale, owned]]).update(
        created=timezone.now() - timedelta(seconds=3600 + 5)
    )
    Token.objects.filter(pk=young.pk).update(created=timezone.now() - timedelta(seconds=3600 - 60))
    return stale, young, owned


RUNS = [
    ("cleanup_token", {}),
    *[("cleanup_token_subset", {"fraction": 48}) for _ in range(3)],  # buckets 0, 1, 2
    ("cleanup_token_subset", {"fraction": 2}),
    ("cleanup_callbackredirect", {}),
    ("cleanup_callbackredirect", {"max_age": 10**9}),  # even when no flow is old enough
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "kwargs"), RUNS)
def test_any_task_deletes_every_stale_user_less_token(
    esi_token, user, fake_sso, settings, name, kwargs
):
    settings.ESI_SINGLE_USE_TOKEN_MAX_AGE = 3600
    stale, young, owned = _single_use_tokens(esi_token, user)
    # The subset runs' bucket holds none of the stale tokens, or only some of them.
    assert len({t.pk % 48 for t in stale}) > 1
    result = getattr(tasks, name).apply(kwargs=kwargs)
    assert result.successful(), result.traceback
    left = set(Token.objects.values_list("pk", flat=True))
    assert left == {young.pk, owned.pk}
    if name != "cleanup_callbackredirect":
        assert result.get()["deleted"].get("single_use_old") == len(stale)


@pytest.mark.django_db
def test_a_subset_run_whose_bucket_holds_no_single_use_token_still_deletes_them(
    esi_token, user, fake_sso
):
    from esi_views import cleanup

    stale, young, _ = _single_use_tokens(esi_token, user, count=2)
    empty = next(b for b in range(48) if b not in {t.pk % 48 for t in [*stale, young]})
    report = cleanup.cleanup_token_subset(48, bucket=empty)
    assert report.deleted["single_use_old"] == 2
    assert report.kept_young_single_use == 0  # the young one is not expired: not counted
    assert not Token.objects.filter(pk__in=[t.pk for t in stale]).exists()
    assert Token.objects.filter(pk=young.pk).exists()


@pytest.mark.django_db
def test_a_user_less_token_is_kept_until_the_max_age_then_goes(esi_token, fake_sso, settings):
    """The boundary, with a hostile max age of 0: 'immediately' still means created <= now."""
    from esi_views import cleanup

    token = esi_token(None)
    settings.ESI_SINGLE_USE_TOKEN_MAX_AGE = 600
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(seconds=590))
    assert cleanup.delete_stale_single_use() == 0
    assert tasks.cleanup_callbackredirect.apply().get() == 0
    assert Token.objects.filter(pk=token.pk).exists()
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - timedelta(seconds=601))
    assert cleanup.delete_stale_single_use() == 1
    assert not Token.objects.exists()
    settings.ESI_SINGLE_USE_TOKEN_MAX_AGE = 0
    esi_token(None)
    assert cleanup.delete_stale_single_use() == 1
