"""Flows store a keyed hash of the session key, never the key (issue 11).

The rows already stored are hashed in place, so flows open during the upgrade still
complete. The hash is frozen here (a migration must not change when the code does);
``esi_views.models.hash_session_key`` computes the same value.
"""

from django.db import migrations, models
from django.utils.crypto import salted_hmac

import esi_views.fields

SESSION_HASH_SALT = "esi_views.CallbackRedirect.session_hash"


def hash_stored_keys(apps, schema_editor):
    CallbackRedirect = apps.get_model("esi_views", "CallbackRedirect")
    db = schema_editor.connection.alias
    rows = CallbackRedirect.objects.using(db).only("pk", "session_hash")
    for row in rows.iterator(chunk_size=1000):
        digest = salted_hmac(SESSION_HASH_SALT, row.session_hash, algorithm="sha256")
        row.session_hash = digest.hexdigest()
        row.save(update_fields=["session_hash"])


def forget_flows(apps, schema_editor):
    # A hash cannot be turned back into a key; flows live minutes, so drop them.
    CallbackRedirect = apps.get_model("esi_views", "CallbackRedirect")
    CallbackRedirect.objects.using(schema_editor.connection.alias).all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("esi_views", "0005_characterownership"),
    ]

    operations = [
        migrations.RenameField(
            model_name="callbackredirect",
            old_name="session_key",
            new_name="session_hash",
        ),
        migrations.AlterField(
            model_name="callbackredirect",
            name="session_hash",
            field=models.CharField(db_index=True, editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="callbackredirect",
            name="code_verifier",
            field=esi_views.fields.EncryptedTextField(blank=True, editable=False),
        ),
        migrations.RunPython(hash_stored_keys, forget_flows, elidable=True),
    ]
