"""FakeEveSSO over real HTTP: the protocol, the JWT shape, the fault switches, the CLI."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from esi_views.testing import FakeCharacter, FakeEveSSO

CLIENT_ID = "test-client"
SECRET = "test-secret"
CALLBACK = "http://testserver/esi/callback/"
PILOT = 90000001
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server():
    with FakeEveSSO(client_id=CLIENT_ID, client_secret=SECRET, callback_url=CALLBACK) as sso:
        yield sso


@pytest.fixture
def sso(server):
    server.reset()
    server.add_character(PILOT, "Amarr Pilot")
    server.select_character(PILOT)
    yield server
    server.reset()


# -- helpers -----------------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(challenge: str, scope: str = "esi-a.v1 esi-b.v1", **overrides) -> dict:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": CALLBACK,
        "scope": scope,
        "state": "st4te",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def query_of(response: requests.Response) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def get_code(sso: FakeEveSSO, scope: str = "esi-a.v1 esi-b.v1") -> tuple[str, str]:
    verifier, challenge = pkce()
    response = requests.get(
        f"{sso.base_url}/v2/oauth/authorize",
        params=authorize_params(challenge, scope),
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    return query_of(response)["code"], verifier


def token_request(sso: FakeEveSSO, data: dict, auth=(CLIENT_ID, SECRET), **kw):
    return requests.post(f"{sso.base_url}/v2/oauth/token", data=data, auth=auth, timeout=5, **kw)


def exchange(sso: FakeEveSSO, code: str, verifier: str, **kw) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": CALLBACK,
    }
    return token_request(sso, data, **kw)


def login(sso: FakeEveSSO, scope: str = "esi-a.v1 esi-b.v1") -> dict:
    response = exchange(sso, *get_code(sso, scope))
    assert response.status_code == 200, response.text
    return response.json()


def refresh(sso: FakeEveSSO, refresh_token: str, **extra) -> requests.Response:
    return token_request(
        sso, {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    )


def header_of(token: str) -> dict:
    return extract_compact(token.encode()).protected


def decode(sso: FakeEveSSO, token: str, algorithms=("RS256", "ES256")) -> jwt.Token:
    jwks = requests.get(f"{sso.base_url}/oauth/jwks", timeout=5).json()
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=list(algorithms))


# -- discovery and lifecycle -------------------------------------------------------------


def test_metadata(sso):
    response = requests.get(f"{sso.base_url}/.well-known/oauth-authorization-server", timeout=5)
    meta = response.json()
    base = sso.base_url
    assert response.headers["Content-Type"] == "application/json"
    assert meta["issuer"] == base
    assert meta["authorization_endpoint"] == f"{base}/v2/oauth/authorize"
    assert meta["token_endpoint"] == f"{base}/v2/oauth/token"
    assert meta["revocation_endpoint"] == f"{base}/v2/oauth/revoke"
    assert meta["jwks_uri"] == f"{base}/oauth/jwks"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]


def test_settings_point_at_the_server(sso):
    assert sso.settings() == {
        "ESI_SSO_BASE_URL": sso.base_url,
        "ESI_SSO_CLIENT_ID": CLIENT_ID,
        "ESI_SSO_CLIENT_SECRET": SECRET,
        "ESI_SSO_CALLBACK_URL": CALLBACK,
        "ESI_CHARACTER_PORTRAIT_URL": sso.base_url + "/characters/{character_id}/portrait",
    }
    assert sso.base_url.startswith("http://127.0.0.1:") and not sso.base_url.endswith("/")


def test_start_stop_are_idempotent_and_stop_closes_the_port():
    sso = FakeEveSSO()
    with pytest.raises(RuntimeError):
        _ = sso.base_url
    assert sso.start() is sso.start()
    url = sso.base_url
    assert requests.get(f"{url}/oauth/jwks", timeout=5).status_code == 200
    sso.stop()
    sso.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/oauth/jwks", timeout=2)


def test_unknown_path_is_404_json(sso):
    response = requests.get(f"{sso.base_url}/nope", timeout=5)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_importing_the_package_needs_no_django_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys, esi_views.testing as t; assert 'esi_views.testing.fake_sso' not in "
        "sys.modules; t.FakeEveSSO; assert 'django.conf' not in sys.modules; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "ok", result.stderr


# -- authorize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"client_id": "someone-else"}, "client_id"),
        ({"redirect_uri": "https://evil.example/cb"}, "redirect_uri"),
        ({"redirect_uri": CALLBACK + "extra"}, "redirect_uri"),
        ({"code_challenge": None}, "code_challenge"),
        ({"code_challenge_method": "plain"}, "S256"),
        ({"response_type": "token"}, "response_type"),
    ],
)
def test_authorize_rejects_bad_requests_without_redirecting(sso, override, message):
    _, challenge = pkce()
    response = requests.get(
        f"{sso.base_url}/v2/oauth/authorize",
        params=authorize_params(challenge, **override),
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert message in response.text


def test_authorize_auto_approves_the_selected_character(sso):
    _, challenge = pkce()
    response = requests.get(
        f"{sso.base_url}/v2/oauth/authorize",
        params=authorize_params(challenge),
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith(CALLBACK + "?")
    query = query_of(response)
    assert query["state"] == "st4te"
    assert len(query["code"]) >= 16


def test_picker_page_lists_characters_and_is_self_contained(sso):
    sso.add_character(90000002, "Caldari <Pilot>")
    sso.select_character(None)
    _, challenge = pkce()
    response = requests.get(
        f"{sso.base_url}/v2/oauth/authorize",
        params=authorize_params(challenge),
        allow_redirects=False,
        timeout=5,
    )
    page = response.text
    assert response.status_code == 200
    assert "Amarr Pilot" in page and "Caldari &lt;Pilot&gt;" in page
    assert f'src="{sso.base_url}/characters/{PILOT}/portrait"' in page
    assert 'name="character_id" value="90000002"' in page
    assert "Cancel" in page
    assert "<script" not in page and "<link" not in page and "cdn" not in page.lower()


def test_picker_approve_issues_a_code_for_the_chosen_character(sso):
    sso.add_character(90000002, "Caldari Pilot")
    sso.select_character(None)
    verifier, challenge = pkce()
    form = {**authorize_params(challenge), "character_id": "90000002"}
    response = requests.post(
        f"{sso.base_url}/v2/oauth/authorize/approve", data=form, allow_redirects=False, timeout=5
    )
    assert response.status_code == 302
    query = query_of(response)
    assert query["state"] == "st4te"
    token = exchange(sso, query["code"], verifier).json()["access_token"]
    assert decode(sso, token).claims["sub"] == "CHARACTER:EVE:90000002"


def test_picker_cancel_redirects_with_access_denied(sso):
    sso.select_character(None)
    _, challenge = pkce()
    form = {**authorize_params(challenge), "action": "cancel"}
    response = requests.post(
        f"{sso.base_url}/v2/oauth/authorize/approve", data=form, allow_redirects=False, timeout=5
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith(CALLBACK + "?")
    query = query_of(response)
    assert query["error"] == "access_denied"
    assert query["error_description"]
    assert query["state"] == "st4te"
    assert "code" not in query


def test_approve_rejects_unknown_characters_and_bad_params(sso):
    _, challenge = pkce()
    url = f"{sso.base_url}/v2/oauth/authorize/approve"
    unknown = {**authorize_params(challenge), "character_id": "123"}
    assert requests.post(url, data=unknown, allow_redirects=False, timeout=5).status_code == 400
    foreign = {
        **authorize_params(challenge, redirect_uri="https://evil.example/"),
        "action": "cancel",
    }
    response = requests.post(url, data=foreign, allow_redirects=False, timeout=5)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_select_character_requires_a_known_character(sso):
    with pytest.raises(KeyError):
        sso.select_character(42)


# -- token endpoint ----------------------------------------------------------------------


def test_code_exchange_answers_like_eve(sso):
    code, verifier = get_code(sso)
    response = exchange(sso, code, verifier)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    answer = response.json()
    assert set(answer) == {"access_token", "expires_in", "token_type", "refresh_token"}
    assert answer["expires_in"] == 1199
    assert answer["token_type"] == "Bearer"
    assert answer["access_token"].count(".") == 2


def test_wrong_verifier_is_invalid_grant(sso):
    code, _ = get_code(sso)
    response = exchange(sso, code, "not-the-verifier")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_code_is_single_use(sso):
    code, verifier = get_code(sso)
    assert exchange(sso, code, verifier).status_code == 200
    again = exchange(sso, code, verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_an_expired_code_is_invalid_grant(sso):
    sso.code_lifetime = -1
    code, verifier = get_code(sso)
    response = exchange(sso, code, verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_different_redirect_uri_is_invalid_grant(sso):
    code, verifier = get_code(sso)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": "http://testserver/other/",
    }
    assert token_request(sso, data).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("auth", [None, (CLIENT_ID, "wrong"), ("other", SECRET)])
def test_client_auth_is_required(sso, auth):
    code, verifier = get_code(sso)
    response = exchange(sso, code, verifier, auth=auth)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_secret_in_the_form_is_not_enough(sso):
    code, verifier = get_code(sso)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    assert token_request(sso, data, auth=None).status_code == 401


def test_unsupported_grant_type(sso):
    response = token_request(sso, {"grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_refresh_mode_same(sso):
    first = login(sso)
    answer = refresh(sso, first["refresh_token"]).json()
    assert answer["refresh_token"] == first["refresh_token"]
    assert answer["access_token"] != first["access_token"]
    assert refresh(sso, first["refresh_token"]).status_code == 200


def test_refresh_mode_rotate_invalidates_the_old_token(sso):
    sso.refresh_token_mode = "rotate"
    first = login(sso)
    answer = refresh(sso, first["refresh_token"]).json()
    assert answer["refresh_token"] != first["refresh_token"]
    old = refresh(sso, first["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"
    assert refresh(sso, answer["refresh_token"]).status_code == 200


def test_refresh_mode_omit_leaves_the_refresh_token_out(sso):
    sso.refresh_token_mode = "omit"
    first = login(sso)
    answer = refresh(sso, first["refresh_token"]).json()
    assert "refresh_token" not in answer
    assert answer["token_type"] == "Bearer"
    assert refresh(sso, first["refresh_token"]).status_code == 200


def test_refresh_can_narrow_but_not_widen_scopes(sso):
    first = login(sso)
    narrowed = refresh(sso, first["refresh_token"], scope="esi-a.v1").json()
    assert decode(sso, narrowed["access_token"]).claims["scp"] == "esi-a.v1"
    widened = refresh(sso, first["refresh_token"], scope="esi-a.v1 esi-z.v1")
    assert widened.status_code == 400 and widened.json()["error"] == "invalid_scope"


def test_unknown_refresh_token_is_invalid_grant(sso):
    response = refresh(sso, "never-issued")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_revoke_then_refresh_is_invalid_grant(sso):
    first = login(sso)
    url = f"{sso.base_url}/v2/oauth/revoke"
    data = {"token": first["refresh_token"], "token_type_hint": "refresh_token"}
    assert requests.post(url, data=data, timeout=5).status_code == 401  # needs Basic auth
    response = requests.post(url, data=data, auth=(CLIENT_ID, SECRET), timeout=5)
    assert response.status_code == 200
    assert response.content == b""
    assert refresh(sso, first["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoke_all_kills_only_that_characters_tokens(sso):
    sso.add_character(90000002, "Caldari Pilot")
    mine = login(sso)
    sso.select_character(90000002)
    theirs = login(sso)
    sso.revoke_all(PILOT)
    assert refresh(sso, mine["refresh_token"]).json()["error"] == "invalid_grant"
    assert refresh(sso, theirs["refresh_token"]).status_code == 200


# -- keys and the JWT --------------------------------------------------------------------


def test_jwks_shape_and_cache_control(sso):
    response = requests.get(f"{sso.base_url}/oauth/jwks", timeout=5)
    assert response.headers["Cache-Control"] == "public, max-age=300"
    document = response.json()
    assert document == sso.jwks
    assert document["SkipUnresolvedJsonWebKeys"] is True
    keys = {key["alg"]: key for key in document["keys"]}
    assert set(keys) == {"RS256", "ES256"}
    assert keys["RS256"]["kty"] == "RSA" and keys["ES256"]["crv"] == "P-256"
    for key in keys.values():
        assert key["use"] == "sig" and key["kid"]
        assert "d" not in key  # public halves only


def test_access_token_claims_match_eve(sso):
    before = int(time.time())
    answer = login(sso)
    after = time.time()
    token = decode(sso, answer["access_token"])
    claims = token.claims
    rs256_kid = next(k["kid"] for k in sso.jwks["keys"] if k["alg"] == "RS256")
    assert token.header == {"alg": "RS256", "kid": rs256_kid, "typ": "JWT"}
    assert claims["scp"] == ["esi-a.v1", "esi-b.v1"]
    assert len(claims["jti"]) == 36 and claims["jti"].count("-") == 4
    assert claims["kid"] == rs256_kid
    assert claims["sub"] == f"CHARACTER:EVE:{PILOT}"
    assert claims["azp"] == CLIENT_ID
    assert (claims["tenant"], claims["tier"], claims["region"]) == ("tranquility", "live", "world")
    assert claims["aud"] == [CLIENT_ID, "EVE Online"]
    assert claims["name"] == "Amarr Pilot"
    assert claims["owner"] == sso.characters[0].owner_hash
    assert claims["iss"] == sso.base_url
    assert before <= claims["iat"] <= after  # minted during the login, however long it took
    assert claims["exp"] - claims["iat"] == 1199


def test_single_scope_is_a_string_and_no_scope_is_omitted(sso):
    assert decode(sso, login(sso, "esi-a.v1")["access_token"]).claims["scp"] == "esi-a.v1"
    assert "scp" not in decode(sso, login(sso, "")["access_token"]).claims


def test_default_owner_hash_looks_like_eves_and_is_stable(sso):
    owner = sso.characters[0].owner_hash
    assert len(base64.b64decode(owner)) == 20
    assert sso.add_character(PILOT, "Amarr Pilot").owner_hash == owner
    assert FakeEveSSO()._default_owner_hash(PILOT) != owner  # random salt per server


def test_changing_the_owner_hash_shows_in_later_tokens(sso):
    character = sso.characters[0]
    assert isinstance(character, FakeCharacter)
    first = login(sso)
    character.owner_hash = "edited-hash"
    refreshed = refresh(sso, first["refresh_token"]).json()
    assert decode(sso, refreshed["access_token"]).claims["owner"] == "edited-hash"
    new_hash = sso.change_owner(PILOT)
    assert new_hash != "edited-hash"
    refreshed = refresh(sso, first["refresh_token"]).json()
    assert decode(sso, refreshed["access_token"]).claims["owner"] == new_hash


def test_mint_access_token_defaults_and_es256(sso):
    token = sso.mint_access_token(PILOT, ["esi-a.v1"], alg="ES256")
    decoded = decode(sso, token, algorithms=["ES256"])
    es256_kid = next(k["kid"] for k in sso.jwks["keys"] if k["alg"] == "ES256")
    assert decoded.header["alg"] == "ES256" and decoded.header["kid"] == es256_kid
    assert decoded.claims["scp"] == "esi-a.v1"
    assert decoded.claims["name"] == "Amarr Pilot"


def test_mint_access_token_overrides_break_one_rule_each(sso):
    mint = sso.mint_access_token
    assert decode(sso, mint(PILOT, audience=["x"])).claims["aud"] == ["x"]
    assert decode(sso, mint(PILOT, issuer="login.eveonline.com")).claims["iss"] == (
        "login.eveonline.com"
    )
    assert decode(sso, mint(PILOT, owner_hash="h")).claims["owner"] == "h"
    assert decode(sso, mint(PILOT, sub="CHARACTER:EVE:abc")).claims["sub"] == "CHARACTER:EVE:abc"
    expired = decode(sso, mint(PILOT, expires_in=-60)).claims
    assert expired["exp"] < time.time()
    unknown_kid = mint(PILOT, kid="no-such-kid")
    assert header_of(unknown_kid)["kid"] == "no-such-kid"
    assert jwt.decode(unknown_kid, sso._keys.rs256, algorithms=["RS256"]).claims["kid"] == (
        "no-such-kid"
    )
    with pytest.raises(BadSignatureError):
        decode(sso, mint(PILOT, sign_with_foreign_key=True))
    with pytest.raises(ValueError):
        mint(PILOT, alg="HS256")


def test_rotate_keys_replaces_the_kids(sso):
    old_token = sso.mint_access_token(PILOT)
    old_kids = {key["kid"] for key in sso.jwks["keys"]}
    sso.rotate_keys()
    new_kids = {
        key["kid"] for key in requests.get(f"{sso.base_url}/oauth/jwks", timeout=5).json()["keys"]
    }
    assert new_kids.isdisjoint(old_kids) and len(new_kids) == 2
    with pytest.raises(InvalidKeyIdError):
        decode(sso, old_token)
    assert decode(sso, sso.mint_access_token(PILOT)).claims["sub"].endswith(str(PILOT))


def test_keys_are_shared_between_instances_until_rotated():
    def kids(sso: FakeEveSSO) -> set[str]:
        return {key["kid"] for key in sso.jwks["keys"]}

    first, second = FakeEveSSO(), FakeEveSSO()
    assert kids(first) == kids(second)
    first.rotate_keys()
    assert kids(first).isdisjoint(kids(second))
    assert kids(second) == kids(FakeEveSSO())  # rotation touched only that instance


# -- fault injection ---------------------------------------------------------------------


def test_server_error_fault_then_normal(sso):
    first = login(sso)
    sso.inject("server_error", status=503, times=2)
    for _ in range(2):
        response = refresh(sso, first["refresh_token"])
        assert response.status_code == 503
        assert response.headers["Content-Type"].startswith("text/html")
    assert refresh(sso, first["refresh_token"]).status_code == 200


def test_rate_limited_fault(sso):
    first = login(sso)
    sso.inject("rate_limited", retry_after=7)
    response = refresh(sso, first["refresh_token"])
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"] == "rate_limited"
    assert refresh(sso, first["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    ("fault", "status"), [("invalid_grant", 400), ("invalid_client", 401), ("invalid_token", 400)]
)
def test_oauth_error_faults(sso, fault, status):
    first = login(sso)
    sso.inject(fault)
    response = refresh(sso, first["refresh_token"])
    assert response.status_code == status
    assert response.json()["error"] == fault
    assert refresh(sso, first["refresh_token"]).status_code == 200


def test_malformed_json_fault(sso):
    first = login(sso)
    sso.inject("malformed_json")
    response = refresh(sso, first["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(ValueError):
        response.json()
    assert refresh(sso, first["refresh_token"]).json()["token_type"] == "Bearer"


def test_missing_fields_fault(sso):
    first = login(sso)
    sso.inject("missing_fields")
    answer = refresh(sso, first["refresh_token"]).json()
    assert "access_token" in answer
    assert "expires_in" not in answer and "token_type" not in answer
    sso.inject("missing_fields", fields=["refresh_token"])
    answer = refresh(sso, first["refresh_token"]).json()
    assert "refresh_token" not in answer and answer["expires_in"] == 1199


def test_owner_hash_change_fault(sso):
    first = login(sso)
    old_owner = sso.characters[0].owner_hash
    sso.inject("owner_hash_change")
    claims = decode(sso, refresh(sso, first["refresh_token"]).json()["access_token"]).claims
    assert claims["owner"] != old_owner
    assert sso.characters[0].owner_hash == claims["owner"]


def test_jwt_shaping_faults(sso):
    first = login(sso)

    def next_claims(fault):
        sso.inject(fault)
        token = refresh(sso, first["refresh_token"]).json()["access_token"]
        return decode(sso, token).claims

    assert next_claims("wrong_audience")["aud"] == ["someone-else", "EVE Online"]
    expired = next_claims("expired_jwt")
    assert expired["exp"] <= time.time() - 110
    assert next_claims("bare_issuer")["iss"] == urlsplit(sso.base_url).netloc
    sso.inject("bad_signature")
    bad = refresh(sso, first["refresh_token"]).json()["access_token"]
    assert header_of(bad)["kid"] in {k["kid"] for k in sso.jwks["keys"]}
    with pytest.raises(BadSignatureError):
        decode(sso, bad)
    # and after those, a normal token again
    normal = decode(sso, refresh(sso, first["refresh_token"]).json()["access_token"]).claims
    assert normal["aud"] == [CLIENT_ID, "EVE Online"] and normal["iss"] == sso.base_url


def test_timeout_fault_delays_then_answers(sso):
    first = login(sso)
    # Short: the delayed handler runs on, and the server is shared with later tests.
    sso.inject("timeout", seconds=0.6)
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{sso.base_url}/v2/oauth/token",
            timeout=0.2,
            auth=(CLIENT_ID, SECRET),
            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        )
    # The first request used the fault up (a recorded fact: no wall-clock bound needed).
    assert not sso._protocol._faults.get("token")
    assert refresh(sso, first["refresh_token"]).status_code == 200


def test_faults_on_other_endpoints(sso):
    sso.inject("server_error", endpoint="jwks")
    assert requests.get(f"{sso.base_url}/oauth/jwks", timeout=5).status_code == 500
    assert requests.get(f"{sso.base_url}/oauth/jwks", timeout=5).status_code == 200
    sso.inject("rate_limited", endpoint="metadata")
    url = f"{sso.base_url}/.well-known/oauth-authorization-server"
    assert requests.get(url, timeout=5).status_code == 429
    first = login(sso)
    sso.inject("server_error", endpoint="revoke")
    response = requests.post(
        f"{sso.base_url}/v2/oauth/revoke",
        auth=(CLIENT_ID, SECRET),
        data={"token": first["refresh_token"]},
        timeout=5,
    )
    assert response.status_code == 500
    assert refresh(sso, first["refresh_token"]).status_code == 200  # not revoked


def test_fault_until_cleared(sso):
    first = login(sso)
    sso.inject("server_error", times=None)
    assert [refresh(sso, first["refresh_token"]).status_code for _ in range(3)] == [500] * 3
    sso.clear_faults()
    assert refresh(sso, first["refresh_token"]).status_code == 200


def test_inject_rejects_nonsense(sso):
    with pytest.raises(ValueError):
        sso.inject("gremlins")
    with pytest.raises(ValueError):
        sso.inject("server_error", endpoint="nowhere")
    with pytest.raises(ValueError):
        sso.inject("wrong_audience", endpoint="jwks")
    with pytest.raises(ValueError):
        sso.inject("server_error", times=0)


def test_latency_is_applied(sso):
    url = f"{sso.base_url}/oauth/jwks"
    # 1 s: a request without latency may take a few hundred ms on a loaded machine.
    sso.latency = 1.0
    started = time.monotonic()
    requests.get(url, timeout=5)
    assert time.monotonic() - started >= 1.0
    sso.latency = 0.0
    started = time.monotonic()
    requests.get(url, timeout=5)
    assert time.monotonic() - started < 1.0


def test_requests_are_served_concurrently(sso):
    first = login(sso)
    sso.latency = 0.3
    sso.calls.clear()
    sso.max_concurrent.clear()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda _: refresh(sso, first["refresh_token"]).status_code, range(8))
        )
    assert statuses == [200] * 8
    assert sso.calls["token:refresh_token"] == 8
    # Overlapping, not one after another: counted by the server, not by a wall clock
    # that a loaded machine stretches.
    assert sso.max_concurrent["token"] >= 2


# -- counters, portraits, reset ----------------------------------------------------------


def test_calls_are_counted(sso):
    first = login(sso)
    refresh(sso, first["refresh_token"])
    refresh(sso, first["refresh_token"])
    requests.get(f"{sso.base_url}/oauth/jwks", timeout=5)
    requests.get(f"{sso.base_url}/.well-known/oauth-authorization-server", timeout=5)
    requests.post(
        f"{sso.base_url}/v2/oauth/revoke",
        auth=(CLIENT_ID, SECRET),
        data={"token": first["refresh_token"]},
        timeout=5,
    )
    assert sso.calls["authorize"] == 1
    assert sso.calls["token"] == 3
    assert sso.calls["token:authorization_code"] == 1
    assert sso.calls["token:refresh_token"] == 2
    assert sso.calls["jwks"] == 1 and sso.calls["metadata"] == 1 and sso.calls["revoke"] == 1


def test_portraits(sso):
    response = requests.get(f"{sso.base_url}/characters/{PILOT}/portrait", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/svg+xml"
    assert response.text.startswith("<svg") and ">AP</text>" in response.text
    assert requests.get(f"{sso.base_url}/characters/1/portrait", timeout=5).status_code == 404


def test_reset_clears_state_but_keeps_keys_and_server(sso):
    first = login(sso)
    kids = {k["kid"] for k in sso.jwks["keys"]}
    sso.latency = 0.01
    sso.inject("server_error", times=None)
    calls = sso.calls
    sso.reset()
    assert sso.calls is calls  # references held by tests stay live
    assert sso.characters == [] and sso.selected_character is None
    assert not sso.calls and sso.latency == 0.0
    assert {k["kid"] for k in sso.jwks["keys"]} == kids
    assert refresh(sso, first["refresh_token"]).json()["error"] == "invalid_grant"  # no fault


# -- CLI ---------------------------------------------------------------------------------


def test_cli_starts_and_answers():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esi_views.testing.fake_sso",
            "--port",
            "0",
            "--quiet",
            "--character",
            "91000001:Cli Pilot",
            "--callback-url",
            "http://localhost:9/cb/",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    try:
        first_line = process.stdout.readline()
        base_url = first_line.strip().rsplit(" ", 1)[-1]
        assert base_url.startswith("http://127.0.0.1:"), first_line + process.stderr.read()
        assert "ESI_SSO_BASE_URL" in process.stdout.readline() + process.stdout.readline()
        portrait = requests.get(f"{base_url}/characters/91000001/portrait", timeout=5)
        assert portrait.status_code == 200
        _, challenge = pkce()
        picker = requests.get(
            f"{base_url}/v2/oauth/authorize",
            timeout=5,
            allow_redirects=False,
            params={
                **authorize_params(challenge),
                "client_id": "fake-client-id",
                "redirect_uri": "http://localhost:9/cb/",
            },
        )
        assert picker.status_code == 200 and "Cli Pilot" in picker.text
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()
        process.stderr.close()


def test_a_custom_issuer_is_used_and_announced_in_settings():
    from joserfc import jwt
    from joserfc.jwk import KeySet

    with FakeEveSSO(issuer="https://login.eveonline.com") as custom:
        custom.add_character(90000001, "Issuer Test")
        token = custom.mint_access_token(90000001)
        claims = jwt.decode(token, KeySet.import_key_set(custom.jwks)).claims
        assert claims["iss"] == "https://login.eveonline.com"
        assert custom.settings()["ESI_SSO_ISSUERS"] == ["https://login.eveonline.com"]
