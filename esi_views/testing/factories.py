"""Tokens and scopes for tests, with no HTTP and no fake SSO running.

For Django's own test runner as much as for pytest::

    from django.test import TestCase
    from esi_views.testing.factories import make_token

    class MedalsTest(TestCase):
        def test_view(self):
            user = User.objects.create_user("pilot")
            token = make_token(user, scopes=["esi-characters.read_medals.v1"])
            ...

The access token of a made token is a real EVE-shaped JWT, signed with a test key that
is installed in this process's JWKS cache (``install_test_keys()``, done by every
factory), so our verification accepts it under the test settings, e.g. as a bearer token
for esi_drf's ``EveSSOAuthentication``. A made token is not known to any SSO: refreshing
it needs ``FakeEveSSO`` (the ``fake_sso``/``esi_token`` pytest fixtures; "Testing" in the
package documentation).
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from ._fake_tokens import access_token_claims, shared_keys, sign

if TYPE_CHECKING:
    from esi_views.models import Scope, Token

__all__ = ["install_test_keys", "make_access_token", "make_scope", "make_scopes", "make_token"]

_character_ids = itertools.count(95_000_001)


def install_test_keys() -> None:
    """Make the test signing keys verify in this process (idempotent, no HTTP)."""
    from esi_views.jwks import install_keys

    install_keys(shared_keys().public_jwks())


def _issuer() -> str:
    from esi_views.conf import esi_settings

    # Prefer the form with a scheme, as EVE writes it today.
    return sorted(esi_settings.SSO_ISSUERS, key=lambda i: "://" not in i)[0]


def _owner_hash(character_id: int) -> str:
    return hashlib.sha256(f"owner:{character_id}".encode()).hexdigest()[:28]


def make_access_token(
    character_id: int,
    *,
    character_name: str | None = None,
    scopes: Iterable[str] = (),
    owner_hash: str | None = None,
    expires_in: int = 1200,
    alg: str = "RS256",
) -> str:
    """An access token JWT our verification accepts under the current settings."""
    from esi_views.conf import esi_settings

    install_test_keys()
    key = shared_keys().key_for(alg)
    kid = key.kid or ""
    claims = access_token_claims(
        character_id=character_id,
        name=character_name or f"Pilot {character_id}",
        owner_hash=owner_hash or _owner_hash(character_id),
        scopes=tuple(dict.fromkeys(scopes)),
        client_id=esi_settings.SSO_CLIENT_ID,
        audience=None,
        issuer=_issuer(),
        expires_in=expires_in,
        kid=kid,
    )
    return sign(claims, key, alg=alg, kid=kid)


def make_scope(name: str, help_text: str = "") -> Scope:
    """The stored ``Scope`` of this name (created if needed)."""
    from esi_views.models import Scope

    scope, _ = Scope.objects.get_or_create(name=name, defaults={"help_text": help_text})
    return scope


def make_scopes(*names: str) -> list[Scope]:
    """``make_scopes("a", "b")`` or ``make_scopes(*"a b".split())``."""
    return [make_scope(name) for name in dict.fromkeys(names)]


def make_token(
    user: Any = None,
    *,
    character_id: int | None = None,
    character_name: str | None = None,
    scopes: str | Iterable[str] = (),
    owner_hash: str | None = None,
    expired: bool = False,
    refreshable: bool = True,
    **fields: Any,
) -> Token:
    """A stored ``Token`` of ``user`` (None: a user-less one) with these scopes.

    ``expired=True`` makes one whose access token has expired (using it needs a refresh,
    so an SSO); ``refreshable=False`` one without a refresh token. Other model fields
    (``token_type``, ...) pass through.
    """
    from esi_views.models import Token

    scopes = scopes.split() if isinstance(scopes, str) else list(scopes)
    character_id = next(_character_ids) if character_id is None else character_id
    character_name = character_name or f"Pilot {character_id}"
    owner_hash = owner_hash or _owner_hash(character_id)
    expires_in = -60 if expired else 1200
    token = Token.objects.create(
        user=user,
        character_id=character_id,
        character_name=character_name,
        character_owner_hash=owner_hash,
        access_token=make_access_token(
            character_id,
            character_name=character_name,
            scopes=scopes,
            owner_hash=owner_hash,
            expires_in=max(expires_in, 1),
        ),
        refresh_token=secrets.token_urlsafe(24) if refreshable else "",
        expires_at=timezone.now() + timedelta(seconds=expires_in),
        **fields,
    )
    if scopes:
        token.scopes.set(make_scopes(*scopes))
    return token
