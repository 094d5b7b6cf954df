"""Copy django-esi's stored tokens into esi_views: encrypted, with users and scopes.

Reads django-esi's tables (esi_token, esi_scope, esi_token_scopes) with SQL, so the
``esi`` app need not be installed any more, only its tables still present. Safe to run
again: a token we already hold (same user, character, owner hash and scopes) is
skipped. Copied tokens count as expired, so their first use (or ``esi_cleanup``)
refreshes them, verifies the new access token and deletes the dead ones.
"""

from __future__ import annotations

from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from esi_views.models import Scope, Token

TABLES = ("esi_token", "esi_scope", "esi_token_scopes")
TOKEN_COLUMNS = (
    "id",
    "user_id",
    "character_id",
    "character_name",
    "character_owner_hash",
    "token_type",
    "access_token",
    "refresh_token",
)


class Command(BaseCommand):
    help = "Copy django-esi's tokens into esi_views, encrypted, keeping users and scopes."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be copied; change nothing."
        )

    def handle(self, *args, dry_run: bool, **options):
        missing = set(TABLES) - set(connection.introspection.table_names())
        if missing:
            raise CommandError(
                f"django-esi's tables are not in this database ({', '.join(sorted(missing))} "
                "missing). Run this before removing them (manage.py migrate esi zero)."
            )
        counts: Counter[str] = Counter()
        with transaction.atomic():
            scopes = _scopes_by_token()
            known_scopes = {s.name: s for s in Scope.objects.all()}
            for row in _tokens():
                counts[_copy(dict(zip(TOKEN_COLUMNS, row, strict=True)), scopes, known_scopes)] += 1
            if dry_run:
                transaction.set_rollback(True)
        verb = "Would copy" if dry_run else "Copied"
        self.stdout.write(self.style.SUCCESS(f"{verb} {counts.pop('copied', 0)} tokens."))
        for reason, count in sorted(counts.items()):
            self.stdout.write(f"Skipped {count}: {reason}.")


def _tokens():
    columns = ", ".join(TOKEN_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM esi_token ORDER BY id")  # noqa: S608 - constants
        while rows := cursor.fetchmany(500):
            yield from rows


def _scopes_by_token() -> dict[int, list[tuple[str, str]]]:
    by_token: dict[int, list[tuple[str, str]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ts.token_id, s.name, s.help_text FROM esi_token_scopes ts "
            "JOIN esi_scope s ON s.id = ts.scope_id"
        )
        for token_id, name, help_text in cursor.fetchall():
            by_token.setdefault(token_id, []).append((name, help_text or ""))
    return by_token


def _copy(
    row: dict, scopes: dict[int, list[tuple[str, str]]], known_scopes: dict[str, Scope]
) -> str:
    if not row["refresh_token"]:
        return "no refresh token (it could never be renewed)"
    if row["user_id"] is None:
        return "no user (a single-use or anonymous-login token)"
    names = sorted({name for name, _ in scopes.get(row["id"], [])})
    already = Token.objects.filter(
        user_id=row["user_id"],
        character_id=row["character_id"],
        character_owner_hash=row["character_owner_hash"],
    ).require_scopes_exact(names)
    if already.exists():
        return "already here (same user, character, owner and scopes)"
    token = Token.objects.create(
        user_id=row["user_id"],
        character_id=row["character_id"],
        character_name=row["character_name"],
        character_owner_hash=row["character_owner_hash"],
        token_type=row["token_type"] or Token.TokenType.CHARACTER,
        access_token=row["access_token"] or "",
        refresh_token=row["refresh_token"],
        expires_at=timezone.now(),  # unknown: refreshed (and verified) on first use
    )
    for name, help_text in scopes.get(row["id"], []):
        if name not in known_scopes:
            known_scopes[name] = Scope.objects.create(name=name, help_text=help_text)
    token.scopes.set([known_scopes[name] for name in names])
    return "copied"
