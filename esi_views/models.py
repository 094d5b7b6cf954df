"""What we store: the scopes we know, the tokens we hold, and SSO flows in progress."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from django.conf import settings
from django.db import IntegrityError, models, router, transaction
from django.db.models.signals import m2m_changed
from django.dispatch import receiver
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from . import sso
from .conf import esi_settings
from .exceptions import TokenDeadError
from .fields import EncryptedTextField
from .querysets import TokenQuerySet
from .refresh import refresh_tokens
from .scopes import ScopesArg, scopes_digest

if TYPE_CHECKING:
    from .esi import EsiSession

__all__ = [
    "CallbackRedirect",
    "CharacterOwnership",
    "Scope",
    "Token",
    "TokenQuerySet",
    "hash_session_key",
]

# Also frozen in migration 0006 (which hashed the keys stored before): keep them equal.
SESSION_HASH_SALT = "esi_views.CallbackRedirect.session_hash"


def hash_session_key(session_key: str) -> str:
    """A keyed hash (HMAC-SHA256 under SECRET_KEY) of a session key: 64 hex characters.

    Flows store and are looked up by this, never by the key itself: whoever reads the
    table (a backup, the admin, an SQL console) cannot turn a row into a session cookie.
    """
    return salted_hmac(SESSION_HASH_SALT, session_key, algorithm="sha256").hexdigest()


class Scope(models.Model):
    """An ESI scope, e.g. ``esi-skills.read_skills.v1``."""

    name = models.CharField(max_length=100, unique=True)
    help_text = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def friendly_name(self) -> str:
        """``esi-skills.read_skills.v1`` -> ``read_skills``."""
        name = self.name.removeprefix("esi-")
        parts = name.split(".")
        return parts[1] if len(parts) >= 2 else name


class Token(models.Model):
    """An EVE SSO token for one character. Access and refresh tokens are encrypted at rest."""

    class TokenType(models.TextChoices):
        CHARACTER = "character", _("Character")
        CORPORATION = "corporation", _("Corporation")

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        # Not the default "token_set": django-esi's Token takes that name, and a site
        # may keep django-esi installed next to us (its ESI client). user.esi_tokens.
        related_name="esi_tokens",
        help_text=_("Whose token this is; empty for single-use and anonymous-login tokens."),
    )
    character_id = models.BigIntegerField(db_index=True)
    character_name = models.CharField(max_length=100)
    character_owner_hash = models.CharField(max_length=64, db_index=True)
    token_type = models.CharField(
        max_length=16, choices=TokenType.choices, default=TokenType.CHARACTER
    )
    scopes = models.ManyToManyField(Scope, blank=True, related_name="tokens")
    access_token = EncryptedTextField(editable=False)
    refresh_token = EncryptedTextField(blank=True, editable=False)
    expires_at = models.DateTimeField(
        db_index=True, help_text=_("When the access token expires (the JWT's exp).")
    )
    # scopes_digest() of the scopes, set on tokens that are merged rather than
    # duplicated (a user's, unless ESI_ALWAYS_CREATE_TOKEN): the unique constraint below
    # then makes two concurrent logins of one character end in one row.
    scope_digest = models.CharField(max_length=64, blank=True, default="", editable=False)

    objects = TokenQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["user", "character_id"])]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "character_id", "scope_digest"],
                condition=models.Q(user__isnull=False) & ~models.Q(scope_digest=""),
                name="esi_views_token_one_per_user_character_scopes",
            )
        ]

    def __str__(self) -> str:
        return f"{self.character_name} ({self.character_id})"

    @property
    def expires(self) -> datetime:
        return self.expires_at

    @property
    def expired(self) -> bool:
        """True when the access token is expired or will be within ESI_TOKEN_REFRESH_MARGIN."""
        margin = timedelta(seconds=esi_settings.TOKEN_REFRESH_MARGIN)
        return self.expires_at <= timezone.now() + margin

    @property
    def can_refresh(self) -> bool:
        return bool(self.refresh_token)

    def valid_access_token(self) -> str:
        """The access token, refreshed first if expired.

        Raises ``TokenDeadError`` (a ``TokenInvalidError``; the token is then deleted) or,
        when the SSO is down, ``SSOTransientError`` (an ``SSOUnavailableError``).
        """
        if self.expired:
            refresh_tokens([self]).raise_for(self)
        return self.access_token

    def esi(self) -> EsiSession:
        """A session calling ESI as this token's character ("Calling ESI" in the package docs).

        The access token is renewed through ``valid_access_token()`` when it expires; a
        route needing a scope this token lacks is refused before any request.
        """
        from .esi import EsiSession

        return EsiSession(self)

    def refresh(self) -> None:
        """Refresh now (under the per-token lock). Dead tokens are deleted, then raised."""
        refresh_tokens([self], force=True).raise_for(self)

    def refresh_or_delete(self) -> bool:
        """Refresh now; True if refreshed, False if the SSO said the token is dead (deleted).

        A transient failure keeps the token and raises ``SSOTransientError``.
        """
        try:
            self.refresh()
        except TokenDeadError:
            return False
        return True

    @classmethod
    def get_token(cls, character_id: int, scopes: ScopesArg) -> Token | Literal[False]:
        """A token of this character with these scopes, or ``False`` (django-esi's contract).

        Like django-esi it neither checks nor refreshes the token: call
        ``valid_access_token()`` on it, which tells a dead token (``TokenInvalidError``)
        from an SSO outage (``SSOUnavailableError``).
        """
        token = cls.objects.filter(character_id=character_id).require_scopes(scopes).first()
        return token if token is not None else False

    def revoke(self) -> None:
        """Revoke the refresh token at the SSO and delete this token."""
        if self.refresh_token:
            sso.revoke(self.refresh_token)
        self.delete()


class CallbackRedirect(models.Model):
    """One token flow of one session: an SSO round trip or a selection, then the hand-back.

    ``state`` is the flow's key: the OAuth state sent to the SSO, and the ``esi_flow``
    parameter with which the protected view picks up ``token``. Every use of it is
    checked against ``session_hash``, a keyed hash of the session key (``hash_session_key``).
    """

    class Kind(models.TextChoices):
        TOKEN = "token", "token_required"
        TOKENS = "tokens", "tokens_required"
        SINGLE_USE = "single_use", "single_use_token"
        LOGIN = "login", _("login link")

    session_hash = models.CharField(max_length=64, db_index=True, editable=False)
    state = models.CharField(max_length=128, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TOKEN)
    code_verifier = EncryptedTextField(blank=True, editable=False)
    requested_scopes = models.TextField(blank=True, help_text=_("Space-delimited, sorted."))
    return_url = models.TextField()
    token = models.ForeignKey(Token, on_delete=models.CASCADE, null=True, blank=True)
    # The protected view was reached by POST: it is re-entered by POST with these fields
    # (JSON pairs, encrypted; esi_views.reentry). "GET" again once re-entered.
    method = models.CharField(max_length=8, default="GET")
    form_data = EncryptedTextField(blank=True, default="")
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        # No state and no session hash: both would help hijack the flow.
        return f"SSO flow {self.pk} ({self.get_kind_display()})"


class CharacterOwnership(models.Model):
    """Which user account a character belongs to: one user per character id.

    Bound to the owner hash the SSO reported: when a character changes hands (a new
    owner hash), the link moves to the account of whoever logs in with it next, and
    the old account's tokens for it are deleted (``esi_views.accounts``). Each user
    has one main character (``is_main``): the first linked, changeable.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="eve_characters"
    )
    character_id = models.BigIntegerField(unique=True)
    character_name = models.CharField(max_length=100)
    character_owner_hash = models.CharField(max_length=64)
    is_main = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_main", "character_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(is_main=True),
                name="esi_views_one_main_character_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.character_name} ({self.character_id}) of {self.user_id}"


@receiver(m2m_changed, sender=Token.scopes.through, dispatch_uid="esi_views.scope_digest")
def _keep_scope_digest(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """Scopes changed outside ``create_from_response`` (a script, a shell): follow them.

    Only tokens that carry a digest are concerned. If the new scopes make the token
    equal to another one of the user's, it loses its digest (it stays, unmerged)
    rather than the change failing.
    """
    if reverse and action == "pre_clear":  # scope.tokens.clear(): note whose scopes change
        instance._esi_cleared_tokens = list(instance.tokens.values_list("pk", flat=True))
    if action not in {"post_add", "post_remove", "post_clear"}:
        return
    if reverse:  # scope.tokens.add(...): the tokens are in pk_set
        if action == "post_clear":
            pk_set = getattr(instance, "_esi_cleared_tokens", ())
        tokens = Token.objects.filter(pk__in=pk_set or ())
    else:
        tokens = Token.objects.filter(pk=instance.pk)
    for token in tokens.exclude(scope_digest="").only("pk", "scope_digest"):
        digest = scopes_digest(token.scopes.values_list("name", flat=True))
        if digest == token.scope_digest:
            continue
        try:
            with transaction.atomic(using=router.db_for_write(Token)):
                Token.objects.filter(pk=token.pk).update(scope_digest=digest)
        except IntegrityError:
            Token.objects.filter(pk=token.pk).update(scope_digest="")
