"""What an SSO callback does with accounts: link the character, or log its owner in.

- A logged-in user's flow links the character to their account (an "add"), unless it
  is linked to another account under the same owner hash: then nothing is stored.
- A login flow (``esi_views:login``) of an anonymous visitor authenticates with the new
  token (``EveSSOBackend``) and logs the account in.
- Single-use flows touch no account.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import auth, messages
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from . import accounts
from . import flow as _flow
from .models import CallbackRedirect, Token

logger = logging.getLogger(__name__)

Kind = CallbackRedirect.Kind


def store_token(request: HttpRequest, record: CallbackRedirect, answer: Any, owner: Any) -> Token:
    """Store the SSO's answer for ``owner`` (linking the character), log in if it is a login.

    Saves ``record.token``. Raises ``FlowError`` when the character may not be linked or
    may not log in; nothing is stored then.
    """
    claims = answer.claims
    with transaction.atomic():
        if owner is not None:
            try:
                accounts.link_character(
                    owner, claims.character_id, claims.character_name, claims.owner_hash
                )
            except accounts.CharacterOwnedElsewhere:
                raise _flow.FlowError(
                    403,
                    _("Character linked to another account"),
                    _(
                        "%(name)s belongs to another account on this site. "
                        "Log out and log in with it to use that account."
                    )
                    % {"name": claims.character_name},
                ) from None
        token = Token.objects.create_from_response(answer, user=owner)
        if record.kind == Kind.LOGIN and owner is None:
            _log_in(request, token)
            _note(request, _("Logged in as %(name)s.") % {"name": token.character_name})
        elif record.kind == Kind.LOGIN:
            _note(request, _("Added %(name)s to your account.") % {"name": token.character_name})
        record.token = token
        record.save(update_fields=["token"])
    return token


def _note(request: HttpRequest, text: str) -> None:
    # Shown by sites that render messages; nothing happens without contrib.messages.
    messages.success(request, text, fail_silently=True)


def _log_in(request: HttpRequest, token: Token) -> None:
    user = auth.authenticate(request, token=token)
    if user is None:
        # Rolled back with the token by the caller's transaction.
        logger.info("Login refused for character %s", token.character_id)
        raise _flow.FlowError(
            403,
            _("Login refused"),
            _(
                "%(name)s cannot log in here: its account is disabled, or this "
                "site does not create accounts for new characters."
            )
            % {"name": token.character_name},
        )
    auth.login(request, user)
    # login() gives the session a new key: later flows bind to it.
