from django.conf import settings

from esi_views.flow import portrait_url


def demo(request):
    """What every demo page shows in its header and footer."""
    character = None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        login = user.eve_logins.order_by("created").first()
        if login is not None:
            character = {"name": login.character_name,
                         "portrait": portrait_url(login.character_id, 64)}
    return {
        "demo_fake_sso_url": settings.FAKE_SSO_URL,
        "demo_real_sso": settings.USE_REAL_SSO,
        "demo_character": character,
    }
