"""tests.settings plus django-esi's ``esi`` app, as a site that keeps django-esi (for its
ESI client) next to esi_views. Used by ``make test-django-esi``."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "esi"]
# django-esi's own setting names are ours where the meaning is the same
# (ESI_SSO_CLIENT_ID, ESI_SSO_CLIENT_SECRET, ESI_SSO_CALLBACK_URL, ESI_USER_CONTACT_EMAIL).
