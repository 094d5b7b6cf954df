"""Log in with an EVE character: ``EveSSOBackend``.

    AUTHENTICATION_BACKENDS = [
        "esi_views.auth.EveSSOBackend",
        "django.contrib.auth.backends.ModelBackend",   # if you keep password logins
    ]

``esi_views:login`` runs the SSO and then calls ``authenticate(request, token=token)``
with the new token; this backend answers with the account the character is linked to
(``esi_views.accounts``), creating one when ``ESI_LOGIN_CREATE_USERS`` allows it.
Inactive users are refused, as by Django's ``ModelBackend``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from . import accounts
from .conf import esi_settings
from .models import Token

__all__ = ["EveSSOBackend"]


class EveSSOBackend(ModelBackend):
    """Authenticates ``token=<Token>`` (a verified token the SSO just issued).

    Permissions work as with ``ModelBackend``. Hooks: ``get_create_user()`` (whether an
    unknown character gets a new account) and ``user_can_authenticate()``.
    """

    # Other credentials than ModelBackend's, as Django's RemoteUserBackend.
    def authenticate(  # type: ignore[override]
        self, request: HttpRequest | None, token: Token | None = None, **kwargs: Any
    ) -> Any | None:
        if not isinstance(token, Token) or token.pk is None:
            return None  # other credentials: other backends
        user = accounts.owner_for_login(
            token.character_id,
            token.character_name,
            token.character_owner_hash,
            create_user=self.get_create_user(request, token),
        )
        if user is None or not self.user_can_authenticate(user):
            return None
        if token.user_id is None:  # the login's token becomes the account's
            token.user = user
            token.save(update_fields=["user"])
        elif token.user_id != user.pk:
            return None
        return user

    def get_create_user(self, request: HttpRequest | None, token: Token) -> bool:
        """Whether a character linked to no account may create one (``ESI_LOGIN_CREATE_USERS``)."""
        return bool(esi_settings.LOGIN_CREATE_USERS)
