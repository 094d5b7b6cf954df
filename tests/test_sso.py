"""The SSO client against the fake EVE SSO over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from esi_views import sso
from esi_views.exceptions import (
    InvalidClientError,
    InvalidGrantError,
    InvalidJWTError,
    InvalidTokenError,
    MissingSettingError,
    OwnerChangedError,
    SSOConfigurationError,
    SSOInvalidAnswerError,
    SSOMalformedResponseError,
    SSORateLimitedError,
    SSOServerError,
    SSOTimeoutError,
    SSOTransientError,
    SSOUnreachableError,
    TokenDeadError,
)
from tests.sso_helpers import authorize, login

SCOPES = ["esi-skills.read_skills.v1", "esi-wallet.read_character_wallet.v1"]


@pytest.fixture
def pilot(fake_sso):
    return fake_sso.add_character(90000001, "Ima Pilot")


# -- authorize URL ------------------------------------------------------------------------


def test_authorize_url_carries_code_flow_pkce_and_state(fake_sso, settings):
    request = sso.build_authorization_request("b.scope a.scope")
    parts = urlsplit(request.url)
    endpoint = f"{parts.scheme}://{parts.netloc}{parts.path}"
    assert endpoint == fake_sso.base_url + "/v2/oauth/authorize"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == settings.ESI_SSO_CLIENT_ID
    assert query["redirect_uri"] == settings.ESI_SSO_CALLBACK_URL
    assert query["scope"] == "a.scope b.scope"
    assert query["state"] == request.state and len(request.state) >= 32
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert request.scopes == {"a.scope", "b.scope"}


def test_every_authorize_request_has_fresh_state_and_verifier(fake_sso):
    first, second = sso.build_authorization_request(), sso.build_authorization_request()
    assert first.state != second.state
    assert first.code_verifier != second.code_verifier
    assert "scope=" not in first.url  # no scopes asked: no empty scope parameter


def test_authorize_needs_a_callback_url(fake_sso, settings):
    settings.ESI_SSO_CALLBACK_URL = ""
    with pytest.raises(MissingSettingError, match="ESI_SSO_CALLBACK_URL"):
        sso.build_authorization_request()


# -- code exchange ------------------------------------------------------------------------


def test_code_exchange_returns_verified_tokens(fake_sso, pilot):
    before = time.time()
    token = login(fake_sso, pilot.character_id, SCOPES)
    after = time.time()
    assert token.claims.character_id == 90000001
    assert token.claims.character_name == "Ima Pilot"
    assert token.claims.owner_hash == pilot.owner_hash
    assert token.claims.scopes == set(SCOPES)
    assert token.refresh_token
    # Minted between before and after (whole seconds in the JWT): about 20 minutes.
    assert before + 1199 - 5 <= token.expires_at.timestamp() <= after + 1199 + 5
    assert fake_sso.calls["token:authorization_code"] == 1


def test_code_is_single_use(fake_sso, pilot):
    code, request = authorize(fake_sso, pilot.character_id)
    sso.exchange_code(code, request.code_verifier)
    with pytest.raises(InvalidGrantError):
        sso.exchange_code(code, request.code_verifier)


def test_wrong_pkce_verifier_is_refused(fake_sso, pilot):
    code, _ = authorize(fake_sso, pilot.character_id)
    other = sso.build_authorization_request()
    with pytest.raises(InvalidGrantError) as caught:
        sso.exchange_code(code, other.code_verifier)
    assert isinstance(caught.value, TokenDeadError)
    assert caught.value.error == "invalid_grant"


def test_wrong_client_secret_is_a_configuration_error(fake_sso, pilot, settings):
    code, request = authorize(fake_sso, pilot.character_id)
    settings.ESI_SSO_CLIENT_SECRET = "not-the-secret"
    with pytest.raises(InvalidClientError) as caught:
        sso.exchange_code(code, request.code_verifier)
    assert isinstance(caught.value, SSOConfigurationError)


def test_missing_client_id_is_reported_before_any_request(fake_sso, settings):
    settings.ESI_SSO_CLIENT_ID = ""
    with pytest.raises(MissingSettingError, match="ESI_SSO_CLIENT_ID"):
        sso.exchange_code("code", "verifier")
    assert fake_sso.calls["token"] == 0


# -- refresh and revoke -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["same", "rotate", "omit"])
def test_refresh_in_each_refresh_token_mode(fake_sso, pilot, mode):
    first = login(fake_sso, pilot.character_id, SCOPES)
    fake_sso.refresh_token_mode = mode
    second = sso.refresh(first.refresh_token)
    assert second.claims.character_id == pilot.character_id
    assert second.access_token != first.access_token
    if mode == "rotate":
        assert second.refresh_token != first.refresh_token
        with pytest.raises(InvalidGrantError):
            sso.refresh(first.refresh_token)
    else:  # "omit": the answer had none, so the old one is kept
        assert second.refresh_token == first.refresh_token
    assert fake_sso.calls["token:refresh_token"] >= 1


def test_revoked_refresh_token_is_dead(fake_sso, pilot):
    token = login(fake_sso, pilot.character_id)
    sso.revoke(token.refresh_token)
    assert fake_sso.calls["revoke"] == 1
    with pytest.raises(InvalidGrantError):
        sso.refresh(token.refresh_token)


def test_owner_change_on_refresh_means_the_token_is_dead(fake_sso, pilot):
    token = login(fake_sso, pilot.character_id)
    fake_sso.inject("owner_hash_change")
    with pytest.raises(OwnerChangedError) as caught:
        sso.refresh(token.refresh_token, owner_hash=token.claims.owner_hash)
    assert caught.value.old_owner_hash == pilot.owner_hash or token.claims.owner_hash
    assert caught.value.new_owner_hash != token.claims.owner_hash
    assert isinstance(caught.value, TokenDeadError)


# -- fault switches: each one gives the error family callers act on -------------------------


@pytest.mark.parametrize(
    ("fault", "params", "error", "family"),
    [
        ("invalid_grant", {}, InvalidGrantError, TokenDeadError),
        ("invalid_token", {}, InvalidTokenError, TokenDeadError),
        ("invalid_client", {}, InvalidClientError, SSOConfigurationError),
        ("server_error", {"status": 500}, SSOServerError, SSOTransientError),
        ("rate_limited", {"retry_after": 120}, SSORateLimitedError, SSOTransientError),
        ("malformed_json", {}, SSOMalformedResponseError, SSOTransientError),
        ("missing_fields", {}, SSOMalformedResponseError, SSOTransientError),
        # A forged or broken JWT at login is its own family, not an SSO outage.
        ("wrong_audience", {}, InvalidJWTError, InvalidJWTError),
        ("expired_jwt", {}, InvalidJWTError, InvalidJWTError),
        ("bad_signature", {}, InvalidJWTError, InvalidJWTError),
    ],
)
def test_each_fault_on_the_code_exchange(fake_sso, pilot, fault, params, error, family):
    code, request = authorize(fake_sso, pilot.character_id)
    fake_sso.inject(fault, **params)
    with pytest.raises(error) as caught:
        sso.exchange_code(code, request.code_verifier)
    assert isinstance(caught.value, family)
    assert fake_sso.calls["token"] == 1  # a code exchange is never repeated once sent


def test_jwt_faults_name_the_rule_broken(fake_sso, pilot):
    token = login(fake_sso, pilot.character_id)
    for fault, reason in [
        ("wrong_audience", "audience"),
        ("expired_jwt", "expired"),
        ("bad_signature", "signature"),
    ]:
        fake_sso.inject(fault)
        # On a refresh it is transient (the stored token is fine), raised from the JWT error.
        with pytest.raises(SSOInvalidAnswerError) as caught:
            sso.refresh(token.refresh_token)
        assert caught.value.reason == reason
        assert isinstance(caught.value, SSOTransientError)
        assert isinstance(caught.value.__cause__, InvalidJWTError)
        assert not isinstance(caught.value.__cause__, SSOTransientError)


def test_bare_issuer_form_is_accepted(fake_sso, pilot):
    token = login(fake_sso, pilot.character_id)
    fake_sso.inject("bare_issuer")
    assert sso.refresh(token.refresh_token).claims.character_id == pilot.character_id


def test_long_retry_after_is_not_slept_through(fake_sso, pilot):
    token = login(fake_sso, pilot.character_id)
    fake_sso.inject("rate_limited", retry_after=120)
    started = time.monotonic()
    with pytest.raises(SSORateLimitedError) as caught:
        sso.refresh(token.refresh_token)
    # Far below the 120 s; the margin is for a loaded machine, not for any sleeping.
    assert time.monotonic() - started < 60
    assert caught.value.retry_after == 120
    assert fake_sso.calls["token:refresh_token"] == 1


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("server_error", {"status": 503}),
        ("rate_limited", {"retry_after": 0}),
    ],
)
def test_refresh_is_retried_when_the_sso_says_it_did_nothing(fake_sso, pilot, fault, params):
    token = login(fake_sso, pilot.character_id)
    fake_sso.inject(fault, **params)
    assert sso.refresh(token.refresh_token).claims.character_id == pilot.character_id
    assert fake_sso.calls["token:refresh_token"] == 2


@pytest.mark.parametrize("status", [502, 504])
def test_refresh_is_not_repeated_after_a_gateway_error(fake_sso, pilot, status):
    """A gateway may have passed the request on: repeating it could find the token rotated."""
    token = login(fake_sso, pilot.character_id)
    fake_sso.inject("server_error", status=status)
    with pytest.raises(SSOServerError):
        sso.refresh(token.refresh_token)
    assert fake_sso.calls["token:refresh_token"] == 1


@pytest.mark.parametrize("status", [502, 503, 504])
def test_jwks_get_is_retried_on_any_gateway_error(fake_sso, pilot, status):
    from esi_views.access_tokens import verify_access_token

    fake_sso.inject("server_error", endpoint="jwks", status=status)
    assert verify_access_token(fake_sso.mint_access_token(pilot.character_id))
    assert fake_sso.calls["jwks"] == 2


def test_retry_after_is_honoured_between_attempts(fake_sso, pilot, settings):
    token = login(fake_sso, pilot.character_id)
    fake_sso.inject("rate_limited", retry_after=1)
    started = time.monotonic()
    sso.refresh(token.refresh_token)
    assert time.monotonic() - started >= 0.95
    assert fake_sso.calls["token:refresh_token"] == 2


def test_500_is_not_retried_and_retries_are_bounded(fake_sso, pilot, settings):
    token = login(fake_sso, pilot.character_id)
    fake_sso.inject("server_error", status=500)
    with pytest.raises(SSOServerError):
        sso.refresh(token.refresh_token)
    assert fake_sso.calls["token:refresh_token"] == 1
    settings.ESI_SSO_MAX_RETRIES = 2
    fake_sso.inject("server_error", status=503, times=None)
    with pytest.raises(SSOServerError) as caught:
        sso.refresh(token.refresh_token)
    assert caught.value.status == 503
    assert fake_sso.calls["token:refresh_token"] == 1 + 3  # first try + 2 retries


def test_a_sent_code_exchange_is_not_repeated_on_503(fake_sso, pilot):
    code, request = authorize(fake_sso, pilot.character_id)
    fake_sso.inject("server_error", status=503)
    with pytest.raises(SSOServerError):
        sso.exchange_code(code, request.code_verifier)
    assert fake_sso.calls["token"] == 1


def test_timeouts_apply_and_a_sent_post_is_not_repeated(fake_sso, pilot, settings):
    token = login(fake_sso, pilot.character_id)
    settings.ESI_SSO_TIMEOUT = (2.0, 0.3)
    # The answer comes at 1.5 s: getting SSOTimeoutError at all shows the 0.3 s read timeout
    # applied (waiting for the answer would have given us a token), so no wall-clock bound.
    # (Short: the delayed handler runs on, and the fake SSO is shared with later tests.)
    fake_sso.inject("timeout", seconds=1.5)
    with pytest.raises(SSOTimeoutError):
        sso.refresh(token.refresh_token)
    assert fake_sso.calls["token:refresh_token"] == 1


def test_unreachable_sso(settings, fake_sso):
    settings.ESI_SSO_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.ESI_SSO_MAX_RETRIES = 2
    with pytest.raises(SSOUnreachableError):
        sso.exchange_code("code", "verifier")
    with pytest.raises(SSOUnreachableError):
        sso.refresh("refresh")


def test_latency_is_felt(fake_sso, pilot):
    token = login(fake_sso, pilot.character_id)
    fake_sso.latency = 0.2
    started = time.monotonic()
    sso.refresh(token.refresh_token)
    assert time.monotonic() - started >= 0.2
