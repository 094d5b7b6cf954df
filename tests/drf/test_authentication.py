"""EveSSOAuthentication: ``Authorization: Bearer <EVE SSO access token>``."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from esi_drf.authentication import EveAccessToken, EveSSOAuthentication
from esi_drf.exceptions import SSOUnavailable
from esi_views.jwks import clear_jwks_cache
from tests.drf.api import SKILLS, WALLET
from tests.drf.conftest import ALICE_ALT, ALICE_MAIN, BOB_MAIN
from tests.drf.test_permissions_session import assert_token_required

pytestmark = pytest.mark.django_db

CHALLENGE = re.compile(
    r'Bearer realm="api", error="invalid_token", error_description="(?P<description>[^"\\]*)"'
)


@pytest.fixture
def alice_main(alice, esi_token):
    """Alice holds a stored token for her main: bearer tokens of that character are hers."""
    return esi_token(alice, character_id=ALICE_MAIN, scopes=SKILLS)


def assert_invalid_token(response, words: str) -> None:
    assert response.status_code == 401, response.content[:300]
    match = CHALLENGE.fullmatch(response["WWW-Authenticate"])
    assert match, response["WWW-Authenticate"]
    assert words.lower() in match["description"].lower()
    assert response.json()["detail"] == match["description"]


# -- accepted -----------------------------------------------------------------------------------


def test_valid_token_authenticates_its_owner(alice, alice_main, bearer):
    headers = bearer(ALICE_MAIN, [SKILLS, "publicData"])
    body = Client().get("/api/skills/", **headers).json()
    assert body["via"] == "bearer" and body["user"] == alice.pk
    assert body["character"] == ALICE_MAIN
    assert body["token"] is None  # no stored token was used: the bearer token itself is
    assert body["access_token"] == headers["HTTP_AUTHORIZATION"].removeprefix("Bearer ")


def test_request_auth_says_who_and_what(alice, alice_main, bearer, fake_sso):
    raw = bearer(ALICE_MAIN, [SKILLS, WALLET])["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    request = Request(APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {raw}"))
    user, auth = EveSSOAuthentication().authenticate(request)
    assert user == alice and isinstance(auth, EveAccessToken)
    assert (auth.character_id, auth.owner_hash) == (ALICE_MAIN, alice_main.character_owner_hash)
    assert auth.character_name == alice_main.character_name
    assert auth.scopes == frozenset({SKILLS, WALLET})
    assert auth.token == raw and auth.valid_access_token() == raw and raw not in repr(auth)
    assert auth.expires_at > datetime.now(UTC) and not auth.expired


def test_scopes_are_checked_in_the_jwt_not_the_store(alice, alice_main, bearer):
    # Alice's stored token has SKILLS only; the bearer token's scp decides.
    assert Client().get("/api/wallet/", **bearer(ALICE_MAIN, [WALLET])).status_code == 200
    assert_token_required(Client().get("/api/wallet/", **bearer(ALICE_MAIN, [SKILLS])), WALLET)
    assert_token_required(Client().get("/api/skills/", **bearer(ALICE_MAIN, [])), SKILLS)


def test_viewset_actions_and_plural_permission_with_bearer(alice, alice_main, bearer):
    skills_only = bearer(ALICE_MAIN, [SKILLS])
    assert Client().get("/api/characters/", **skills_only).status_code == 200
    assert_token_required(Client().get("/api/characters/1/", **skills_only), f"{SKILLS} {WALLET}")
    assert Client().get("/api/tokens/", **skills_only).json()["characters"] == [ALICE_MAIN]


def test_character_header_must_match_the_bearer(alice, alice_main, bearer):
    headers = bearer(ALICE_MAIN, [SKILLS])
    ok = Client().get("/api/skills/", HTTP_X_ESI_CHARACTER_ID=str(ALICE_MAIN), **headers)
    assert ok.status_code == 200
    other = Client().get("/api/skills/", HTTP_X_ESI_CHARACTER_ID=str(ALICE_ALT), **headers)
    assert_token_required(other, SKILLS)
    garbage = Client().get("/api/skills/", HTTP_X_ESI_CHARACTER_ID="me", **headers)
    assert_token_required(garbage, SKILLS, code="esi_character_invalid")


def test_bearer_needs_no_csrf_and_beats_the_session(alice, alice_main, bearer, bob):
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    body = client.get("/api/skills/", **bearer(ALICE_MAIN, [SKILLS])).json()
    assert (body["via"], body["user"]) == ("bearer", alice.pk)


# -- refused: 401 with a Bearer challenge --------------------------------------------------------


def test_expired_token(alice_main, bearer):
    response = Client().get("/api/skills/", **bearer(ALICE_MAIN, [SKILLS], expires_in=-600))
    assert_invalid_token(response, "expired")


@pytest.mark.parametrize(
    "audience",
    [
        ["another-client", "EVE Online"],
        "EVE Online",
        ["fake-client-id"],
        [],
    ],
)
def test_foreign_audience(alice_main, bearer, audience):
    response = Client().get("/api/skills/", **bearer(ALICE_MAIN, [SKILLS], audience=audience))
    assert_invalid_token(response, "not issued for this application")


def test_wrong_signature(alice_main, bearer):
    headers = bearer(ALICE_MAIN, [SKILLS], sign_with_foreign_key=True)
    assert_invalid_token(Client().get("/api/skills/", **headers), "signature")


def test_tampered_payload(alice_main, bearer, fake_sso):
    header, _, signature = bearer(ALICE_MAIN, [SKILLS])["HTTP_AUTHORIZATION"].split(".")
    _, payload, _ = fake_sso.mint_access_token(BOB_MAIN, [SKILLS, WALLET]).split(".")
    forged = f"{header}.{payload}.{signature}"
    assert_invalid_token(Client().get("/api/skills/", HTTP_AUTHORIZATION=forged), "signature")


def test_unknown_kid(alice_main, bearer):
    assert_invalid_token(
        Client().get("/api/skills/", **bearer(ALICE_MAIN, [SKILLS], kid="nobody-knows")), "key"
    )


def test_unknown_character_has_no_account(alice_main, bearer):
    response = Client().get("/api/skills/", **bearer(BOB_MAIN, [SKILLS]))
    assert_invalid_token(response, "no account")


def test_sold_character_maps_to_nobody(alice_main, bearer):
    headers = bearer(ALICE_MAIN, [SKILLS], owner_hash="a-new-owner-hash=")
    assert_invalid_token(Client().get("/api/skills/", **headers), "no account")


def test_character_held_by_two_accounts_is_not_guessed(alice_main, bearer, bob, esi_token):
    esi_token(bob, character_id=ALICE_MAIN, scopes=WALLET)
    assert_invalid_token(Client().get("/api/skills/", **bearer(ALICE_MAIN, [SKILLS])), "more than")


def test_inactive_user(alice, alice_main, bearer):
    get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
    assert_invalid_token(Client().get("/api/skills/", **bearer(ALICE_MAIN, [SKILLS])), "inactive")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer ....",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Bearer \xe9\xe9",
        # an alg that is not a string; a header nested 5000 deep
        "Bearer eyJhbGciOlsiUlMyNTYiXSwia2lkIjoieCJ9.eyJzdWIiOiJ4In0.c2ln",
        "Bearer " + "W1tb" * 1700 + ".eyJzdWIiOiJ4In0.c2ln",
    ],
)
def test_malformed_bearer_header(alice_main, header):
    response = Client().get("/api/skills/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert CHALLENGE.fullmatch(response["WWW-Authenticate"]), response["WWW-Authenticate"]


def test_alg_none_is_refused(alice_main, bearer, fake_sso):
    import base64
    import json

    _, payload, _ = bearer(ALICE_MAIN, [SKILLS])["HTTP_AUTHORIZATION"].split(".")
    head = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "x"}).encode()).decode()
    unsigned = f"Bearer {head.rstrip('=')}.{payload}."
    response = Client().get("/api/skills/", HTTP_AUTHORIZATION=unsigned)
    assert_invalid_token(response, "algorithm")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6c2VjcmV0", "Token abc", "Digest x=1", ""])
def test_other_schemes_are_left_to_other_authenticators(alice, alice_client, header, fake_sso):
    # Anonymous: nobody authenticated, so DRF asks for credentials, without an error.
    response = Client().get("/api/plain/", HTTP_AUTHORIZATION=header)
    assert (response.status_code, response["WWW-Authenticate"]) == (401, 'Bearer realm="api"')
    # With a session: SessionAuthentication still runs after ours returned None.
    assert alice_client.get("/api/plain/", HTTP_AUTHORIZATION=header).json()["user"] == alice.pk


# -- the SSO's keys out of reach: 503, the token is not called invalid --------------------------


def test_jwks_unreachable_is_503_with_retry_after(alice_main, bearer, fake_sso):
    headers = bearer(ALICE_MAIN, [SKILLS])
    clear_jwks_cache()
    fake_sso.inject("server_error", endpoint="jwks", times=None)
    response = Client().get("/api/skills/", **headers)
    assert response.status_code == 503
    assert response.json() == {"detail": SSOUnavailable.default_detail}
    assert int(response["Retry-After"]) > 0
    assert "WWW-Authenticate" not in response
    fake_sso.clear_faults()
    assert Client().get("/api/skills/", **headers).status_code == 200


# -- cost ---------------------------------------------------------------------------------------


def test_one_query_and_no_sso_call_per_warm_request(
    alice_main, bearer, fake_sso, django_assert_num_queries
):
    headers = bearer(ALICE_MAIN, [SKILLS])
    assert Client().get("/api/skills/", **headers).status_code == 200  # JWKS warm
    jwks_calls = fake_sso.calls["jwks"]
    client = Client()
    for url in ("/api/skills/", "/api/tokens/", "/api/characters/", "/api/fn/skills/"):
        with django_assert_num_queries(1):  # the user lookup; scopes come from the JWT
            assert client.get(url, **headers).status_code == 200
    assert fake_sso.calls["jwks"] == jwks_calls
