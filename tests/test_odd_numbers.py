"""Odd numbers from the SSO or in a JWT (issue 11, point 4): a clear 400 at the callback,
a kept token on refresh, never a 500 or an OverflowError."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from esi_views.access_tokens import verify_access_token
from esi_views.exceptions import InvalidJWTError, SSOTransientError
from esi_views.http import retry_after
from esi_views.models import Token
from tests.browserless import to_sso_and_back

pytestmark = pytest.mark.django_db

PILOT = 90004001
TOKEN_URL = "/v/mixin/token/1/"

# Raw JSON text, exactly as a hostile or broken SSO could write it.
ODD_EXPIRES_IN = [
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    "-1",
    "true",
    "false",
    "null",
    '"1199"',
    '"abc"',
    "[]",
    "{}",
    "9" * 400,
    "1e20",
    str(2**64),
]
ODD_EXPIRES_AT = ["1e400", "-1e400", "NaN", '"abc"', "9" * 400, "-5"]
ODD_TIMES = [
    float("inf"),
    float("-inf"),
    float("nan"),
    True,
    "1700000000",
    [1],
    10**400,
    10**20,
    1e300,
]
ODD_SUBJECTS = [
    "CHARACTER:EVE:" + "9" * 19,
    "CHARACTER:EVE:" + str(2**63),
    "CHARACTER:EVE:0",
    90004001,
    None,
    ["CHARACTER:EVE:1"],
]


@pytest.fixture
def pilot(fake_sso):
    fake_sso.add_character(PILOT, "Odd Pilot")
    fake_sso.select_character(PILOT)
    return PILOT


def _odd_callback(client, fake_sso, fault, **params):
    start = client.get(TOKEN_URL)
    fake_sso.inject(fault, **params)
    return to_sso_and_back(client, start, fake_sso)


def _is_clear_400(response):
    assert response.status_code == 400, response.content[:300]
    assert b"EVE SSO" in response.content
    assert Token.objects.count() == 0


@pytest.mark.parametrize("raw", ODD_EXPIRES_IN)
def test_odd_expires_in_at_the_callback(client, fake_sso, pilot, raw):
    _is_clear_400(_odd_callback(client, fake_sso, "odd_fields", raw={"expires_in": raw}))


@pytest.mark.parametrize("raw", ODD_EXPIRES_AT)
def test_odd_expires_at_at_the_callback(client, fake_sso, pilot, raw):
    _is_clear_400(_odd_callback(client, fake_sso, "odd_fields", raw={"expires_at": raw}))


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", ODD_TIMES)
def test_odd_jwt_times_at_the_callback(client, fake_sso, pilot, claim, value):
    if claim == "exp" and value in (float("-inf"),):
        pytest.skip("an exp of -inf is simply expired (a 403 'failed verification')")
    response = _odd_callback(client, fake_sso, "odd_claims", claims={claim: value})
    assert response.status_code in (400, 403), response.content[:300]
    assert Token.objects.count() == 0


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**400, 1e300, True])
def test_odd_exp_is_the_malformed_400(client, fake_sso, pilot, value):
    _is_clear_400(_odd_callback(client, fake_sso, "odd_claims", claims={"exp": value}))


@pytest.mark.parametrize("sub", ODD_SUBJECTS)
def test_odd_character_ids_at_the_callback(client, fake_sso, pilot, sub):
    response = _odd_callback(client, fake_sso, "odd_claims", claims={"sub": sub})
    assert response.status_code == 403 and b"failed verification" in response.content
    assert Token.objects.count() == 0


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("odd_fields", {"raw": {"expires_in": "1e400"}}),
        ("odd_fields", {"raw": {"expires_in": "-1e400"}}),
        ("odd_fields", {"raw": {"expires_in": "NaN"}}),
        ("odd_fields", {"raw": {"expires_at": "1e400"}}),
        ("odd_claims", {"claims": {"exp": float("inf")}}),
        ("odd_claims", {"claims": {"iat": float("nan")}}),
        ("odd_claims", {"claims": {"sub": "CHARACTER:EVE:" + "9" * 19}}),
    ],
)
def test_odd_numbers_on_refresh_keep_the_token(esi_token, fake_sso, fault, params):
    token = esi_token(None, character_id=PILOT)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    token.refresh_from_db()
    fake_sso.inject(fault, **params)
    with pytest.raises(SSOTransientError):
        token.valid_access_token()
    assert Token.objects.filter(pk=token.pk).exists()


@pytest.mark.parametrize("value", ODD_TIMES)
def test_the_verifier_refuses_odd_times_with_invalid_jwt(fake_sso, value):
    jwt = fake_sso.mint_access_token(PILOT, claims={"exp": value})
    with pytest.raises(InvalidJWTError):
        verify_access_token(jwt)


def test_sane_times_still_verify(fake_sso):
    now = int(time.time())
    jwt = fake_sso.mint_access_token(PILOT, claims={"iat": now - 10, "nbf": now - 10})
    assert verify_access_token(jwt).character_id == PILOT


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("9" * 400, "capped"),
        ("1e400", None),
        ("-5", None),
        ("NaN", None),
        ("120", 120.0),
    ],
)
def test_odd_retry_after_headers(header, expected):
    response = requests.Response()
    response.headers["Retry-After"] = header
    if expected == "capped":  # a finite wait of a day at most (urllib3 caps lower)
        assert 0 < retry_after(response) <= 86400
    else:
        assert retry_after(response) == expected
