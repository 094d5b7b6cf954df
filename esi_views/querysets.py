"""TokenQuerySet: selecting tokens by scope and validity, and storing new ones.

Scope filters are one subquery each (no joins on the outer query, no GROUP BY), so
they chain with any other filter and cost no extra queries.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import models, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from .conf import esi_settings
from .scopes import ScopesArg, normalize_scopes

if TYPE_CHECKING:
    from .exceptions import SSOTransientError
    from .models import Token
    from .sso import TokenResponse


class TokenQuerySet(models.QuerySet["Token"]):
    # Set on require_valid()'s result: why some tokens are missing from it.
    refresh_failures: list[SSOTransientError]

    def _scope_links(self) -> models.QuerySet[Any]:
        return self.model.scopes.through.objects.all()

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
        comes already evaluated (same order, same prefetched relations).

        ``raise_if_unavailable=True``: when no token is left and at least one was left out
        only because the SSO is down, raise that ``SSOTransientError`` (an
        ``SSOUnavailableError``) instead of answering "none", so "no usable token" and
        "SSO down" can be told apart even through ``.first()``.
        """
        from .refresh import refresh_tokens

        tokens = list(self)
        expired = [t for t in tokens if t.expired]
        transient: list[SSOTransientError] = []
        if expired:
            report = refresh_tokens(expired)
            transient = [error for _, error in report.transient]
            refreshed = {t.pk: t for t in report.usable}
            for token in expired:
                if token.pk in refreshed:
                    report.raise_for(token)  # copies the new values onto our instance
            tokens = [t for t in tokens if not t.expired or t.pk in refreshed]
        if raise_if_unavailable and transient and not tokens:
            raise transient[0]
        result = self.filter(pk__in=[t.pk for t in tokens])
        # Hand back the rows we already hold (and their prefetched relations) instead of
        # querying again; any further filtering on the result queries as usual.
        result._result_cache = tokens
        result._prefetch_done = True  # type: ignore[attr-defined]  # internal, not in the stubs
        # Why some tokens are missing, for callers that answer differently when the SSO
        # is down (esi_drf's 503); not carried over to querysets derived from this one.
        result.refresh_failures = transient
        return result

    def bulk_refresh(self) -> TokenQuerySet:
        """Refresh every token now; returns those refreshed. Dead ones are deleted."""
        from .refresh import refresh_tokens

        report = refresh_tokens(list(self), force=True)
        return self.filter(pk__in=[t.pk for t in report.refreshed])

    def create_from_code(self, code: str, code_verifier: str, user: Any = None) -> Token:
        """Exchange an authorization code and store the token."""
        from . import sso

        return self.create_from_response(sso.exchange_code(code, code_verifier), user=user)

    @transaction.atomic
    def create_from_response(self, response: TokenResponse, user: Any = None) -> Token:
        """Store a verified token answer, merging it into an equivalent token if one exists.

        Tokens of the same character under another owner hash are deleted: the
        character changed hands and they can no longer be used.
        """
        from .models import Scope

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
            Scope.objects.bulk_create(
                [Scope(name=name) for name in claims.scopes], ignore_conflicts=True
            )
            token.scopes.set(Scope.objects.filter(name__in=claims.scopes))
        return token
