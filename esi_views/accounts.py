"""Accounts and their characters: who a character belongs to, and the main character.

Plain functions over ``CharacterOwnership``; the auth backend, the SSO callback and the
characters page call them. The rules:

- a character (by id) belongs to at most one user, under the owner hash the SSO reported;
- a login or an add never takes a character away from another account, unless its
  owner hash changed (it was sold): then the link moves, and the old account's tokens
  for it are deleted;
- every user with characters has exactly one main character: the first linked, changeable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.text import slugify

from .exceptions import SSOError
from .models import CharacterOwnership, Token

logger = logging.getLogger(__name__)

__all__ = [
    "CharacterOwnedElsewhere",
    "CharacterRow",
    "character_rows",
    "link_character",
    "main_character",
    "merge_tokens",
    "owner_for_login",
    "set_main",
    "unlink_character",
]


class CharacterOwnedElsewhere(Exception):
    """The character is linked to another account under the same owner hash."""


# -- linking -------------------------------------------------------------------------------------


def _ensure_main(user_id: int) -> None:
    """Give a user who has characters but no main one a main (the oldest link)."""
    links = CharacterOwnership.objects.select_for_update().filter(user_id=user_id)
    if links.filter(is_main=True).exists():
        return
    first = links.order_by("created", "pk").first()
    if first is not None:
        first.is_main = True
        first.save(update_fields=["is_main", "updated"])


@transaction.atomic
def link_character(
    user: Any, character_id: int, character_name: str, owner_hash: str
) -> CharacterOwnership:
    """Link the character to ``user``; raises ``CharacterOwnedElsewhere`` if it may not be.

    Call it before storing the character's new token, in the same transaction, so a
    refused link stores nothing.
    """
    character_name = character_name[:100]
    link = CharacterOwnership.objects.select_for_update().filter(character_id=character_id).first()
    if link is None:
        try:
            with transaction.atomic():
                link = CharacterOwnership.objects.create(
                    user=user,
                    character_id=character_id,
                    character_name=character_name,
                    character_owner_hash=owner_hash,
                )
        except IntegrityError:  # linked concurrently: decide against the winner's row
            return link_character(user, character_id, character_name, owner_hash)
        _ensure_main(user.pk)
        link.refresh_from_db(fields=["is_main"])
        return link
    if link.user_id != user.pk:
        if link.character_owner_hash == owner_hash:
            raise CharacterOwnedElsewhere(character_id)
        # Sold: the new owner takes it; the seller's tokens for it are worthless anyway.
        previous = link.user_id
        Token.objects.filter(user_id=previous, character_id=character_id).delete()
        logger.info(
            "Character %s changed hands: moved from user %s to user %s",
            character_id,
            previous,
            user.pk,
        )
        link.user, link.is_main = user, False
        link.character_name, link.character_owner_hash = character_name, owner_hash
        link.save()
        _ensure_main(previous)
        _ensure_main(user.pk)
        link.refresh_from_db(fields=["is_main"])
        return link
    if (link.character_name, link.character_owner_hash) != (character_name, owner_hash):
        link.character_name, link.character_owner_hash = character_name, owner_hash
        link.save(update_fields=["character_name", "character_owner_hash", "updated"])
    return link


def _free_username(character_name: str, character_id: int) -> str:
    """A username nobody has: the character's name, else with its id, else a random tail."""
    User = get_user_model()
    field_name = User.USERNAME_FIELD
    max_length = getattr(User._meta.get_field(field_name), "max_length", None) or 150
    base = slugify(character_name).replace("-", "_") or "pilot"
    candidates = [base, f"{base}_{character_id}"]
    for candidate in candidates:
        candidate = candidate[:max_length]
        if not User._default_manager.filter(**{field_name: candidate}).exists():
            return candidate
    return f"{base[: max_length - 30]}_{character_id}_{get_random_string(8).lower()}"


def _create_user(character_name: str, character_id: int) -> Any:
    User = get_user_model()
    for _attempt in range(3):
        user = User(**{User.USERNAME_FIELD: _free_username(character_name, character_id)})
        if hasattr(user, "first_name"):
            user.first_name = character_name[:150]
        user.set_unusable_password()
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError:  # the name was taken between the check and the insert
            continue
        return user
    raise IntegrityError("could not find a free username")


@transaction.atomic
def owner_for_login(
    character_id: int, character_name: str, owner_hash: str, *, create_user: bool
) -> Any | None:
    """The user a character logs in as, linking it (and creating the user) if needed.

    None when the character belongs to nobody and ``create_user`` is False.
    """
    link = (
        CharacterOwnership.objects.select_for_update()
        .select_related("user")
        .filter(character_id=character_id)
        .first()
    )
    if link is not None and link.character_owner_hash == owner_hash:
        if link.character_name != character_name[:100]:
            link.character_name = character_name[:100]
            link.save(update_fields=["character_name", "updated"])
        return link.user
    if not create_user:
        return None
    # Unknown, or sold to someone who logs in with it for the first time: a new account.
    user = _create_user(character_name, character_id)
    link_character(user, character_id, character_name, owner_hash)
    return user


# -- main character, unlinking ------------------------------------------------------------------


def main_character(user: Any) -> CharacterOwnership | None:
    if user is None or not user.is_authenticated:
        return None
    return CharacterOwnership.objects.filter(user=user, is_main=True).first()


@transaction.atomic
def set_main(user: Any, character_id: int) -> bool:
    """Make one of ``user``'s characters the main one; False if it is not theirs."""
    links = CharacterOwnership.objects.select_for_update().filter(user=user)
    if not links.filter(character_id=character_id).exists():
        return False
    links.filter(is_main=True).exclude(character_id=character_id).update(is_main=False)
    links.filter(character_id=character_id).update(is_main=True, updated=timezone.now())
    return True


def unlink_character(user: Any, character_id: int) -> bool:
    """Revoke the user's refresh tokens of that character at the SSO, delete them, unlink.

    False if the character is not the user's (neither linked nor holding a token).
    A revocation the SSO cannot take right now is logged; the tokens go all the same.
    """
    tokens = list(Token.objects.filter(user=user, character_id=character_id))
    with transaction.atomic():
        deleted, _ = CharacterOwnership.objects.filter(
            user=user, character_id=character_id
        ).delete()
        if not deleted and not tokens:
            return False
        _ensure_main(user.pk)
    from . import sso

    for token in tokens:
        if token.refresh_token:
            try:
                sso.revoke(token.refresh_token)
            except SSOError as exc:
                logger.warning("Could not revoke a token of character %s: %s", character_id, exc)
    Token.objects.filter(pk__in=[t.pk for t in tokens]).delete()
    return True


# -- listing: one row per character ---------------------------------------------------------------


@dataclass
class CharacterRow:
    """One character in a listing, all its tokens merged."""

    character_id: int
    name: str
    scopes: set[str] = field(default_factory=set)
    tokens: list[Token] = field(default_factory=list)
    is_main: bool = False
    linked: bool = False
    expires_at: datetime | None = None

    @property
    def usable(self) -> bool:
        """A token that works now or can be refreshed (no SSO call to find out)."""
        now = timezone.now()
        return any(t.refresh_token or t.expires_at > now for t in self.tokens)

    @property
    def sorted_scopes(self) -> list[str]:
        return sorted(self.scopes)


def merge_tokens(tokens: Any, links: Any = ()) -> list[CharacterRow]:
    """One row per character from tokens and ownership links, e.g. a view's ``tokens``.

    Scopes are the union over the character's tokens; rows keep the order of first
    appearance, links first (main character first).
    """
    tokens = list(tokens)
    prefetch_related_objects(tokens, "scopes")  # one query, or none if already prefetched
    rows: dict[int, CharacterRow] = {}
    for link in links:
        rows[link.character_id] = CharacterRow(
            link.character_id, link.character_name, is_main=link.is_main, linked=True
        )
    for token in tokens:
        row = rows.setdefault(
            token.character_id, CharacterRow(token.character_id, token.character_name)
        )
        row.tokens.append(token)
        row.scopes.update(s.name for s in token.scopes.all())
        if row.expires_at is None or token.expires_at > row.expires_at:
            row.expires_at = token.expires_at
    return list(rows.values())


def character_rows(user: Any) -> list[CharacterRow]:
    """The user's characters for the characters page: three queries, whatever the counts."""
    links = CharacterOwnership.objects.filter(user=user).order_by("-is_main", "character_name")
    tokens = (
        Token.objects.filter(user=user)
        .prefetch_related("scopes")
        .order_by("character_name", "-updated")
    )
    return merge_tokens(tokens, links)
