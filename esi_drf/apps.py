import importlib.util

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EsiDrfConfig(AppConfig):
    name = "esi_drf"
    label = "esi_drf"
    verbose_name = _("EVE SSO tokens for Django REST framework")

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        # drf-spectacular is optional: register our OpenAPI extension only when present.
        if importlib.util.find_spec("drf_spectacular") is not None:
            from . import schema  # noqa: F401
