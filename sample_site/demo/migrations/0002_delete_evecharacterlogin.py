from django.db import migrations


class Migration(migrations.Migration):
    """Logins moved to esi_views (EveSSOBackend, CharacterOwnership)."""

    dependencies = [
        ("demo", "0001_initial"),
    ]

    operations = [
        migrations.DeleteModel(name="EveCharacterLogin"),
    ]
