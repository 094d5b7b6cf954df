from django.contrib import admin

from .models import CallbackRedirect, CharacterOwnership, Scope, Token


@admin.register(Scope)
class ScopeAdmin(admin.ModelAdmin):
    list_display = ["name", "friendly_name", "help_text"]
    search_fields = ["name"]


@admin.register(Token)
class TokenAdmin(admin.ModelAdmin):
    list_display = ["character_name", "character_id", "user", "token_type", "expires_at", "updated"]
    list_filter = ["token_type"]
    search_fields = ["character_name", "character_id", "user__username"]
    raw_id_fields = ["user"]
    filter_horizontal = ["scopes"]
    # The secrets stay out of the admin: it never shows or edits them.
    readonly_fields = ["character_id", "character_name", "character_owner_hash", "expires_at",
                       "created", "updated"]
    list_select_related = ["user"]


@admin.register(CallbackRedirect)
class CallbackRedirectAdmin(admin.ModelAdmin):
    list_display = ["created", "session_key", "requested_scopes", "return_url", "token"]
    readonly_fields = ["session_key", "state", "requested_scopes", "return_url", "token", "created"]
    exclude = ["code_verifier"]


@admin.register(CharacterOwnership)
class CharacterOwnershipAdmin(admin.ModelAdmin):
    list_display = ["character_name", "character_id", "user", "is_main", "updated"]
    list_filter = ["is_main"]
    search_fields = ["character_name", "character_id", "user__username"]
    raw_id_fields = ["user"]
    # Who owns a character is decided by the SSO's owner hash, not edited by hand.
    readonly_fields = ["character_id", "character_name", "character_owner_hash", "created",
                       "updated"]
    list_select_related = ["user"]

    def has_add_permission(self, request):
        return False
