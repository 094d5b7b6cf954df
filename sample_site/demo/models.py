"""Which Django user a character logs in as: one per character id and owner hash."""

from django.conf import settings
from django.db import models


class EveCharacterLogin(models.Model):
    """A character (as owned by one EVE account) and the Django user it logs in as.

    Keyed by character id *and* owner hash: when a character is sold, its new owner
    gets a new user rather than the seller's account.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="eve_logins")
    character_id = models.BigIntegerField()
    character_owner_hash = models.CharField(max_length=64)
    character_name = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["character_id", "character_owner_hash"],
                                    name="demo_one_user_per_character_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.character_name} -> {self.user}"
