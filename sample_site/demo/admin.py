from django.contrib import admin

from .models import EveCharacterLogin


@admin.register(EveCharacterLogin)
class EveCharacterLoginAdmin(admin.ModelAdmin):
    list_display = ["character_name", "character_id", "user", "created"]
    search_fields = ["character_name", "character_id", "user__username"]
    readonly_fields = ["character_id", "character_owner_hash", "character_name", "created"]
