"""System checks: the SSO application settings a site must provide.

Missing SSO settings are a warning under DEBUG (a developer is still setting up) and
an error otherwise (nobody could log in).
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

REQUIRED_SSO_SETTINGS = ("ESI_SSO_CLIENT_ID", "ESI_SSO_CLIENT_SECRET", "ESI_SSO_CALLBACK_URL")
SSO_APPLICATIONS_URL = "https://developers.eveonline.com/applications"


@register(Tags.security)
def check_sso_settings(app_configs=None, **kwargs):
    missing = [name for name in REQUIRED_SSO_SETTINGS if not getattr(settings, name, "")]
    if not missing:
        return []
    level = Warning if settings.DEBUG else Error
    return [
        level(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set.",
            hint=(
                f"Create an application at {SSO_APPLICATIONS_URL} and copy its client id, "
                "secret and callback URL into your settings."
            ),
            id="esi_views.W001" if settings.DEBUG else "esi_views.E001",
        )
    ]


@register()
def check_contact_email(app_configs=None, **kwargs):
    if getattr(settings, "ESI_USER_CONTACT_EMAIL", ""):
        return []
    return [
        Warning(
            "ESI_USER_CONTACT_EMAIL is not set.",
            hint=(
                "CCP asks every SSO and ESI client to name a contact in its User-Agent; "
                "set ESI_USER_CONTACT_EMAIL to an address that reaches you."
            ),
            id="esi_views.W002",
        )
    ]
