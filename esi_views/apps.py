from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EsiViewsConfig(AppConfig):
    name = "esi_views"
    label = "esi_views"
    verbose_name = _("EVE SSO tokens")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
