"""An authentication backend: log in with an EVE SSO token.

    user = authenticate(request, token=token)   # a esi_views.models.Token

The user is found (or created) by the token's character id and owner hash.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from esi_views.models import Token

from .models import EveCharacterLogin


def _free_username(name: str, character_id: int) -> str:
    User = get_user_model()
    base = slugify(name).replace("-", "_")[:100] or f"pilot_{character_id}"
    if not User.objects.filter(username=base).exists():
        return base
    return f"{base}_{character_id}"


class EveCharacterBackend(BaseBackend):
    """Authenticates ``token=<Token>``; other credentials are left to other backends."""

    def authenticate(self, request: Any, token: Token | None = None, **kwargs: Any):
        if not isinstance(token, Token):
            return None
        login = (EveCharacterLogin.objects.select_related("user")
                 .filter(character_id=token.character_id,
                         character_owner_hash=token.character_owner_hash).first())
        if login is None:
            login = self._create(token)
        elif login.character_name != token.character_name:
            login.character_name = token.character_name
            login.save(update_fields=["character_name"])
        user = login.user
        return user if self.user_can_authenticate(user) else None

    def _create(self, token: Token) -> EveCharacterLogin:
        User = get_user_model()
        try:
            with transaction.atomic():
                user = User(username=_free_username(token.character_name, token.character_id),
                            first_name=token.character_name[:150])
                user.set_unusable_password()
                user.save()
                return EveCharacterLogin.objects.create(
                    user=user, character_id=token.character_id,
                    character_owner_hash=token.character_owner_hash,
                    character_name=token.character_name,
                )
        except IntegrityError:  # two logins of one character at once: take the winner's
            return EveCharacterLogin.objects.select_related("user").get(
                character_id=token.character_id, character_owner_hash=token.character_owner_hash)

    @staticmethod
    def user_can_authenticate(user: Any) -> bool:
        return getattr(user, "is_active", True)

    def get_user(self, user_id: int):
        User = get_user_model()
        user = User._default_manager.filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None
