"""TokenQuerySet: selecting tokens by scope, owner and validity, and storing new ones.

Scope filters are one subquery each (no joins on the outer query, no GROUP BY), so
they chain with any other filter and cost no extra queries.

Imports: models.py imports this module (``Token.objects`` is built from it), so this
module never imports models.py; it reaches the models through ``self.model``.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables

from . import sso
from .conf import esi_settings
from .exceptions import SSOTransientError
from .refresh import RefreshReport, refresh_tokens
from .scopes import ScopesArg, normalize_scopes, scopes_digest

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


_STORE_LOCK = threading.Lock()


class TokenQuerySet(models.QuerySet["Token"]):
    def _scope_links(self) -> models.QuerySet[Any]:
        return self.model.scopes.through.objects.all()

    # -- a user's tokens (what the mixins, the decorators and esi_drf hand out) --------

    def for_user(
        self, user: Any, scopes: ScopesArg = "", *, character_id: int | None = None
    ) -> TokenQuerySet:
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

    def usable_by(
        self, user: Any, scopes: ScopesArg = "", *, character_id: int | None = None
    ) -> TokenQuerySet:
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

    @method_decorator(sensitive_variables())  # the answer's tokens are in these frames
    def create_from_response(self, response: sso.TokenResponse, user: Any = None) -> Token:
        """Store a verified token answer, merging it into an equivalent token if one exists.

        Equivalent: same user, character, owner and exactly the same scopes (unless
        ``ESI_ALWAYS_CREATE_TOKEN``; user-less tokens are never merged). The newer
        answer's secrets win. Two logins racing to add the same token end in one row:
        the database's unique constraint on ``scope_digest`` refuses the second insert,
        which then merges into the first. Tokens of the same character under another
        owner hash are deleted: the character changed hands and they can no longer be used.
        """
        database = router.db_for_write(self.model)
        connection = connections[database]
        # Without row locks (SQLite) the database serialises writers by failing them
        # ("database is locked"); this process's threads queue here instead. Not inside
        # a caller's transaction: it may hold the database's write lock already, and
        # waiting for our lock under it could block a thread that holds ours.
        queue = (
            _STORE_LOCK
            if not connection.features.has_select_for_update and not connection.in_atomic_block
            else contextlib.nullcontext()
        )
        with queue, transaction.atomic(using=database):
            return self._store(response, user)

    @method_decorator(sensitive_variables())
    def _store(self, response: sso.TokenResponse, user: Any) -> Token:
        claims = response.claims
        self.filter(character_id=claims.character_id).exclude(
            character_owner_hash=claims.owner_hash
        ).delete()
        fields = {
            "character_name": claims.character_name[:100],  # the column's length
            "character_owner_hash": claims.owner_hash,
            "access_token": response.access_token,
            "refresh_token": response.refresh_token or "",
            "expires_at": response.expires_at,
        }
        user_id = getattr(user, "pk", None)
        merge = user_id is not None and not esi_settings.ALWAYS_CREATE_TOKEN
        digest = scopes_digest(claims.scopes) if merge else ""
        if merge:
            equivalent = list(
                self.select_for_update()
                .filter(
                    character_id=claims.character_id,
                    character_owner_hash=claims.owner_hash,
                    user_id=user_id,
                )
                .require_scopes_exact(claims.scopes)
                .order_by("-updated", "-pk")
            )
            if equivalent:
                kept, *duplicates = equivalent
                # Duplicates from before the constraint (or from ESI_ALWAYS_CREATE_TOKEN)
                # go first, so the kept one can take the digest.
                self.filter(pk__in=[t.pk for t in duplicates]).delete()
                return self._merge(kept, fields, digest)
        try:
            # A savepoint: if a concurrent login inserted the same token first, only the
            # insert is undone and we merge into theirs.
            with transaction.atomic(using=router.db_for_write(self.model)):
                token = self.create(
                    user_id=user_id, character_id=claims.character_id, scope_digest=digest, **fields
                )
        except IntegrityError:
            if not digest:
                raise
            winner: Token | None = (
                self.select_for_update()
                .filter(user_id=user_id, character_id=claims.character_id, scope_digest=digest)
                .first()
            )
            if winner is None:
                raise
            kept = winner
            self._link_scopes(kept, claims.scopes)  # a no-op once their insert committed
            return self._merge(kept, fields, digest)
        self._link_scopes(token, claims.scopes)
        return token

    def _link_scopes(self, token: Token, scopes: frozenset[str]) -> None:
        """Give ``token`` these scopes, straight into the link table (the digest matches)."""
        if not scopes:
            return
        scope_model = token.scopes.model  # Scope, without importing models (see above)
        scope_model.objects.bulk_create(
            [scope_model(name=name) for name in scopes], ignore_conflicts=True
        )
        links = self.model.scopes.through
        links.objects.bulk_create(
            [
                links(token_id=token.pk, scope_id=pk)
                for pk in scope_model.objects.filter(name__in=scopes).values_list("pk", flat=True)
            ],
            ignore_conflicts=True,
        )

    @method_decorator(sensitive_variables())
    def _merge(self, kept: Token, fields: dict[str, Any], digest: str) -> Token:
        for name, value in fields.items():
            setattr(kept, name, value)
        kept.scope_digest = digest
        kept.save()
        return kept
