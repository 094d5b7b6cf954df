"""Two logins of the same character by the same user at once end in one token row.

The database decides (a unique constraint on user, character and scope digest); the
loser of the race merges into the winner's row, the newer answer's secrets win.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from esi_views import sso
from esi_views.models import CallbackRedirect, Scope, Token
from esi_views.scopes import scopes_digest
from esi_views.testing.logins import authorize
from tests import processes
from tests.browserless import follow, to_sso_and_back
from tests.views_app import SCOPES

RACER = 90007001
SKILLS = "esi-skills.read_skills.v1"


@pytest.fixture
def racer(fake_sso):
    fake_sso.add_character(RACER, "Racing Pilot")
    return RACER


def _answers(fake_sso, count: int, scopes=SCOPES):
    """``count`` verified token answers for RACER, as ``count`` callbacks would hold them."""
    answers = []
    for _ in range(count):
        code, request = authorize(fake_sso, RACER, scopes)
        answers.append(sso.exchange_code(code, request.code_verifier))
    return answers


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("order", ["shuffled", "reversed"])
def test_eight_threads_adding_one_character_make_one_row(fake_sso, racer, order):
    user = get_user_model().objects.create_user("thread-racer")
    answers = _answers(fake_sso, 8)
    if order == "reversed":
        answers.reverse()
    barrier, stored, errors = threading.Barrier(8), [], []

    def worker(answer):
        try:
            barrier.wait()
            stored.append(Token.objects.create_from_response(answer, user=user).pk)
        except Exception as exc:  # an IntegrityError here is the bug
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(a,)) for a in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(stored) == 8 and len(set(stored)) == 1
    (token,) = Token.objects.filter(user=user)
    assert token.access_token in {a.access_token for a in answers}
    assert set(token.scopes.values_list("name", flat=True)) == set(SCOPES.split())
    assert token.scope_digest == scopes_digest(SCOPES)
    assert token.valid_access_token()


_BARRIER = 7_000_111  # a PostgreSQL advisory lock key: the children's starting gate

_STORE = """
from django.contrib.auth import get_user_model
from django.db import connection
from esi_views import sso
from esi_views.models import Token
user = get_user_model().objects.get(pk=int(sys.argv[1]))
gate, grants = int(sys.argv[2]), sys.argv[3:]
answers = [sso.exchange_code(code, verifier) for code, verifier in zip(grants[::2], grants[1::2])]
with connection.cursor() as cursor:  # wait at the gate until the parent opens it
    cursor.execute("SELECT pg_advisory_lock_shared(%s)", [gate])
    cursor.execute("SELECT pg_advisory_unlock_shared(%s)", [gate])
opened = time.monotonic()
for round_, answer in enumerate(answers):  # a new character each round, all at one instant
    time.sleep(max(0.0, opened + round_ * 1.0 - time.monotonic()))
    print(answer.claims.character_id, Token.objects.create_from_response(answer, user=user).pk)
"""


def _waiting_at_gate() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objid = %s AND NOT granted",
            [_BARRIER],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_eight_processes_adding_one_character_make_one_row(fake_sso, racer):
    processes.require_postgresql()
    user = get_user_model().objects.create_user("process-racer")
    rounds, procs = 3, []
    for character in range(RACER, RACER + rounds):
        fake_sso.add_character(character, f"Racing Pilot {character}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [_BARRIER])
    try:
        for _ in range(8):
            grants = [authorize(fake_sso, RACER + n, SCOPES) for n in range(rounds)]
            args = [value for code, request in grants for value in (code, request.code_verifier)]
            procs.append(processes.start(_STORE, user.pk, _BARRIER, *args, fake_sso=fake_sso))
        deadline = time.monotonic() + 120
        while _waiting_at_gate() < 8 and time.monotonic() < deadline:
            assert all(proc.poll() is None for proc in procs), procs[0].communicate()
            time.sleep(0.05)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_BARRIER])
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    stored = {tuple(map(int, line.split())) for out, _ in outputs for line in out.splitlines()}
    tokens = Token.objects.filter(user=user)
    assert len(tokens) == rounds  # one row per character, not one per process
    assert stored == set(tokens.values_list("character_id", "pk"))
    for token in tokens:
        assert set(token.scopes.values_list("name", flat=True)) == set(SCOPES.split())
        assert token.valid_access_token()


@pytest.mark.django_db
def test_a_row_inserted_by_a_racing_login_is_merged_into_not_a_500(fake_sso, racer):
    """The other login has inserted its row but not yet its scopes: the insert collides."""
    user = get_user_model().objects.create_user("half-way")
    client = Client()
    client.force_login(user)
    first = client.get("/v/mixin/new_token/1/")
    first_answer, *_ = _answers(fake_sso, 1)
    racing = Token.objects.create(
        user=user,
        character_id=RACER,
        character_name="Racing Pilot",
        character_owner_hash=first_answer.claims.owner_hash,
        access_token="theirs",
        refresh_token="theirs",
        expires_at=first_answer.expires_at,
        scope_digest=scopes_digest(SCOPES),
    )
    back = to_sso_and_back(client, first, fake_sso, RACER)
    assert back.status_code == 302
    final = follow(client, back)
    assert final.status_code == 200 and final.json()["token"] == racing.pk
    (token,) = Token.objects.filter(user=user)
    assert token.access_token not in {"theirs"} and token.refresh_token != "theirs"
    assert token.valid_access_token()


@pytest.mark.django_db
def test_other_scopes_users_and_single_use_tokens_are_separate_rows(fake_sso, racer):
    alice = get_user_model().objects.create_user("alice-r")
    bob = get_user_model().objects.create_user("bob-r")
    (a1,) = _answers(fake_sso, 1)
    (a2,) = _answers(fake_sso, 1, scopes=SKILLS)
    (b1,) = _answers(fake_sso, 1)
    (s1, s2) = _answers(fake_sso, 2)
    pks = {
        Token.objects.create_from_response(a1, user=alice).pk,
        Token.objects.create_from_response(a2, user=alice).pk,
        Token.objects.create_from_response(b1, user=bob).pk,
        Token.objects.create_from_response(s1).pk,
        Token.objects.create_from_response(s2).pk,
    }
    assert len(pks) == 5
    assert Token.objects.filter(user=None, scope_digest="").count() == 2


@pytest.mark.django_db
def test_always_create_token_still_creates_a_row_per_login(fake_sso, racer, settings):
    settings.ESI_ALWAYS_CREATE_TOKEN = True
    user = get_user_model().objects.create_user("collector")
    for answer in _answers(fake_sso, 3):
        Token.objects.create_from_response(answer, user=user)
    assert Token.objects.filter(user=user).count() == 3
    settings.ESI_ALWAYS_CREATE_TOKEN = False
    # Back to merging: the next login folds the three into one.
    (answer,) = _answers(fake_sso, 1)
    kept = Token.objects.create_from_response(answer, user=user)
    assert list(Token.objects.filter(user=user).values_list("pk", flat=True)) == [kept.pk]
    assert kept.scope_digest == scopes_digest(SCOPES)


@pytest.mark.django_db
def test_changing_scopes_elsewhere_keeps_the_digest_true(fake_sso, racer):
    user = get_user_model().objects.create_user("scope-editor")
    (a1, a2) = _answers(fake_sso, 2, scopes=SKILLS)
    token = Token.objects.create_from_response(a1, user=user)
    (w1,) = _answers(fake_sso, 1)
    wide = Token.objects.create_from_response(w1, user=user)
    wallet = Scope.objects.get(name="esi-wallet.read_character_wallet.v1")
    token.scopes.add(wallet)  # now equal to `wide`: it keeps its row, loses its digest
    token.refresh_from_db()
    assert token.scope_digest == ""
    wide.scopes.remove(wallet)
    wide.refresh_from_db()
    assert wide.scope_digest == scopes_digest(SKILLS)
    wallet.tokens.add(wide)  # the reverse side too
    wide.refresh_from_db()
    assert wide.scope_digest == scopes_digest(SCOPES)
    # A new SKILLS login merges into nothing stale: it is a new row with the SKILLS scopes.
    fresh = Token.objects.create_from_response(a2, user=user)
    assert set(fresh.scopes.values_list("name", flat=True)) == {SKILLS}
    assert CallbackRedirect.objects.count() == 0


# -- the migration that brings the constraint: existing duplicates are merged first ----------


@pytest.mark.django_db(transaction=True)
def test_migration_merges_existing_duplicates_then_constrains():
    from django.db import IntegrityError
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    executor = MigrationExecutor(connection)
    (mine,) = [
        key
        for key in executor.loader.graph.nodes
        if key[0] == "esi_views" and key[1].endswith("_token_scope_digest")
    ]
    before = [
        dep for dep in executor.loader.graph.nodes[mine].dependencies if dep[0] == "esi_views"
    ]
    latest = executor.loader.graph.leaf_nodes("esi_views")
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        OldToken = apps.get_model("esi_views", "Token")
        OldScope = apps.get_model("esi_views", "Scope")
        User = apps.get_model(*django_user_model_label())
        user = User.objects.create(username="from-before")
        skills = OldScope.objects.create(name=SKILLS)
        wallet = OldScope.objects.create(name="esi-wallet.read_character_wallet.v1")
        now = timezone.now()

        def old_token(scopes, user=user, character=RACER, minutes_ago=0):
            token = OldToken.objects.create(
                user=user,
                character_id=character,
                character_name="Old",
                character_owner_hash="h",
                access_token="a",
                refresh_token="r",
                expires_at=now,
            )
            OldToken.objects.filter(pk=token.pk).update(
                updated=now - timezone.timedelta(minutes=minutes_ago)
            )
            token.scopes.set(scopes)
            return token.pk

        dupes = [old_token([skills, wallet], minutes_ago=m) for m in (30, 5, 60)]
        other_scopes = old_token([skills])
        other_character = old_token([skills, wallet], character=RACER + 1)
        no_user = [old_token([skills], user=None) for _ in range(2)]
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("esi_views"))
    left = set(Token.objects.values_list("pk", flat=True))
    assert left == {dupes[1], other_scopes, other_character, *no_user}  # the newest kept
    assert Token.objects.get(pk=dupes[1]).scope_digest == scopes_digest(SCOPES)
    assert Token.objects.get(pk=no_user[0]).scope_digest == ""
    with pytest.raises(IntegrityError):  # and now the database refuses a duplicate
        Token.objects.create(
            user_id=Token.objects.get(pk=dupes[1]).user_id,
            character_id=RACER,
            character_name="x",
            character_owner_hash="h",
            access_token="a",
            expires_at=timezone.now(),
            scope_digest=scopes_digest(SCOPES),
        )


def django_user_model_label() -> tuple[str, str]:
    from django.conf import settings

    return tuple(settings.AUTH_USER_MODEL.split("."))


@pytest.mark.django_db(transaction=True)
def test_concurrent_callbacks_of_one_user_end_in_one_row_and_no_error_page(fake_sso, racer):
    """Through the whole callback (account link included), six tabs answered at once."""
    processes.require_postgresql()  # SQLite's in-memory test database fails such writers
    from urllib.parse import urlsplit

    import requests

    user = get_user_model().objects.create_user("six-tabs")
    fake_sso.select_character(RACER)
    tabs = []
    for n in range(6):
        client = Client()
        client.force_login(user)
        start = client.get(f"/v/{'mixin' if n % 2 else 'decorator'}/new_token/{n}/")
        answer = requests.get(start["Location"], allow_redirects=False, timeout=10)
        callback = urlsplit(answer.headers["Location"])
        tabs.append((client, f"{callback.path}?{callback.query}"))
    barrier, results, errors = threading.Barrier(len(tabs)), [], []

    def worker(client, url):
        try:
            barrier.wait()
            response = client.get(url)
            results.append((client, response))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=tab) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert [r.status_code for _, r in results] == [302] * len(tabs), [
        r.content[:200] for _, r in results
    ]
    (token,) = Token.objects.filter(user=user)
    for client, response in results:
        assert follow(client, response).json()["token"] == token.pk


@pytest.mark.django_db
def test_a_crash_while_storing_shows_no_token_in_error_reports(fake_sso, racer, monkeypatch):
    """The store's frames hold the SSO's answer: Django's reports must mask them."""
    from django.db.models import QuerySet

    from tests.test_error_reports import CLEANSED

    user = get_user_model().objects.create_user("crash-while-storing")
    (answer,) = _answers(fake_sso, 1)

    def broken_create(self, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(QuerySet, "create", broken_create)
    with pytest.raises(RuntimeError) as caught:
        Token.objects.create_from_response(answer, user=user)
    from django.views.debug import ExceptionReporter

    reporter = ExceptionReporter(None, caught.type, caught.value, caught.tb.tb_next)
    html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    assert "_store" in text and CLEANSED in html and CLEANSED in text
    for secret in (answer.access_token, answer.refresh_token, "eyJ"):
        assert secret not in html and secret not in text
