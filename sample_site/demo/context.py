from django.conf import settings

from esi_views.accounts import main_character
from esi_views.links import login_url, portrait_url

from .scopes import CHARACTER_SCOPES


def demo(request):
    """What every demo page shows in its header and footer."""
    character = None
    main = main_character(getattr(request, "user", None))
    if main is not None:
        character = {"name": main.character_name, "portrait": portrait_url(main.character_id, 64)}
    return {
        "demo_fake_sso_url": settings.FAKE_SSO_URL,
        "demo_real_sso": settings.USE_REAL_SSO,
        "demo_character": character,
        # The shipped login, asking for the scopes the demo pages need in one trip.
        "demo_login_url": login_url(CHARACTER_SCOPES, request.get_full_path()),
    }
