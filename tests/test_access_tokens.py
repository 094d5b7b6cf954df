"""Every JWT rule of DESIGN.md section 4, each broken alone; and the JWKS cache."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from esi_views import jwks
from esi_views.access_tokens import verify_access_token
from esi_views.exceptions import InvalidJWTError, SSOServerError

CHARACTER_ID = 90000002


@pytest.fixture
def pilot(fake_sso):
    return fake_sso.add_character(CHARACTER_ID, "Jay Double-U Tee", owner_hash="owner-hash-1=")


def _reason(token: str) -> str:
    with pytest.raises(InvalidJWTError) as caught:
        verify_access_token(token)
    return caught.value.reason


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_valid_tokens_of_both_algorithms_verify(fake_sso, pilot, alg):
    token = fake_sso.mint_access_token(CHARACTER_ID, ["a.v1", "b.v1"], alg=alg)
    claims = verify_access_token(token)
    assert (claims.character_id, claims.character_name) == (CHARACTER_ID, "Jay Double-U Tee")
    assert claims.owner_hash == "owner-hash-1="
    assert claims.scopes == {"a.v1", "b.v1"}
    assert claims.claims["sub"] == f"CHARACTER:EVE:{CHARACTER_ID}"


def test_scp_may_be_one_string_or_absent(fake_sso, pilot):
    one = fake_sso.mint_access_token(CHARACTER_ID, ["only.v1"])
    assert json.loads(base64.urlsafe_b64decode(one.split(".")[1] + "==="))["scp"] == "only.v1"
    assert verify_access_token(one).scopes == {"only.v1"}
    assert verify_access_token(fake_sso.mint_access_token(CHARACTER_ID, [])).scopes == set()


def test_both_issuer_forms_are_accepted_and_others_not(fake_sso, pilot):
    bare = fake_sso.base_url.split("://", 1)[1]
    assert verify_access_token(fake_sso.mint_access_token(CHARACTER_ID, issuer=bare))
    assert verify_access_token(fake_sso.mint_access_token(CHARACTER_ID, issuer=fake_sso.base_url))
    assert (
        _reason(fake_sso.mint_access_token(CHARACTER_ID, issuer="https://evil.example")) == "issuer"
    )


@pytest.mark.parametrize(
    "audience", [["EVE Online"], ["tests-someone-else", "EVE Online"], "EVE Online", []]
)
def test_audience_must_contain_our_client_id_and_eve_online(fake_sso, pilot, audience):
    assert _reason(fake_sso.mint_access_token(CHARACTER_ID, audience=audience)) == "audience"


def test_audience_without_eve_online_is_refused(fake_sso, pilot, settings):
    token = fake_sso.mint_access_token(CHARACTER_ID, audience=[settings.ESI_SSO_CLIENT_ID])
    assert _reason(token) == "audience"


def test_expiry_is_checked_with_a_small_leeway(fake_sso, pilot, settings):
    settings.ESI_JWT_LEEWAY = 5
    assert verify_access_token(fake_sso.mint_access_token(CHARACTER_ID, expires_in=-2))
    assert _reason(fake_sso.mint_access_token(CHARACTER_ID, expires_in=-60)) == "expired"


@pytest.mark.parametrize(
    "sub",
    [
        "CHARACTER:EVE:abc",
        "CORPORATION:EVE:98000001",
        "CHARACTER:EVE:",
        "90000002",
        "CHARACTER:EVE:1 ",
        "CHARACTER:EVE:0",
    ],
)
def test_subject_must_be_a_character(fake_sso, pilot, sub):
    assert _reason(fake_sso.mint_access_token(CHARACTER_ID, sub=sub)) == "subject"


def test_signature_must_verify(fake_sso, pilot):
    token = fake_sso.mint_access_token(CHARACTER_ID, sign_with_foreign_key=True)
    assert _reason(token) == "signature"
    header, payload, signature = fake_sso.mint_access_token(CHARACTER_ID).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
    claims["name"] = "Someone Else"
    assert _reason(f"{header}.{_b64(claims)}.{signature}") == "signature"


def test_kid_must_name_a_published_key_of_the_same_algorithm(fake_sso, pilot):
    rs256_kid = next(k["kid"] for k in fake_sso.jwks["keys"] if k["kty"] == "RSA")
    assert _reason(fake_sso.mint_access_token(CHARACTER_ID, kid="no-such-kid")) == "kid"
    # An ES256 token claiming the RSA key: the alg/key pair must match.
    assert (
        _reason(fake_sso.mint_access_token(CHARACTER_ID, alg="ES256", kid=rs256_kid)) == "algorithm"
    )


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", None])
def test_only_rs256_and_es256_are_accepted(fake_sso, pilot, alg):
    _, payload, signature = fake_sso.mint_access_token(CHARACTER_ID).split(".")
    header = {"alg": alg, "kid": fake_sso.jwks["keys"][0]["kid"], "typ": "JWT"}
    assert _reason(f"{_b64(header)}.{payload}.{signature}") == "algorithm"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "!!!.e30.e30", "e30.e30"])
def test_garbage_is_malformed_not_a_crash(fake_sso, token):
    assert _reason(token) in {"malformed", "algorithm"}


# -- JWKS cache --------------------------------------------------------------------------------


def test_jwks_is_fetched_once_and_then_served_from_cache(fake_sso, pilot):
    for _ in range(5):
        verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    assert fake_sso.calls["jwks"] == 1
    jwks._memory.clear()  # a new process: the shared Django cache still has the keys
    verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    assert fake_sso.calls["jwks"] == 1


def test_jwks_lifetime_follows_cache_control(fake_sso, pilot):
    jwt = fake_sso.mint_access_token(CHARACTER_ID)
    before = time.monotonic()
    verify_access_token(jwt)
    after = time.monotonic()
    _, expires = jwks._memory[fake_sso.base_url + "/oauth/jwks"]
    assert before + 300 - 5 <= expires <= after + 300 + 5  # the 300 s max-age


@pytest.mark.parametrize(
    ("header", "ttl"),
    [("public, max-age=120", 120), ("max-age=0", 0), ("no-store", 0), ("", 300)],
)
def test_cache_control_parsing(header, ttl, settings):
    settings.ESI_JWKS_DEFAULT_TTL = 300
    response = requests.Response()
    if header:
        response.headers["Cache-Control"] = header
    assert jwks._ttl(response) == ttl


def test_key_rotation_is_picked_up_but_unknown_kids_refetch_at_most_once_a_minute(fake_sso, pilot):
    verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    fake_sso.rotate_keys()
    # Just fetched: a new kid within the minute is not worth another fetch...
    with pytest.raises(InvalidJWTError):
        verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    assert fake_sso.calls["jwks"] == 1
    jwks.clear_jwks_cache()
    verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    assert fake_sso.calls["jwks"] == 2


def test_unknown_kid_refetches_after_the_interval(fake_sso, pilot, settings):
    settings.ESI_JWKS_REFETCH_INTERVAL = 1
    verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    fake_sso.rotate_keys()
    for _ in range(3):  # a flood of unknown kids makes no extra fetches
        with pytest.raises(InvalidJWTError):
            verify_access_token(fake_sso.mint_access_token(CHARACTER_ID, kid="forged"))
    assert fake_sso.calls["jwks"] == 1
    time.sleep(1.1)
    assert verify_access_token(fake_sso.mint_access_token(CHARACTER_ID)).character_id
    assert fake_sso.calls["jwks"] == 2


def test_jwks_get_is_retried_on_503_and_timeouts(fake_sso, pilot, settings):
    fake_sso.inject("server_error", endpoint="jwks", status=503)
    verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    assert fake_sso.calls["jwks"] == 2
    jwks.clear_jwks_cache()
    settings.ESI_SSO_TIMEOUT = (2.0, 0.3)
    fake_sso.inject("timeout", endpoint="jwks", seconds=1)
    verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    assert fake_sso.calls["jwks"] == 4


def test_jwks_down_is_transient(fake_sso, pilot):
    fake_sso.inject("server_error", endpoint="jwks", status=500)
    with pytest.raises(SSOServerError):
        verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))


@pytest.mark.parametrize("alg", [["RS256"], {"RS256": 1}, 256])
def test_an_alg_that_is_not_a_string_is_refused(fake_sso, pilot, alg):
    _, payload, signature = fake_sso.mint_access_token(CHARACTER_ID).split(".")
    header = {"alg": alg, "kid": fake_sso.jwks["keys"][0]["kid"]}
    assert _reason(f"{_b64(header)}.{payload}.{signature}") == "algorithm"


@pytest.mark.parametrize("raw", [b"[" * 5000, b'{"a":' * 400 + b"1" + b"}" * 400])
def test_a_monstrous_header_is_malformed_not_a_crash(fake_sso, pilot, raw):
    _, payload, signature = fake_sso.mint_access_token(CHARACTER_ID).split(".")
    header = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert _reason(f"{header}.{payload}.{signature}") == "malformed"


def test_no_cache_jwks_does_not_open_the_door_to_a_refetch_flood(fake_sso, pilot, monkeypatch):
    monkeypatch.setattr(jwks, "_ttl", lambda response: 0)  # Cache-Control: no-store
    assert verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    for i in range(20):
        with pytest.raises(InvalidJWTError):
            verify_access_token(fake_sso.mint_access_token(CHARACTER_ID, kid=f"forged-{i}"))
    assert verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))  # stale keys serve
    assert fake_sso.calls["jwks"] == 1


def test_a_jwks_cache_that_is_down_is_worked_around(fake_sso, pilot, settings, caplog):
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.2},
        },
    }
    settings.ESI_JWKS_CACHE_ALIAS = "down"
    jwks._memory.clear()
    jwks._last_fetch.clear()
    for _ in range(3):
        assert verify_access_token(fake_sso.mint_access_token(CHARACTER_ID)).character_id
    assert fake_sso.calls["jwks"] == 1  # the in-process copy serves
    with pytest.raises(InvalidJWTError):  # and unknown kids are still rate limited
        verify_access_token(fake_sso.mint_access_token(CHARACTER_ID, kid="forged"))
    assert fake_sso.calls["jwks"] == 1
    assert "JWKS cache 'down' unavailable" in caplog.text


@pytest.mark.parametrize("crit", [[1], ["exp"], "b64", []])
def test_critical_header_extensions_are_refused(fake_sso, pilot, crit):
    _, payload, signature = fake_sso.mint_access_token(CHARACTER_ID).split(".")
    kid = next(k["kid"] for k in fake_sso.jwks["keys"] if k["kty"] == "RSA")
    header = {"alg": "RS256", "kid": kid, "crit": crit}
    assert _reason(f"{_b64(header)}.{payload}.{signature}") == "malformed"


def test_a_dummy_cache_does_not_lift_the_refetch_limit(fake_sso, pilot, settings):
    settings.CACHES = {
        **settings.CACHES,
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    settings.ESI_JWKS_CACHE_ALIAS = "dummy"
    jwks._memory.clear()
    jwks._last_fetch.clear()
    verify_access_token(fake_sso.mint_access_token(CHARACTER_ID))
    for i in range(10):
        with pytest.raises(InvalidJWTError):
            verify_access_token(fake_sso.mint_access_token(CHARACTER_ID, kid=f"forged-{i}"))
    assert fake_sso.calls["jwks"] == 1
