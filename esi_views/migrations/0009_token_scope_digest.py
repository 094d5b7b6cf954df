"""One token per user, character and scope set: de-duplicate, fill the digest, constrain.

Before this, two logins of the same character by the same user at the same moment could
both insert a token. Existing duplicates are merged here the way a new login merges
(the most recently updated one is kept), then the database refuses new ones.

Sites with ``ESI_ALWAYS_CREATE_TOKEN = True`` want duplicates: their rows get no digest
(an empty one) and are left as they are (the constraint ignores rows without one).
"""

import hashlib

from django.conf import settings
from django.db import migrations, models


def _digest(names):
    # esi_views.scopes.scopes_digest, frozen here as it was when this migration was written.
    return hashlib.sha256(" ".join(sorted(set(names))).encode()).hexdigest()


def dedupe_and_fill(apps, schema_editor):
    if getattr(settings, "ESI_ALWAYS_CREATE_TOKEN", False):
        return
    Token = apps.get_model("esi_views", "Token")
    db = schema_editor.connection.alias
    links = Token.scopes.through.objects.using(db)
    names: dict[int, list[str]] = {}
    for token_id, name in links.values_list("token_id", "scope__name").iterator(chunk_size=2000):
        names.setdefault(token_id, []).append(name)
    tokens = (
        Token.objects.using(db).filter(user__isnull=False)
        .order_by("user_id", "character_id", "-updated", "-pk")
        .values_list("pk", "user_id", "character_id")
    )
    seen: set[tuple] = set()
    keep: list = []
    drop: list[int] = []
    for pk, user_id, character_id in tokens.iterator(chunk_size=2000):
        digest = _digest(names.get(pk, ()))
        group = (user_id, character_id, digest)
        if group in seen:
            drop.append(pk)
        else:
            seen.add(group)
            keep.append(Token(pk=pk, scope_digest=digest))
    for start in range(0, len(drop), 500):
        Token.objects.using(db).filter(pk__in=drop[start:start + 500]).delete()
    Token.objects.using(db).bulk_update(keep, ["scope_digest"], batch_size=500)
    if schema_editor.connection.vendor == "postgresql":
        # The deletes queued deferred foreign-key checks; PostgreSQL refuses to build an
        # index on a table with pending ones in the same transaction. Run them now.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):

    dependencies = [
        ('esi_views', '0008_token_user_related_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='token',
            name='scope_digest',
            field=models.CharField(blank=True, default='', editable=False, max_length=64),
        ),
        migrations.RunPython(dedupe_and_fill, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name='token',
            constraint=models.UniqueConstraint(condition=models.Q(('user__isnull', False), models.Q(('scope_digest', ''), _negated=True)), fields=('user', 'character_id', 'scope_digest'), name='esi_views_token_one_per_user_character_scopes'),
        ),
    ]
