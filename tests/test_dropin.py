"""django-esi names kept for the import swap: views.sso_redirect, tasks.refresh_or_delete_token,
and the reverse accessor that would clash with django-esi's (tests/django_esi for the rest)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from esi_views.models import Token
from esi_views.tasks import refresh_or_delete_token
from tests.browserless import to_sso_and_back
from tests.views_app import SCOPES

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(client):
    user = get_user_model().objects.create_user("dropin")
    client.force_login(user)
    return user


def test_sso_redirect_gets_a_token_for_the_user_and_returns(client, user, fake_sso):
    fake_sso.add_character(90003001, "Added Alt")
    to_sso = client.get("/v/add-character/")
    back = to_sso_and_back(client, to_sso, fake_sso, 90003001)
    assert back.status_code == 302 and back["Location"] == "/v/added/"
    token = Token.objects.get(character_id=90003001)
    assert token.user == user
    assert set(SCOPES.split()) <= set(token.scopes.values_list("name", flat=True))
    assert list(user.esi_tokens.all()) == [token]  # not token_set: django-esi's name


def test_refresh_or_delete_token_task(esi_token, user, fake_sso):
    token = esi_token(user)
    assert refresh_or_delete_token.apply(args=(token.pk,)).get() is True
    assert fake_sso.calls["token:refresh_token"] == 1
    fake_sso.revoke_all(token.character_id)
    assert refresh_or_delete_token.apply(args=(token.pk,)).get() is False
    assert not Token.objects.filter(pk=token.pk).exists()
    assert refresh_or_delete_token.apply(args=(token.pk,)).get() is None
