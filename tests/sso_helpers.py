"""Shortcuts over esi_views.testing.logins for the SSO client tests."""

from __future__ import annotations

from esi_views import sso
from esi_views.testing.logins import authorize

__all__ = ["authorize", "login"]


def login(fake_sso, character_id: int, scopes=()) -> sso.TokenResponse:
    code, request = authorize(fake_sso, character_id, scopes)
    return sso.exchange_code(code, request.code_verifier)
