"""Re-encrypt every stored secret with the first key of ESI_TOKEN_ENCRYPTION_KEYS."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from esi_views.models import CallbackRedirect, Token


class Command(BaseCommand):
    help = (
        "Re-encrypt stored EVE tokens with the first key of ESI_TOKEN_ENCRYPTION_KEYS "
        "(or SECRET_KEY). Run after adding a new key in front; then drop the old one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        total = 0
        for model, fields in (
            (Token, ["access_token", "refresh_token"]),
            (CallbackRedirect, ["code_verifier"]),
        ):
            count = self._rotate(model, fields, batch_size)
            total += count
            self.stdout.write(f"{model._meta.verbose_name_plural}: {count} re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"Done: {total} rows re-encrypted."))

    def _rotate(self, model, fields: list[str], batch_size: int) -> int:
        count, last_pk = 0, 0
        while True:
            with transaction.atomic():
                batch = list(
                    model.objects.select_for_update()
                    .filter(pk__gt=last_pk)
                    .order_by("pk")
                    .only("pk", *fields)[:batch_size]
                )
                if not batch:
                    return count
                for row in batch:
                    for name in fields:
                        # Reading decrypts (any key); assigning plaintext makes the save
                        # encrypt it again with the first key.
                        setattr(row, name, getattr(row, name))
                model.objects.bulk_update(batch, fields)
            count += len(batch)
            last_pk = batch[-1].pk
