from django.apps import AppConfig


class EsiViewsConfig(AppConfig):
    name = "esi_views"
    label = "esi_views"
    verbose_name = "EVE SSO tokens"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
