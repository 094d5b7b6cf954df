"""manage.py esi_import_django_esi against tables shaped like django-esi 10's."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection

from esi_views.models import Token

pytestmark = pytest.mark.django_db

SKILLS, WALLET = "esi-skills.read_skills.v1", "esi-wallet.read_character_wallet.v1"

DJANGO_ESI_TABLES = [  # the columns django-esi 10's migrations create that we read
    "CREATE TABLE esi_scope (id integer PRIMARY KEY, name varchar(100) NOT NULL,"
    " help_text text NOT NULL)",
    "CREATE TABLE esi_token (id integer PRIMARY KEY, created timestamp, access_token text,"
    " refresh_token text NULL, user_id integer NULL, character_id integer NOT NULL,"
    " character_name varchar(100) NOT NULL, token_type varchar(100) NOT NULL,"
    " character_owner_hash varchar(254) NOT NULL, sso_version integer)",
    "CREATE TABLE esi_token_scopes (id integer PRIMARY KEY, token_id integer NOT NULL,"
    " scope_id integer NOT NULL)",
]


@pytest.fixture
def django_esi(db):
    with connection.cursor() as cursor:
        for statement in DJANGO_ESI_TABLES:
            cursor.execute(statement)
        cursor.execute(
            "INSERT INTO esi_scope VALUES (1, %s, 'Skills'), (2, %s, 'Wallet')", [SKILLS, WALLET]
        )
    return connection


def _old_token(pk, user, character_id, refresh_token, scope_ids, owner="owner=", name=None):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO esi_token (id, access_token, refresh_token, user_id, character_id,"
            " character_name, token_type, character_owner_hash, sso_version)"
            " VALUES (%s, 'old.access.token', %s, %s, %s, %s, 'character', %s, 2)",
            [
                pk,
                refresh_token,
                user.pk if user else None,
                character_id,
                name or f"Pilot {character_id}",
                owner,
            ],
        )
        for scope_id in scope_ids:
            cursor.execute(
                "INSERT INTO esi_token_scopes (id, token_id, scope_id) VALUES (%s, %s, %s)",
                [pk * 10 + scope_id, pk, scope_id],
            )


def _run(*args) -> str:
    out = io.StringIO()
    call_command("esi_import_django_esi", *args, stdout=out)
    return out.getvalue()


def test_tokens_are_copied_encrypted_with_users_and_scopes(django_esi, esi_token, fake_sso):
    user = get_user_model().objects.create_user("switcher")
    # A refresh token the fake SSO knows, so the copied token really refreshes.
    live = esi_token(user, character_id=90007001, scopes=[SKILLS, WALLET])
    refresh_token, owner = live.refresh_token, live.character_owner_hash
    live.delete()
    _old_token(1, user, 90007001, refresh_token, [1, 2], owner=owner, name="Switching Pilot")
    _old_token(2, user, 90007002, None, [1])  # never renewable
    _old_token(3, None, 90007003, "loose-refresh", [1])  # no user

    output = _run()

    assert "Copied 1 tokens." in output
    assert "Skipped 1: no refresh token" in output and "Skipped 1: no user" in output
    token = Token.objects.get()
    assert (token.user, token.character_id, token.character_name) == (
        user,
        90007001,
        "Switching Pilot",
    )
    assert set(token.scopes.values_list("name", flat=True)) == {SKILLS, WALLET}
    assert token.expired  # unknown expiry: refreshed on first use
    with connection.cursor() as cursor:
        cursor.execute("SELECT refresh_token FROM esi_views_token")
        assert refresh_token not in repr(cursor.fetchall())  # encrypted at rest
    fresh = token.valid_access_token()  # a real refresh at the fake SSO
    assert fresh != "old.access.token" and fake_sso.calls["token:refresh_token"] == 1


def test_a_second_run_copies_nothing_again(django_esi):
    user = get_user_model().objects.create_user("twice")
    _old_token(1, user, 90007011, "r1", [1])
    _old_token(2, user, 90007011, "r2", [1, 2])  # another scope set: another token
    assert "Copied 2 tokens." in _run()
    output = _run()
    assert "Copied 0 tokens." in output and "Skipped 2: already here" in output
    assert Token.objects.count() == 2


def test_dry_run_changes_nothing(django_esi):
    user = get_user_model().objects.create_user("careful")
    _old_token(1, user, 90007021, "r1", [1])
    assert "Would copy 1 tokens." in _run("--dry-run")
    assert Token.objects.count() == 0


def test_without_django_esi_tables_the_command_says_so(db):
    with pytest.raises(CommandError, match="esi_token"):
        _run()
