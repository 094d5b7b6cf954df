"""System checks for esi_drf, ids ``esi_drf.W00x``."""

from __future__ import annotations

from typing import Any, cast

from django.core.checks import Tags, Warning, register
from rest_framework.settings import api_settings

from .authentication import EveSSOAuthentication


@register(Tags.security)
def check_authentication_order(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    # api_settings imports the dotted paths; the stubs type the raw setting (strings).
    classes = cast("list[type]", list(api_settings.DEFAULT_AUTHENTICATION_CLASSES))
    ours = [c for c in classes if issubclass(c, EveSSOAuthentication)]
    if not ours or classes[0] is ours[0]:
        return []
    return [
        Warning(
            f"{ours[0].__name__} is not the first of DEFAULT_AUTHENTICATION_CLASSES.",
            hint="DRF takes the WWW-Authenticate header from the first class; without one it "
            "answers a rejected bearer token with 403 and no error description instead of "
            "401. List EveSSOAuthentication first (it ignores requests without a Bearer "
            "header, so the other classes still run).",
            id="esi_drf.W001",
        )
    ]
