"""No secret in Django's error reports (issue 11, point 2).

Each failure path is rendered with Django's own ``ExceptionReporter`` (HTML and text,
what ``AdminEmailHandler`` mails and the 500 machinery logs, DEBUG off as in
production) and searched for the code, the PKCE verifier, the state, the session key,
the access token (any JWT: they all start with ``eyJ``) and the refresh tokens.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.signals import got_request_exception
from django.db import DatabaseError
from django.test import Client, RequestFactory
from django.utils import timezone
from django.views.debug import ExceptionReporter

from esi_views import sso
from esi_views.exceptions import (
    EsiError,
    InvalidClientError,
    InvalidJWTError,
    SSOError,
    SSOTransientError,
)
from esi_views.models import CallbackRedirect, Token
from esi_views.testing.logins import authorize
from tests.browserless import state_of
from tests.views_app import SCOPES

pytestmark = pytest.mark.django_db

PILOT = 90005001
CLEANSED = "********************"


@pytest.fixture
def pilot(fake_sso):
    fake_sso.add_character(PILOT, "Reported Pilot")
    fake_sso.select_character(PILOT)
    return PILOT


def assert_no_secret(exc_info, secrets, request=None):
    """Render both reports; none of ``secrets`` (nor any JWT) may appear in them."""
    reporter = ExceptionReporter(request, *exc_info)
    html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    name = exc_info[0].__name__
    assert name in html and name in text  # a real report of this very error
    assert CLEANSED in html and CLEANSED in text  # something was hidden, as it should
    for secret in [*secrets, "eyJ"]:
        assert secret and len(secret) >= 3
        assert secret not in html, f"{secret[:12]}... in the HTML report"
        assert secret not in text, f"{secret[:12]}... in the text report"
    return html, text


def _raised(call, *errors):
    with pytest.raises(errors or (EsiError, InvalidJWTError)) as caught:
        call()
    # From the package's first frame on: this file's own frames hold the secrets it
    # passes in (a project's calling code is its own business).
    tb = caught.tb
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return caught.type, caught.value, tb


# -- the SSO client --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        "invalid_client",
        "invalid_grant",
        "server_error",
        "malformed_json",
        "bad_signature",
        "wrong_audience",
    ],
)
def test_code_exchange(fake_sso, pilot, fault, settings):
    code, request = authorize(fake_sso, PILOT, ())
    fake_sso.inject(fault)
    info = _raised(lambda: sso.exchange_code(code, request.code_verifier))
    assert_no_secret(
        info, [code, request.code_verifier, request.state, settings.ESI_SSO_CLIENT_SECRET]
    )


def test_code_exchange_with_the_sso_unreachable(fake_sso, pilot, settings):
    code, request = authorize(fake_sso, PILOT, ())
    settings.ESI_SSO_BASE_URL = "http://127.0.0.1:9"
    info = _raised(lambda: sso.exchange_code(code, request.code_verifier))
    assert_no_secret(info, [code, request.code_verifier])


def _expired(token: Token) -> Token:
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    token.refresh_from_db()
    return token


@pytest.mark.parametrize(
    "fault", ["invalid_client", "server_error", "bad_signature", "malformed_json", "expired_jwt"]
)
@pytest.mark.parametrize("mode", ["same", "rotate"])
def test_refresh(esi_token, fake_sso, fault, mode, settings):
    token = _expired(esi_token(None, character_id=PILOT))
    old_refresh, old_access = token.refresh_token, token.access_token
    fake_sso.refresh_token_mode = mode
    fake_sso.inject(fault)
    info = _raised(token.refresh, SSOError)
    secrets = [old_refresh, old_access, settings.ESI_SSO_CLIENT_SECRET]
    if Token.objects.filter(pk=token.pk).exists():
        token.refresh_from_db()
        secrets.append(token.refresh_token)  # the rotated one, if the SSO rotated it
    assert_no_secret(info, secrets)


def test_refresh_invalid_client_in_a_batch(esi_token, fake_sso):
    """Two tokens: the SSO calls run on the refresh pool's threads."""
    user = get_user_model().objects.create_user("batch")
    tokens = [_expired(esi_token(user, character_id=PILOT + n)) for n in (1, 2)]
    secrets = [t.refresh_token for t in tokens] + [t.access_token for t in tokens]
    fake_sso.inject("invalid_client", times=2)
    info = _raised(lambda: Token.objects.filter(user=user).bulk_refresh(), InvalidClientError)
    assert_no_secret(info, secrets)


def test_valid_access_token_on_a_transient_error(esi_token, fake_sso):
    token = _expired(esi_token(None, character_id=PILOT))
    secret = token.refresh_token
    fake_sso.inject("rate_limited", retry_after=60)
    info = _raised(token.valid_access_token, SSOTransientError)
    assert_no_secret(info, [secret])


@pytest.mark.parametrize("fault", ["invalid_client", "server_error"])
def test_revoke(esi_token, fake_sso, fault):
    token = esi_token(None, character_id=PILOT)
    secret = token.refresh_token
    fake_sso.inject(fault, endpoint="revoke", times=None)
    info = _raised(token.revoke, SSOError)
    assert_no_secret(info, [secret, token.access_token])


# -- views ---------------------------------------------------------------------------------


@pytest.fixture
def reported():
    """What Django's 500 handling saw: the request and the exception, as it mails them."""
    seen = {}

    def receiver(sender, request, **kwargs):
        seen["request"], seen["exc_info"] = request, sys.exc_info()

    got_request_exception.connect(receiver)
    yield seen
    got_request_exception.disconnect(receiver)


def test_callback(pilot, fake_sso, reported, monkeypatch):
    client = Client(raise_request_exception=False)
    start = client.get("/v/mixin/token/1/")
    session_key = start.cookies["sessionid"].value
    state = state_of(start)
    verifier = CallbackRedirect.objects.get().code_verifier

    def broken_store(*args, **kwargs):  # the database failing after the exchange
        raise DatabaseError("the database went away")

    monkeypatch.setattr("esi_views.logins.store_token", broken_store)
    import requests

    answer = requests.get(start["Location"], allow_redirects=False, timeout=10)
    callback = answer.headers["Location"].split("testserver", 1)[1]
    code = callback.split("code=")[1].split("&")[0]
    assert client.get(callback).status_code == 500
    _, text = assert_no_secret(
        reported["exc_info"], [code, state, session_key, verifier], reported["request"]
    )
    assert "code=" + CLEANSED in text  # the masked query string, in the report's URL


def test_selection(settings, esi_token, reported):
    client = Client(raise_request_exception=False)
    user = get_user_model().objects.create_user("chooser")
    client.force_login(user)
    esi_token(user, character_id=PILOT, scopes=SCOPES)
    page = client.get("/v/mixin/token/1/")
    flow = page.context["flow"]
    session_key = client.session.session_key
    settings.ESI_SSO_CALLBACK_URL = ""  # a broken deployment: adding a character fails
    response = client.post("/esi/select/", {"flow": flow, "action": "add"})
    assert response.status_code == 500
    assert_no_secret(reported["exc_info"], [flow, session_key], reported["request"])


def test_bearer_authentication(fake_sso, esi_token, monkeypatch):
    from rest_framework.request import Request

    from esi_drf.authentication import EveSSOAuthentication

    user = get_user_model().objects.create_user("bearer")
    esi_token(user, character_id=PILOT)
    jwt = fake_sso.mint_access_token(PILOT)
    django_request = RequestFactory().get("/api/", HTTP_AUTHORIZATION=f"Bearer {jwt}")

    def broken_get_user(self, claims):  # a project's hook failing
        raise RuntimeError("user lookup failed")

    monkeypatch.setattr(EveSSOAuthentication, "get_user", broken_get_user)
    info = _raised(
        lambda: EveSSOAuthentication().authenticate(Request(django_request)), RuntimeError
    )
    assert_no_secret(info, [jwt], django_request)


def test_reprs_and_messages_carry_no_secret(fake_sso, pilot, esi_token):
    code, request = authorize(fake_sso, PILOT, ())
    answer = sso.exchange_code(code, request.code_verifier)
    token = esi_token(None, character_id=PILOT)
    for obj in (request, answer, token, CallbackRedirect(state="s" * 40, session_hash="h" * 64)):
        text = f"{obj!r} {obj!s}"
        for secret in (
            request.state,
            request.code_verifier,
            answer.access_token,
            answer.refresh_token,
            token.refresh_token,
            "s" * 40,
            "h" * 64,
        ):
            assert secret not in text


@pytest.mark.parametrize("fault", ["invalid_client", "bad_signature"])
def test_third_party_frames_are_not_in_the_report_even_with_debug(
    esi_token, fake_sso, fault, settings
):
    """DEBUG shows every local (Django's choice): authlib's and joserfc's frames, which
    we cannot mark, must not be there at all."""
    settings.DEBUG = True
    token = _expired(esi_token(None, character_id=PILOT))
    secret = token.refresh_token
    fake_sso.inject(fault)
    info = _raised(token.refresh, SSOError)
    html = ExceptionReporter(None, *info).get_traceback_html()
    assert "esi_views/sso.py" in html  # the frames are there, ours only
    for package in ("authlib", "requests", "urllib3", "joserfc"):
        assert f"site-packages/{package}/" not in html
    assert secret in html  # DEBUG shows our own frames' locals: never DEBUG in production
