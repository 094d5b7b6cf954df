"""HasESIToken / HasESITokens for session users: stored tokens, character header, the 403."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from esi_drf.permissions import HasESIToken
from esi_views.models import Token
from tests.browserless import to_sso_and_back
from tests.drf.api import SKILLS, WALLET
from tests.drf.conftest import ALICE_ALT, ALICE_MAIN, BOB_MAIN

pytestmark = pytest.mark.django_db

BOTH = f"{SKILLS} {WALLET}"


def assert_token_required(response, scopes: str, next_url: str = "/", code="esi_token_required"):
    """The 403 every refusal answers with: JSON, never a redirect, with a working login_url."""
    assert response.status_code == 403, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail", "code", "required_scopes", "login_url"}
    assert body["code"] == code
    assert body["required_scopes"] == sorted(scopes.split())
    login = urlsplit(body["login_url"])
    assert login.path == "/esi/login/"
    query = parse_qs(login.query)
    assert query["scopes"] == [" ".join(sorted(scopes.split()))]
    assert query["next"] == [next_url]
    return body


# -- one token, from the user's store ---------------------------------------------------------


def test_user_with_token_gets_it(alice, alice_client, esi_token):
    token = esi_token(alice, character_id=ALICE_MAIN, scopes=BOTH)
    body = alice_client.get("/api/skills/").json()
    assert body["via"] == "session"
    assert (body["token"], body["character"], body["user"]) == (token.pk, ALICE_MAIN, alice.pk)
    assert body["access_token"] == token.access_token


def test_user_without_token_gets_json_403(alice, alice_client, fake_sso):
    response = alice_client.get("/api/skills/")
    body = assert_token_required(response, SKILLS)
    assert "token" in body["detail"].lower()
    assert "Location" not in response


def test_token_with_too_few_scopes_does_not_count(alice, alice_client, esi_token):
    esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    assert alice_client.get("/api/skills/").status_code == 200
    assert_token_required(alice_client.get("/api/wallet/"), WALLET)


def test_most_recently_refreshed_token_wins(alice, alice_client, esi_token):
    esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    newer = esi_token(alice, character_id=ALICE_ALT, scopes=SKILLS)
    assert alice_client.get("/api/skills/").json()["token"] == newer.pk
    Token.objects.filter(character_id=ALICE_MAIN).get().refresh()
    assert alice_client.get("/api/skills/").json()["character"] == ALICE_MAIN


def test_expired_token_is_refreshed_first(alice, alice_client, esi_token, fake_sso):
    from datetime import timedelta

    from django.utils import timezone

    token = esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    before = fake_sso.calls["token:refresh_token"]
    assert alice_client.get("/api/skills/").json()["token"] == token.pk
    assert fake_sso.calls["token:refresh_token"] == before + 1


def test_other_users_tokens_are_never_handed_out(alice, alice_client, bob, esi_token):
    esi_token(bob, character_id=BOB_MAIN, scopes=BOTH)
    assert_token_required(alice_client.get("/api/skills/"), SKILLS)


def test_anonymous_is_not_authenticated(fake_sso):
    response = Client().get("/api/skills/")
    # DRF's own answer for "no credentials"; our authenticator supplies the challenge.
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# -- the character header ---------------------------------------------------------------------


def test_header_picks_a_character(alice, alice_client, esi_token):
    main = esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    esi_token(alice, character_id=ALICE_ALT, scopes=SKILLS)
    body = alice_client.get("/api/skills/", HTTP_X_ESI_CHARACTER_ID=str(ALICE_MAIN)).json()
    assert (body["token"], body["character"]) == (main.pk, ALICE_MAIN)


def test_header_naming_someone_elses_character_is_refused(alice, alice_client, bob, esi_token):
    esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    esi_token(bob, character_id=BOB_MAIN, scopes=SKILLS)
    response = alice_client.get("/api/skills/", HTTP_X_ESI_CHARACTER_ID=str(BOB_MAIN))
    body = assert_token_required(response, SKILLS)
    assert str(BOB_MAIN) not in response.content.decode()  # nothing of Bob's token leaks
    assert "that character" in body["detail"]


def test_header_naming_own_character_without_the_scopes(alice, alice_client, esi_token):
    esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    esi_token(alice, character_id=ALICE_ALT, scopes=WALLET)
    response = alice_client.get("/api/wallet/", HTTP_X_ESI_CHARACTER_ID=str(ALICE_MAIN))
    assert_token_required(response, WALLET)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "-1",
        "0",
        "1.5",
        "90003001 90003002",
        "١٢٣",
        "9" * 30,
        "9" * 5000,
        "' OR 1=1 --",
        "0x10",
    ],
)
def test_garbage_header_is_refused(alice, alice_client, esi_token, value):
    esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    response = alice_client.get("/api/skills/", HTTP_X_ESI_CHARACTER_ID=value)
    body = assert_token_required(response, SKILLS, code="esi_character_invalid")
    assert "X-ESI-Character-ID" in body["detail"]


# -- login_url ----------------------------------------------------------------------------------


def test_login_url_returns_to_a_same_site_referer(alice_client, fake_sso):
    response = alice_client.get("/api/wallet/", HTTP_REFERER="http://testserver/app/wallet?x=1")
    assert_token_required(response, WALLET, next_url="http://testserver/app/wallet?x=1")


@pytest.mark.parametrize(
    "referer",
    [
        "https://evil.example/phish",
        "//evil.example/",
        "javascript:alert(1)",
        "http://testserver.evil/",
    ],
)
def test_login_url_ignores_a_foreign_referer(alice_client, fake_sso, referer):
    assert_token_required(alice_client.get("/api/wallet/", HTTP_REFERER=referer), WALLET)


def test_login_url_gets_the_token_that_was_missing(alice, alice_client, fake_sso):
    """403 -> login_url -> EVE SSO -> back to the referring page -> the API call works."""
    fake_sso.add_character(ALICE_MAIN, "Alice Main")
    body = alice_client.get("/api/wallet/", HTTP_REFERER="http://testserver/app/").json()
    start = alice_client.get(body["login_url"])
    assert parse_qs(urlsplit(start["Location"]).query)["scope"] == [WALLET]
    back = to_sso_and_back(alice_client, start, fake_sso, ALICE_MAIN)
    assert back.status_code == 302 and back["Location"].startswith("http://testserver/app/")
    response = alice_client.get("/api/wallet/")
    assert response.status_code == 200 and response.json()["character"] == ALICE_MAIN


# -- HasESITokens ---------------------------------------------------------------------------------


def test_tokens_lists_every_matching_character(alice, alice_client, bob, esi_token):
    esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    esi_token(alice, character_id=ALICE_ALT, scopes=BOTH)
    esi_token(bob, character_id=BOB_MAIN, scopes=SKILLS)
    body = alice_client.get("/api/tokens/").json()
    assert body["characters"] == [ALICE_MAIN, ALICE_ALT]
    narrowed = alice_client.get("/api/tokens/", HTTP_X_ESI_CHARACTER_ID=str(ALICE_ALT)).json()
    assert narrowed["characters"] == [ALICE_ALT]
    assert_token_required(
        alice_client.get("/api/tokens/", HTTP_X_ESI_CHARACTER_ID=str(BOB_MAIN)), SKILLS
    )


def test_tokens_without_any(alice_client, fake_sso):
    assert_token_required(alice_client.get("/api/tokens/"), SKILLS)


# -- ViewSet and @api_view ----------------------------------------------------------------------


def test_viewset_scopes_per_action(alice, alice_client, esi_token):
    esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    assert alice_client.get("/api/characters/").json()["character"] == ALICE_MAIN
    assert_token_required(alice_client.get(f"/api/characters/{ALICE_MAIN}/"), BOTH)
    esi_token(alice, character_id=ALICE_ALT, scopes=BOTH)
    assert alice_client.get(f"/api/characters/{ALICE_ALT}/").json()["character"] == ALICE_ALT


def test_api_view_function(alice, alice_client, esi_token, fake_sso):
    assert_token_required(alice_client.get("/api/fn/skills/"), SKILLS)
    token = esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    assert alice_client.get("/api/fn/skills/").json()["token"] == token.pk


# -- configuration mistakes fail loudly -----------------------------------------------------------


def _check(view_class, user):
    request = APIRequestFactory().get("/")
    view = view_class()
    drf_request = view.initialize_request(request)
    drf_request.user = user
    return HasESIToken().has_permission(drf_request, view)


def test_view_naming_no_scopes_is_a_configuration_error(alice):
    class NoScopes(APIView):
        pass

    with pytest.raises(ImproperlyConfigured, match="names no scopes"):
        _check(NoScopes, alice)


def test_dict_of_scopes_without_getter_is_a_configuration_error(alice):
    class DictScopes(APIView):
        required_scopes = {"list": SKILLS}

    with pytest.raises(ImproperlyConfigured, match="get_required_scopes"):
        _check(DictScopes, alice)


@pytest.mark.parametrize("bad", [42, [SKILLS, 3], b"esi-skills.read_skills.v1"])
def test_with_scopes_rejects_non_scopes(bad):
    with pytest.raises(ImproperlyConfigured):
        HasESIToken.with_scopes(bad)


def test_with_scopes_makes_a_new_class():
    narrowed = HasESIToken.with_scopes([WALLET, SKILLS])
    assert issubclass(narrowed, HasESIToken) and narrowed is not HasESIToken
    assert narrowed.scopes == frozenset({SKILLS, WALLET}) and HasESIToken.scopes is None
    assert HasESIToken.with_scopes(f"{SKILLS}  {WALLET}").scopes == narrowed.scopes


# -- the SSO down while the user's token needs renewing -------------------------------------------


def test_sso_down_while_renewing_is_503_not_get_a_token(alice, alice_client, esi_token, fake_sso):
    from datetime import timedelta

    from django.utils import timezone

    token = esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    fake_sso.inject("rate_limited", retry_after=45, times=None)
    response = alice_client.get("/api/skills/")
    assert response.status_code == 503
    assert response["Retry-After"] == "45"
    assert response.json()["detail"].startswith("The EVE SSO could not be reached")
    assert Token.objects.filter(pk=token.pk).exists()
    fake_sso.clear_faults()
    assert alice_client.get("/api/skills/").status_code == 200  # and fine once it is back
