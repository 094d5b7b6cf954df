"""Query budgets of the protected views, and misconfiguration caught at definition time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from esi_views.decorators import single_use_token, token_required, tokens_required
from esi_views.mixins import SingleUseTokenMixin, TokenRequiredMixin, TokensRequiredMixin
from esi_views.models import Scope, Token
from tests.browserless import client_for
from tests.views_app import VIEWS

FIVE_SCOPES = [
    "esi-skills.read_skills.v1",
    "esi-wallet.read_character_wallet.v1",
    "esi-assets.read_assets.v1",
    "esi-mail.read_mail.v1",
    "esi-clones.read_clones.v1",
]
REQUIRED = "esi-skills.read_skills.v1 esi-wallet.read_character_wallet.v1"


def _hundred_tokens(user) -> None:
    Scope.objects.bulk_create([Scope(name=n) for n in FIVE_SCOPES])
    scopes = list(Scope.objects.all())
    tokens = Token.objects.bulk_create(
        Token(
            user=user,
            character_id=92000000 + i,
            character_name=f"Alt {i:03}",
            character_owner_hash=f"h{i}=",
            access_token="a.b.c",
            refresh_token="r",
            expires_at=timezone.now() + timedelta(minutes=20),
        )
        for i in range(100)
    )
    link = Token.scopes.through
    link.objects.bulk_create(link(token_id=t.pk, scope_id=s.pk) for t in tokens for s in scopes)


@pytest.fixture
def hundred(db):
    user = get_user_model().objects.create_user("collector")
    _hundred_tokens(user)
    return user


@pytest.fixture(params=list(VIEWS))
def form(request):
    return request.param


@pytest.fixture
def client(form, hundred):
    # AsyncClient for the async views: their queries run in this thread (the one
    # sync_to_async hop), so CaptureQueriesContext sees them too.
    client = client_for(form)
    client.force_login(hundred)
    return client


def _tables(queries) -> list[str]:
    """The table each query reads FROM, in order (quotes stripped)."""
    found = []
    for query in queries:
        after = query["sql"].split(" FROM ", 1)[1].split()[0]
        found.append(after.strip('"`'))
    return found


# Exactly what docs/views.md ("Query cost") and the README promise, not "at most".
def test_selection_page_for_100_tokens_costs_exactly_4_queries(client, form):
    with CaptureQueriesContext(connection) as queries:
        page = client.get(f"/v/{form}/token/1/")
    assert page.status_code == 200
    assert page.content.decode().count('name="token"') == 100
    sql = "\n".join(q["sql"][:200] for q in queries)
    assert len(queries) == 4, sql
    # session, user, the tokens with the scopes, their scopes
    assert _tables(queries) == [
        "django_session",
        "auth_user",
        "esi_views_token",
        "esi_views_scope",
    ], sql


def test_tokens_required_for_100_tokens_costs_exactly_3_queries(client, form):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/v/{form}/tokens/1/")
    assert len(response.json()["tokens"]) == 100
    sql = "\n".join(q["sql"][:200] for q in queries)
    assert len(queries) == 3, sql
    assert _tables(queries) == ["django_session", "auth_user", "esi_views_token"], sql


# -- misconfiguration ----------------------------------------------------------------------------


@pytest.mark.parametrize("mixin", [TokenRequiredMixin, TokensRequiredMixin, SingleUseTokenMixin])
def test_bad_scopes_name_the_class_and_the_fix(mixin):
    with pytest.raises(ImproperlyConfigured, match=r"BadScopes\.scopes must be .*string"):
        type("BadScopes", (mixin, View), {"scopes": 42})
    with pytest.raises(ImproperlyConfigured, match=r"BadScopes\.scopes"):
        type("BadScopes", (mixin, View), {"scopes": ["ok", 3]})


def test_new_token_must_be_a_bool():
    with pytest.raises(ImproperlyConfigured, match=r"Odd\.new_token must be True or False"):
        type("Odd", (TokenRequiredMixin, View), {"new_token": "yes"})


def test_mixin_right_of_the_view_is_refused():
    with pytest.raises(ImproperlyConfigured, match="put TokenRequiredMixin to the left of View"):

        class Backwards(TemplateView, TokenRequiredMixin):
            pass


def test_two_token_mixins_are_refused():
    with pytest.raises(ImproperlyConfigured, match="combines"):

        class Both(TokenRequiredMixin, TokensRequiredMixin, View):
            pass


@pytest.mark.parametrize("decorator", [token_required, tokens_required, single_use_token])
def test_decorators_check_scopes_when_applied(decorator):
    with pytest.raises(ImproperlyConfigured, match="scopes must be"):

        @decorator(scopes=[1, 2])
        def view(request, token):
            pass


def test_get_scopes_hook_decides_per_request(fake_sso, db):
    class PerRequest(TokenRequiredMixin, View):
        def get_scopes(self):
            return frozenset({self.request.GET["need"]})

    from django.test import RequestFactory

    request = RequestFactory().get("/x/", {"need": "esi-mail.read_mail.v1"})
    request.user = get_user_model().objects.create_user("hooks")
    from django.contrib.sessions.backends.db import SessionStore

    request.session = SessionStore()
    response = PerRequest.as_view()(request)
    assert response.status_code == 302
    assert "scope=esi-mail.read_mail.v1" in response["Location"]


def test_handle_no_token_hook_replaces_the_redirect(db):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpResponse
    from django.test import RequestFactory

    class Polite(SingleUseTokenMixin, View):
        def handle_no_token(self):
            return HttpResponse("please log in with EVE", status=401)

    request = RequestFactory().get("/x/")
    request.user, request.session = AnonymousUser(), SessionStore()
    response = Polite.as_view()(request)
    assert (response.status_code, response.content) == (401, b"please log in with EVE")
