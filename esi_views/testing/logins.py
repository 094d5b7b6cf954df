"""Logging a character in through the fake SSO, as a browser would, without one.

Everything goes through the real code paths: our authorize URL, the fake SSO's
authorize endpoint over HTTP, and a real code exchange.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import requests

from esi_views.scopes import ScopesArg

if TYPE_CHECKING:
    from esi_views.models import Token
    from esi_views.sso import AuthorizationRequest

    from .fake_sso import FakeEveSSO


def authorize(
    fake_sso: FakeEveSSO, character_id: int, scopes: ScopesArg = ()
) -> tuple[str, AuthorizationRequest]:
    """Send our authorize URL to the fake SSO, approving as ``character_id``; return the code."""
    from esi_views import sso

    fake_sso.select_character(character_id)
    request = sso.build_authorization_request(scopes)
    answer = requests.get(request.url, allow_redirects=False, timeout=10)
    if answer.status_code != 302:
        raise AssertionError(f"fake SSO refused the authorize request: {answer.text[:300]}")
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    if query.get("state") != [request.state]:
        raise AssertionError("fake SSO returned another state than ours")
    return query["code"][0], request


def create_token(
    fake_sso: FakeEveSSO,
    *,
    user: Any = None,
    character_id: int = 90000001,
    character_name: str | None = None,
    scopes: ScopesArg = (),
    owner_hash: str | None = None,
) -> Token:
    """A stored Token for ``user``, made by a real code exchange against ``fake_sso``."""
    from esi_views.models import Token

    known = {c.character_id: c for c in fake_sso.characters}
    if character_id not in known or character_name or owner_hash:
        existing = known.get(character_id)
        fake_sso.add_character(
            character_id,
            character_name or (existing.name if existing else f"Pilot {character_id}"),
            owner_hash or (existing.owner_hash if existing else None),
        )
    code, request = authorize(fake_sso, character_id, scopes)
    return Token.objects.create_from_code(code, request.code_verifier, user=user)
