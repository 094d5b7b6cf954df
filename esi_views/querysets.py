"""TokenQuerySet: selecting tokens by scope, owner and validity, and storing new ones.

Scope filters are one subquery each (no joins on the outer query, no GROUP BY), so
they chain with any other filter and cost no extra queries.

Imports: models.py imports this module (``Token.objects`` is built from it), so this
module never imports models.py; it reaches the models through ``self.model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from . import sso
from .conf import esi_settings
from .exceptions import SSOTransientError
from .refresh import RefreshReport, refresh_tokens
from .scopes import ScopesArg, normalize_scopes

if TYPE_CHECKING:
    from .models import Token


@dataclass(frozen=True)
class ValidTokens:
    """What ``TokenQuerySet.valid_tokens()`` found: the usable tokens, and the refresh report
    of the expired ones (why some were left out)."""

    tokens: TokenQuerySet  # evaluated: iterating it runs no query
    report: RefreshReport = field(default_factory=RefreshReport)

    @property
    def unavailable(self) -> list[SSOTransientError]:
        """Errors of tokens left out only because the SSO could not renew them now."""
        return [error for _, error in self.report.transient]

    @property
    def sso_unavailable(self) -> bool:
        """No usable token, but some exist that the SSO could not renew: "try again later",
        not "get a token"."""
        return not self.tokens and bool(self.unavailable)

    @property
    def retry_after(self) -> float | None:
        """The longest ``Retry-After`` the SSO asked for, if any."""
        return max((error.retry_after or 0 for error in self.unavailable), default=0) or None

    def raise_if_unavailable(self) -> None:
        """Raise the first such ``SSOTransientError`` (an ``SSOUnavailableError``) when
        ``sso_unavailable``."""
        if self.sso_unavailable:
            raise self.unavailable[0]


class TokenQuerySet(models.QuerySet["Token"]):
    def _scope_links(self) -> models.QuerySet[Any]:
        return self.model.scopes.through.objects.all()

    # -- a user's tokens (what the mixins, the decorators and esi_drf hand out) --------

    def for_user(self, user: Any, scopes: ScopesArg = "", *,
                 character_id: int | None = None) -> TokenQuerySet:
        """This user's tokens with these scopes, most recently refreshed first; not yet
        checked for validity (chain ``require_valid()`` or ``valid_tokens()``).

        Anonymous users (and ``None``) have none: tokens without a user are never listed.
        """
        if user is None or not user.is_authenticated:
            return self.none()
        tokens = self.filter(user=user)
        if character_id is not None:
            tokens = tokens.filter(character_id=character_id)
        return tokens.require_scopes(scopes).order_by("-updated", "-pk")

    def usable_by(self, user: Any, scopes: ScopesArg = "", *,
                  character_id: int | None = None) -> TokenQuerySet:
        """``for_user(...).require_valid()``: evaluated, expired ones refreshed first."""
        return self.for_user(user, scopes, character_id=character_id).require_valid()

    def selectable_by(self, user: Any, scopes: ScopesArg = "") -> list[Token]:
        """What the selection page lists: one valid token per character (the most recently
        refreshed), sorted by name, scopes prefetched."""
        tokens = self.for_user(user, scopes).prefetch_related("scopes").require_valid()
        by_character: dict[int, Token] = {}
        for token in tokens:
            by_character.setdefault(token.character_id, token)
        return sorted(by_character.values(), key=lambda t: t.character_name.lower())

    def require_scopes(self, scopes: ScopesArg) -> TokenQuerySet:
        """Tokens that carry at least these scopes. No scopes (``""``) means all tokens."""
        names = normalize_scopes(scopes)
        if not names:
            return self.all()
        having_all = (
            self._scope_links()
            .filter(scope__name__in=names)
            .values("token_id")
            .annotate(matching=Count("scope_id"))
            .filter(matching=len(names))
            .values("token_id")
        )
        return self.filter(pk__in=having_all)

    def require_scopes_exact(self, scopes: ScopesArg) -> TokenQuerySet:
        """Tokens whose scopes are exactly these (none for ``""``)."""
        names = normalize_scopes(scopes)
        if not names:
            return self.filter(~Exists(self._scope_links().filter(token_id=OuterRef("pk"))))
        exactly = (
            self._scope_links()
            .values("token_id")
            .annotate(
                total=Count("scope_id"),
                matching=Count("scope_id", filter=Q(scope__name__in=names)),
            )
            .filter(total=len(names), matching=len(names))
            .values("token_id")
        )
        return self.filter(pk__in=exactly)

    def get_expired(self) -> TokenQuerySet:
        margin = timedelta(seconds=esi_settings.TOKEN_REFRESH_MARGIN)
        return self.filter(expires_at__lte=timezone.now() + margin)

    def equivalent_to(self, token: Token) -> TokenQuerySet:
        """Other tokens of the same character, owner and user with exactly the same scopes."""
        return (
            self.filter(
                character_id=token.character_id,
                character_owner_hash=token.character_owner_hash,
                user_id=token.user_id,
            )
            .require_scopes_exact(token.scopes.values_list("name", flat=True))
            .exclude(pk=token.pk)
        )

    def require_valid(self, *, raise_if_unavailable: bool = False) -> TokenQuerySet:
        """Refresh the expired ones (in parallel, under per-token locks) and keep the usable.

        Dead tokens are deleted; tokens whose refresh failed transiently are kept in the
        database but left out of the result. Evaluates this queryset once; the result
        comes already evaluated (same order, same prefetched relations). Why tokens were
        left out: ``valid_tokens()``, which returns the refresh report with the result.

        ``raise_if_unavailable=True``: when no token is left and at least one was left out
        only because the SSO is down, raise that ``SSOTransientError`` (an
        ``SSOUnavailableError``) instead of answering "none", so "no usable token" and
        "SSO down" can be told apart even through ``.first()``.
        """
        found = self.valid_tokens()
        if raise_if_unavailable:
            found.raise_if_unavailable()
        return found.tokens

    def valid_tokens(self) -> ValidTokens:
        """``require_valid()``'s result together with the refresh report of the expired ones."""
        result = self.all()
        tokens = list(result)  # evaluates ``result`` (and its prefetches) once
        expired = [token for token in tokens if token.expired]
        if not expired:
            return ValidTokens(result)
        report = refresh_tokens(expired)
        usable = {token.pk for token in report.usable}
        for token in expired:
            if token.pk in usable:
                report.raise_for(token)  # new values onto the very rows ``result`` holds
        left_out = [token.pk for token in expired if token.pk not in usable]
        if left_out:
            # An evaluated queryset cannot drop rows: ask again without them. Only when a
            # refresh failed, so the common case stays one evaluation.
            result = self.exclude(pk__in=left_out)
            len(result)
        return ValidTokens(result, report)

    def bulk_refresh(self) -> TokenQuerySet:
        """Refresh every token now; returns those refreshed. Dead ones are deleted."""
        report = refresh_tokens(list(self), force=True)
        return self.filter(pk__in=[t.pk for t in report.refreshed])

    def create_from_code(self, code: str, code_verifier: str, user: Any = None) -> Token:
        """Exchange an authorization code and store the token."""
        return self.create_from_response(sso.exchange_code(code, code_verifier), user=user)

    @transaction.atomic
    def create_from_response(self, response: sso.TokenResponse, user: Any = None) -> Token:
        """Store a verified token answer, merging it into an equivalent token if one exists.

        Tokens of the same character under another owner hash are deleted: the
        character changed hands and they can no longer be used.
        """
        claims = response.claims
        self.filter(character_id=claims.character_id).exclude(
            character_owner_hash=claims.owner_hash
        ).delete()
        fields = {
            "character_name": claims.character_name[:100],  # the column's length
            "access_token": response.access_token,
            "refresh_token": response.refresh_token or "",
            "expires_at": response.expires_at,
        }
        user_id = getattr(user, "pk", None)
        if user_id is not None and not esi_settings.ALWAYS_CREATE_TOKEN:
            equivalent = list(
                self.select_for_update()
                .filter(character_id=claims.character_id, character_owner_hash=claims.owner_hash,
                        user_id=user_id)
                .require_scopes_exact(claims.scopes)
                .order_by("-updated")
            )
            if equivalent:
                kept, *duplicates = equivalent
                for name, value in fields.items():
                    setattr(kept, name, value)
                kept.save()
                self.filter(pk__in=[t.pk for t in duplicates]).delete()
                return kept
        token = self.create(
            user_id=user_id,
            character_id=claims.character_id,
            character_owner_hash=claims.owner_hash,
            **fields,
        )
        if claims.scopes:
            scope_model = token.scopes.model  # Scope, without importing models (see above)
            scope_model.objects.bulk_create(
                [scope_model(name=name) for name in claims.scopes], ignore_conflicts=True
            )
            token.scopes.set(scope_model.objects.filter(name__in=claims.scopes))
        return token
