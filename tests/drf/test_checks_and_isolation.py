"""esi_drf's system check, app wiring, and esi_views working with DRF not importable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from django.apps import apps
from django.test import override_settings

from esi_drf.checks import check_authentication_order

ROOT = Path(__file__).resolve().parents[2]
SESSION = "rest_framework.authentication.SessionAuthentication"
OURS = "esi_drf.authentication.EveSSOAuthentication"


def test_warns_when_bearer_auth_is_not_first():
    with override_settings(REST_FRAMEWORK={"DEFAULT_AUTHENTICATION_CLASSES": [SESSION, OURS]}):
        assert [w.id for w in check_authentication_order()] == ["esi_drf.W001"]
    with override_settings(REST_FRAMEWORK={"DEFAULT_AUTHENTICATION_CLASSES": [OURS, SESSION]}):
        assert check_authentication_order() == []
    with override_settings(REST_FRAMEWORK={"DEFAULT_AUTHENTICATION_CLASSES": [SESSION]}):
        assert check_authentication_order() == []


def test_app_registers_the_openapi_extension():
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    from esi_drf.authentication import EveSSOAuthentication

    assert apps.get_app_config("esi_drf").label == "esi_drf"
    scheme = OpenApiAuthenticationExtension.get_match(EveSSOAuthentication())
    assert scheme is not None and scheme.name == ["eveSSO", "eveBearer"]


ISOLATED = textwrap.dedent('''
    import importlib, importlib.abc, pkgutil, sys

    class Blocker(importlib.abc.MetaPathFinder):
        """DRF and drf-spectacular are not installed, as far as this process can tell."""
        blocked = ("rest_framework", "drf_spectacular", "esi_drf")
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    try:
        import rest_framework  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker does not block")

    import django
    from django.conf import settings
    import tests.settings as test_settings

    values = {k: getattr(test_settings, k) for k in dir(test_settings) if k.isupper()}
    values["INSTALLED_APPS"] = [a for a in values["INSTALLED_APPS"]
                                if a.split(".")[0] not in Blocker.blocked]
    values.pop("REST_FRAMEWORK", None)
    values["ROOT_URLCONF"] = "isolated_urls"
    values["DATABASES"] = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                       "NAME": ":memory:"}}
    settings.configure(**values)
    django.setup()

    import types
    urls = types.ModuleType("isolated_urls")
    sys.modules["isolated_urls"] = urls
    from django.urls import include, path
    urls.urlpatterns = [path("esi/", include("esi_views.urls")),
                        path("v/", include("tests.views_app"))]

    import esi_views
    imported = []
    for module in pkgutil.walk_packages(esi_views.__path__, "esi_views."):
        importlib.import_module(module.name)
        imported.append(module.name)

    from django.core.management import call_command
    call_command("check", fail_level="ERROR")
    call_command("migrate", verbosity=0)
    from django.test import Client
    response = Client().get("/v/mixin/token/1/")  # a protected view: off to the EVE SSO
    assert response.status_code == 302, response.status_code
    assert "/v2/oauth/authorize?" in response["Location"], response["Location"]
    leaked = [m for m in sys.modules if m.split(".")[0] in Blocker.blocked]
    assert not leaked, leaked
    print("OK", len(imported))
''')


def test_esi_views_works_without_rest_framework():
    result = subprocess.run(
        [sys.executable, "-c", ISOLATED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    ok, count = result.stdout.split()[-2:]
    assert ok == "OK" and int(count) >= 20  # every esi_views module was imported
