"""A site with django-esi 10 (``esi``) installed next to esi_views: it starts, migrates,
runs, and django-esi's code accepts our objects. Run by ``make test-django-esi`` (its own
venv with django-esi 10, settings tests.django_esi.settings); skipped elsewhere."""

from __future__ import annotations

import io

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection

pytestmark = [
    pytest.mark.skipif(
        not apps.is_installed("esi"),
        reason="needs django-esi 10 installed as the 'esi' app (make test-django-esi)",
    ),
    pytest.mark.django_db,
]

SKILLS = "esi-skills.read_skills.v1"


def test_the_site_passes_django_checks_with_both_apps():
    out = io.StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()
    assert apps.get_app_config("esi").label == "esi"
    assert apps.get_app_config("esi_views").label == "esi_views"


def test_both_apps_are_migrated_into_their_own_tables():
    tables = set(connection.introspection.table_names())
    assert {"esi_token", "esi_scope", "esi_callbackredirect"} <= tables  # django-esi's
    assert {"esi_views_token", "esi_views_scope", "esi_views_callbackredirect"} <= tables
    out = io.StringIO()
    call_command("makemigrations", "esi_views", "--check", "--dry-run", stdout=out)
    call_command("migrate", "--plan", stdout=out)
    assert "No planned migration operations" in out.getvalue()


def test_our_views_run_with_a_token_of_ours(client):
    from esi_views.testing.factories import make_token

    user = get_user_model().objects.create_user("both")
    token = make_token(user, scopes="esi-skills.read_skills.v1 esi-wallet.read_character_wallet.v1")
    client.force_login(user)
    answer = client.get("/v/decorator/tokens/1/")
    assert answer.status_code == 200 and answer.json()["tokens"] == [token.character_id]


def test_django_esis_client_accepts_our_token(monkeypatch):
    """django-esi's OpenAPI client reads a token's scopes, character_id and
    valid_access_token(): what it does with ours (its scope check and its header)."""
    from esi.openapi_clients import EsiOperation

    from esi_views.testing.factories import make_token

    token = make_token(None, scopes=[SKILLS])
    operation = EsiOperation.__new__(EsiOperation)

    class Security:
        root = {"OAuth2": [SKILLS]}

    class Op:
        security = [Security()]

    operation.operation = Op()
    operation._validate_token_scopes(token)  # no error: the scopes are there
    Security.root = {"OAuth2": ["esi-mail.read_mail.v1"]}
    with pytest.raises(ValueError, match="Missing Scopes"):
        operation._validate_token_scopes(token)
    assert token.valid_access_token() == token.access_token  # the bearer it sends


def test_import_django_esis_tokens_from_its_real_tables():
    from esi.models import Scope as EsiScope
    from esi.models import Token as EsiToken

    from esi_views.models import Token

    user = get_user_model().objects.create_user("migrating")
    theirs = EsiToken.objects.create(
        user=user,
        character_id=91000001,
        character_name="Old Timer",
        character_owner_hash="hash-91000001",
        access_token="a" * 40,
        refresh_token="r" * 24,
        token_type="character",
    )
    theirs.scopes.add(EsiScope.objects.create(name=SKILLS))
    call_command("esi_import_django_esi", stdout=io.StringIO())
    ours = Token.objects.get(character_id=91000001)
    assert ours.user == user and ours.refresh_token == "r" * 24
    assert list(ours.scopes.values_list("name", flat=True)) == [SKILLS]


def test_both_rate_limit_retry_decorators_recognise_each_others_limits():
    from esi.exceptions import ESIErrorLimitException

    from esi_views.retry import limit_wait

    assert limit_wait(ESIErrorLimitException(reset=9)) == 9


def test_our_errors_module_mirrors_django_esis_names():
    from esi import errors as theirs

    from esi_views import errors as ours

    names = {
        n
        for n, v in vars(theirs).items()
        if isinstance(v, type) and issubclass(v, Exception) and v.__module__ == theirs.__name__
    }
    assert names == set(ours.__all__)
    for name in names:  # the same shape of hierarchy
        their_bases = {
            b.__name__ for b in getattr(theirs, name).__mro__ if b.__module__ == theirs.__name__
        }
        our_bases = {b.__name__ for b in getattr(ours, name).__mro__} | {"DjangoEsiException"}
        assert their_bases <= our_bases, name
