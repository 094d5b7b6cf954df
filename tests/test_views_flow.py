"""Every behaviour of the views part of the spec, through the mixin and the decorator,
each as a sync view (test Client, WSGI path) and as an async view (AsyncClient, ASGI path).

Each scenario runs once per form and records a trace of (status, redirect target,
what the view received); the four traces must be identical, and match expectations.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from esi_views.models import CharacterOwnership, Token
from tests.browserless import client_for, follow, to_sso_and_back, trace_entry
from tests.views_app import SCOPES, VIEWS

pytestmark = pytest.mark.django_db

ALICE_MAIN, ALICE_ALT, ALICE_THIRD = 90001001, 90001002, 90001003


@pytest.fixture
def alice(client):
    user = get_user_model().objects.create_user("alice")
    client.force_login(user)
    return user


def _url(form: str, name: str, number: int = 7) -> str:
    return f"/v/{form}/{name}/{number}/"


def _characters(fake_sso):
    fake_sso.add_character(ALICE_MAIN, "Alice Main")
    fake_sso.add_character(ALICE_ALT, "Alice Alt")
    fake_sso.add_character(ALICE_THIRD, "Alice Third")


def token_required_no_tokens(client, fake_sso, esi_token, form):
    user = get_user_model().objects.create_user(f"u-{form}")
    client.force_login(user)
    first = client.get(_url(form, "token"))
    back = to_sso_and_back(client, first, fake_sso, ALICE_MAIN)
    final = follow(client, back)
    assert final.json()["character"] == ALICE_MAIN and final.json()["user"] == user.pk
    return [first, back, final]


def token_required_selection(client, fake_sso, esi_token, form):
    user = get_user_model().objects.create_user(f"u-{form}")
    client.force_login(user)
    esi_token(user, character_id=ALICE_MAIN, scopes=SCOPES)
    alt = esi_token(user, character_id=ALICE_ALT, scopes=SCOPES)
    esi_token(user, character_id=ALICE_THIRD, scopes="esi-skills.read_skills.v1")  # too few
    page = client.get(_url(form, "token"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Alice Main" in html and "Alice Alt" in html and "Alice Third" not in html
    assert f"/characters/{ALICE_ALT}/portrait" in html
    assert "Add another character" in html and "esi-wallet.read_character_wallet.v1" in html
    chosen = client.post("/esi/select/", {"flow": page.context["flow"], "token": alt.pk})
    final = follow(client, chosen)
    assert final.json()["character"] == ALICE_ALT
    assert final.json()["kwargs"] == {"number": 7}
    return [page, chosen, final]


def token_required_add_character(client, fake_sso, esi_token, form):
    user = get_user_model().objects.create_user(f"u-{form}")
    client.force_login(user)
    esi_token(user, character_id=ALICE_MAIN, scopes=SCOPES)
    page = client.get(_url(form, "token"))
    to_sso = client.post("/esi/select/", {"flow": page.context["flow"], "action": "add"})
    back = to_sso_and_back(client, to_sso, fake_sso, ALICE_THIRD)
    final = follow(client, back)
    assert final.json()["character"] == ALICE_THIRD
    assert Token.objects.filter(user=user).count() == 2
    return [page, to_sso, back, final]


def token_required_new(client, fake_sso, esi_token, form):
    user = get_user_model().objects.create_user(f"u-{form}")
    client.force_login(user)
    esi_token(user, character_id=ALICE_MAIN, scopes=SCOPES)
    first = client.get(_url(form, "new_token"))  # has a token, still goes to the SSO
    back = to_sso_and_back(client, first, fake_sso, ALICE_ALT)
    final = follow(client, back)
    assert final.json()["character"] == ALICE_ALT
    return [first, back, final]


def token_required_anonymous_login(client, fake_sso, esi_token, form):
    first = client.get(_url(form, "new_token"))
    back = to_sso_and_back(client, first, fake_sso, ALICE_MAIN)
    final = follow(client, back)
    assert final.json()["character"] == ALICE_MAIN and final.json()["user"] is None
    return [first, back, final]


def tokens_required_anonymous(client, fake_sso, esi_token, form):
    first = client.get(_url(form, "tokens"))
    assert first["Location"] == f"/accounts/login/?next=/v/{form}/tokens/7/"
    return [first]


def tokens_required_all_valid(client, fake_sso, esi_token, form):
    user = get_user_model().objects.create_user(f"u-{form}")
    other = get_user_model().objects.create_user(f"other-{form}")
    client.force_login(user)
    esi_token(user, character_id=ALICE_MAIN, scopes=SCOPES)
    esi_token(user, character_id=ALICE_ALT, scopes=SCOPES)
    esi_token(user, character_id=ALICE_THIRD, scopes="esi-skills.read_skills.v1")
    esi_token(other, character_id=90009999, scopes=SCOPES)
    final = client.get(_url(form, "tokens"))
    assert final.json()["tokens"] == [ALICE_MAIN, ALICE_ALT]
    return [final]


def tokens_required_none(client, fake_sso, esi_token, form):
    user = get_user_model().objects.create_user(f"u-{form}")
    client.force_login(user)
    first = client.get(_url(form, "tokens"))
    back = to_sso_and_back(client, first, fake_sso, ALICE_MAIN)
    final = follow(client, back)
    assert final.json()["tokens"] == [ALICE_MAIN]
    return [first, back, final]


def tokens_required_new(client, fake_sso, esi_token, form):
    user = get_user_model().objects.create_user(f"u-{form}")
    client.force_login(user)
    esi_token(user, character_id=ALICE_MAIN, scopes=SCOPES)
    first = client.get(_url(form, "new_tokens"))
    back = to_sso_and_back(client, first, fake_sso, ALICE_ALT)
    final = follow(client, back)
    assert final.json()["tokens"] == [ALICE_ALT]  # just the new one
    return [first, back, final]


def single_use_anonymous(client, fake_sso, esi_token, form):
    first = client.get(_url(form, "single_use"))
    back = to_sso_and_back(client, first, fake_sso, ALICE_MAIN)
    final = follow(client, back)
    assert final.json()["character"] == ALICE_MAIN and final.json()["user"] is None
    again = client.get(_url(form, "single_use", 8))  # another page: no token carried over
    assert again.status_code == 302 and again["Location"].startswith(fake_sso.base_url)
    return [first, back, final, again]


def single_use_logged_in_is_never_listed(client, fake_sso, esi_token, form):
    user = get_user_model().objects.create_user(f"u-{form}")
    client.force_login(user)
    first = client.get(_url(form, "single_use"))
    back = to_sso_and_back(client, first, fake_sso, ALICE_MAIN)
    final = follow(client, back)
    assert final.json()["user"] is None
    token_page = client.get(_url(form, "token"))  # nothing to select: straight to the SSO
    assert token_page.status_code == 302 and token_page["Location"].startswith(fake_sso.base_url)
    return [first, back, final, token_page]


SCENARIOS = [
    token_required_no_tokens,
    token_required_selection,
    token_required_add_character,
    token_required_new,
    token_required_anonymous_login,
    tokens_required_anonymous,
    tokens_required_all_valid,
    tokens_required_none,
    tokens_required_new,
    single_use_anonymous,
    single_use_logged_in_is_never_listed,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_mixin_and_decorator_behave_identically_sync_and_async(scenario, fake_sso, esi_token):
    _characters(fake_sso)
    traces = {}
    for form in VIEWS:
        Token.objects.all().delete()
        CharacterOwnership.objects.all().delete()  # each form starts from an empty site
        traces[form] = [
            trace_entry(r) for r in scenario(client_for(form), fake_sso, esi_token, form)
        ]
    assert set(traces) == {"mixin", "decorator", "async_mixin", "async_decorator"}
    for form, trace in traces.items():
        assert trace == traces["mixin"], form


def test_decorator_keeps_function_metadata_and_passes_url_args():
    from tests import views_app

    view = views_app.token_view
    assert view.__name__ == "token_view"
    assert view.__doc__ == "Reports its token."
    assert view.__wrapped__.__name__ == "token_view"
    assert view.view_class.scopes == SCOPES


def test_two_tabs_with_flows_open_at_once(client, fake_sso, alice):
    _characters(fake_sso)
    tab_one = client.get(_url("mixin", "token", 1))
    tab_two = client.get(_url("mixin", "token", 2))
    back_two = to_sso_and_back(client, tab_two, fake_sso, ALICE_ALT)
    back_one = to_sso_and_back(client, tab_one, fake_sso, ALICE_MAIN)
    one, two = follow(client, back_one).json(), follow(client, back_two).json()
    assert (one["character"], one["kwargs"]) == (ALICE_MAIN, {"number": 1})
    assert (two["character"], two["kwargs"]) == (ALICE_ALT, {"number": 2})


def test_a_post_to_the_protected_view_keeps_its_method_once_a_token_is_chosen(
    client, fake_sso, alice, esi_token
):
    _characters(fake_sso)
    token = esi_token(alice, character_id=ALICE_MAIN, scopes=SCOPES)
    page = client.post(_url("decorator", "token"), {"anything": "x"})
    assert page.status_code == 200 and page.context["flow"]  # selection, not the view
    chosen = client.post("/esi/select/", {"flow": page.context["flow"], "token": token.pk})
    assert chosen["Location"].startswith("/v/decorator/token/7/?esi_flow=")
    resubmit = client.get(chosen["Location"])  # a page that posts back (tests/test_reentry.py)
    assert client.post(chosen["Location"], {"esi_reentry": resubmit.context["key"]}).json() == {
        "form": {"anything": ["x"]},
        "method": "POST",
        "token": token.pk,
        "character": ALICE_MAIN,
        "user": alice.pk,
        "tokens": None,
        "args": [],
        "kwargs": {"number": 7},
    }


def test_expired_tokens_are_refreshed_before_listing(client, fake_sso, alice, esi_token):
    from datetime import timedelta

    from django.utils import timezone

    _characters(fake_sso)
    token = esi_token(alice, character_id=ALICE_MAIN, scopes=SCOPES)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    page = client.get(_url("mixin", "token"))
    assert page.status_code == 200 and "Alice Main" in page.content.decode()
    assert fake_sso.calls["token:refresh_token"] == 1
    fake_sso.revoke_all(ALICE_MAIN)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    page = client.get(_url("mixin", "token"))
    assert page.status_code == 302  # the dead token is gone: off to the SSO
    assert not Token.objects.filter(pk=token.pk).exists()
