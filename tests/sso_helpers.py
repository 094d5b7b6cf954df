"""Driving a login through the fake SSO the way a browser would, minus the browser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests

from esi_views import sso


def authorize(fake_sso, character_id: int, scopes=()) -> tuple[str, sso.AuthorizationRequest]:
    """Follow our authorize URL to the fake SSO, which approves the character; return the code."""
    fake_sso.select_character(character_id)
    request = sso.build_authorization_request(scopes)
    answer = requests.get(request.url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == [request.state]
    return query["code"][0], request


def login(fake_sso, character_id: int, scopes=()) -> sso.TokenResponse:
    code, request = authorize(fake_sso, character_id, scopes)
    return sso.exchange_code(code, request.code_verifier)
