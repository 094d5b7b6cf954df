import pytest
from django.core.checks import Error, Warning
from django.test import override_settings

from esi_views.checks import check_contact_email, check_sso_settings
from esi_views.conf import esi_settings


@override_settings(ESI_SSO_BASE_URL="https://login.eveonline.com")
def test_endpoints_default_to_eve():
    assert esi_settings.SSO_AUTHORIZE_URL == "https://login.eveonline.com/v2/oauth/authorize"
    assert esi_settings.SSO_TOKEN_URL == "https://login.eveonline.com/v2/oauth/token"
    assert esi_settings.SSO_REVOKE_URL == "https://login.eveonline.com/v2/oauth/revoke"
    assert esi_settings.SSO_JWKS_URL == "https://login.eveonline.com/oauth/jwks"
    assert esi_settings.SSO_ISSUERS == {"login.eveonline.com", "https://login.eveonline.com"}


def test_one_base_url_moves_every_endpoint_and_single_ones_can_still_be_set():
    with override_settings(ESI_SSO_BASE_URL="http://127.0.0.1:8765/"):
        assert esi_settings.SSO_TOKEN_URL == "http://127.0.0.1:8765/v2/oauth/token"
        assert esi_settings.SSO_JWKS_URL == "http://127.0.0.1:8765/oauth/jwks"
        assert esi_settings.SSO_ISSUERS == {"http://127.0.0.1:8765", "127.0.0.1:8765"}
    with override_settings(ESI_SSO_BASE_URL="http://a", ESI_SSO_TOKEN_URL="http://b/token"):
        assert esi_settings.SSO_TOKEN_URL == "http://b/token"
        assert esi_settings.SSO_AUTHORIZE_URL == "http://a/v2/oauth/authorize"


def test_unknown_setting_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="ESI_NOPE"):
        esi_settings.NOPE  # noqa: B018


@override_settings(ESI_SSO_CLIENT_ID="", ESI_SSO_CALLBACK_URL="", DEBUG=False)
def test_missing_sso_settings_are_an_error_in_production():
    (message,) = check_sso_settings()
    assert isinstance(message, Error)
    assert message.id == "esi_views.E001"
    assert "ESI_SSO_CLIENT_ID" in message.msg and "ESI_SSO_CALLBACK_URL" in message.msg
    assert "ESI_SSO_CLIENT_SECRET" not in message.msg
    assert message.hint


@override_settings(ESI_SSO_CLIENT_SECRET="", DEBUG=True)
def test_missing_sso_settings_are_a_warning_under_debug():
    (message,) = check_sso_settings()
    assert isinstance(message, Warning) and message.id == "esi_views.W001"
    assert "ESI_SSO_CLIENT_SECRET is not set" in message.msg


def test_complete_settings_pass_the_checks():
    assert check_sso_settings() == []
    assert check_contact_email() == []


@override_settings(ESI_USER_CONTACT_EMAIL="")
def test_missing_contact_email_is_a_warning():
    (message,) = check_contact_email()
    assert isinstance(message, Warning) and message.id == "esi_views.W002"


def test_checks_run_through_manage_py_check():
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    with override_settings(ESI_SSO_CLIENT_ID=""), pytest.raises(SystemCheckError, match="E001"):
        call_command("check")


def test_signed_cookie_sessions_are_warned_about(settings):
    from esi_views.checks import check_session_engine

    assert check_session_engine() == []
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    (message,) = check_session_engine()
    assert isinstance(message, Warning) and message.id == "esi_views.W003"


def test_per_process_caches_for_shared_state_are_warned_about(settings):
    from esi_views.checks import check_shared_caches

    assert check_shared_caches() == []
    settings.CACHES = {
        **settings.CACHES,
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.ESI_CLEANUP_CACHE_ALIAS = "local"
    (message,) = check_shared_caches()
    assert message.id == "esi_views.W004" and "ESI_CLEANUP_CACHE_ALIAS" in message.msg
