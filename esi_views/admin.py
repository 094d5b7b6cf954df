"""A least-privilege admin: operators see and revoke tokens, nobody edits who owns what.

Tokens and flows come only from the EVE SSO, so nothing here can add one. A token's
owner, character and scopes are what the SSO vouched for: read-only, or a staff user
with ``change_token`` could hand a victim's character to themselves. No secret is
shown: not the access or refresh token, nor a flow's state, PKCE verifier or session hash.
"""

from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .exceptions import SSOError
from .models import CallbackRedirect, CharacterOwnership, Scope, Token

logger = logging.getLogger(__name__)


# Explicit, so a field added to the model later is not shown or editable by default.
_TOKEN_FIELDS = (
    "character_name",
    "character_id",
    "character_owner_hash",
    "token_type",
    "user",
    "scope_names",
    "expires_at",
    "created",
    "updated",
)
_FLOW_FIELDS = ("created", "kind", "requested_scopes", "return_url", "token")


@admin.register(Scope)
class ScopeAdmin(admin.ModelAdmin):
    list_display = ["name", "friendly_name", "help_text"]
    search_fields = ["name"]
    fields = ["name", "help_text"]
    readonly_fields = ["name"]  # tokens refer to scopes by name

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # scopes are recorded from what the SSO grants


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    list_display = [
        "character_name",
        "character_id",
        "user",
        "scope_count",
        "valid",
        "token_type",
        "updated",
    ]
    list_filter = ["token_type"]
    search_fields = ["character_name", "character_id", "user__username"]
    list_select_related = ["user"]
    actions = ["revoke_and_delete"]
    fields = readonly_fields = _TOKEN_FIELDS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Token]:
        # One query for the list, scope counts included (no query per row).
        return super().get_queryset(request).annotate(_scope_count=Count("scopes"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a token only comes from an SSO login

    @admin.display(description=_("scopes"), ordering="_scope_count")
    def scope_count(self, token: Token) -> int:
        return token._scope_count  # type: ignore[attr-defined]  # get_queryset annotates it

    @admin.display(description=_("access token valid"), boolean=True, ordering="expires_at")
    def valid(self, token: Token) -> bool:
        return token.expires_at > timezone.now()

    @admin.display(description=_("scopes"))
    def scope_names(self, token: Token) -> str:
        return ", ".join(sorted(s.name for s in token.scopes.all())) or "-"

    @admin.action(description=_("Revoke at the EVE SSO and delete"), permissions=["delete"])
    def revoke_and_delete(self, request: HttpRequest, queryset: QuerySet[Token]) -> None:
        revoked = failed = 0
        for token in queryset:
            try:
                token.revoke()
            except SSOError as exc:  # kept: deleting it unrevoked would leave it live at the SSO
                logger.warning("Admin revoke of token %s failed: %s", token.pk, type(exc).__name__)
                failed += 1
            else:
                revoked += 1
        if revoked:
            self.message_user(
                request,
                ngettext("Revoked and deleted %d token.", "Revoked and deleted %d tokens.", revoked)
                % revoked,
                messages.SUCCESS,
            )
        if failed:
            self.message_user(
                request,
                ngettext(
                    "The EVE SSO could not revoke %d token; it was kept, try again later.",
                    "The EVE SSO could not revoke %d tokens; they were kept, try again later.",
                    failed,
                )
                % failed,
                messages.ERROR,
            )


@admin.register(CallbackRedirect)
class CallbackRedirectAdmin(admin.ModelAdmin):
    """Flows in progress, read-only; state and session hash would help hijack one."""

    list_display = ["created", "kind", "requested_scopes", "return_url", "token"]
    list_filter = ["kind"]
    fields = readonly_fields = _FLOW_FIELDS
    list_select_related = ["token"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: CallbackRedirect | None = None
    ) -> bool:
        return False


@admin.register(CharacterOwnership)
class CharacterOwnershipAdmin(admin.ModelAdmin):
    list_display = ["character_name", "character_id", "user", "is_main", "updated"]
    list_filter = ["is_main"]
    search_fields = ["character_name", "character_id", "user__username"]
    # Who owns a character is decided by the SSO's owner hash, not edited by hand: a
    # staff user with change permission must not move a character to their account.
    fields = [
        "character_name",
        "character_id",
        "character_owner_hash",
        "user",
        "is_main",
        "created",
        "updated",
    ]
    readonly_fields = [
        "character_id",
        "character_name",
        "character_owner_hash",
        "user",
        "created",
        "updated",
    ]
    list_select_related = ["user"]

    def has_add_permission(self, request):
        return False
