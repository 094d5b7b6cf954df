"""Run the demo site: ``make demo``, or ``.venv/bin/python sample_site/run_demo.py``.

1. Starts a fake EVE SSO in this process (three demo characters and a picker page),
   unless ESI_SSO_CLIENT_ID, ESI_SSO_CLIENT_SECRET and ESI_SSO_CALLBACK_URL are all set:
   then the real EVE SSO is used.
2. Migrates the SQLite database (``DEMO_DATABASE``, default sample_site/db.sqlite3).
3. Creates the demo admin user (admin / admin) if it does not exist.
4. Runs Django's development server on http://127.0.0.1:8000 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REAL_SSO_SETTINGS = ("ESI_SSO_CLIENT_ID", "ESI_SSO_CLIENT_SECRET", "ESI_SSO_CALLBACK_URL")
DEMO_CHARACTERS = (
    (90000001, "Amarr Pilot"),
    (90000002, "Caldari Pilot"),
    (90000003, "Gallente Pilot"),
)
ADMIN_USERNAME = ADMIN_PASSWORD = "admin"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the django-esi-views demo site.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    parser.add_argument(
        "--sso-port",
        type=int,
        default=int(os.environ.get("DEMO_SSO_PORT", "8765")),
        help="port of the fake EVE SSO (0: any free port)",
    )
    return parser.parse_args(argv)


def _start_fake_sso(host: str, port: int, site_url: str):
    from esi_views.testing import FakeEveSSO

    def make(port: int) -> FakeEveSSO:
        sso = FakeEveSSO(host, port, callback_url=f"{site_url}/esi/callback/")
        for character_id, name in DEMO_CHARACTERS:
            sso.add_character(character_id, name)
        sso.select_character(None)  # show the picker page: choose a character each time
        return sso.start()

    try:
        return make(port)
    except OSError:
        print(f"Port {port} is taken; starting the fake EVE SSO on a free port.", flush=True)
        return make(0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_site.settings")
    site_url = f"http://{args.host}:{args.port}"
    os.environ["DEMO_SITE_URL"] = site_url

    sso = None
    if all(os.environ.get(name) for name in REAL_SSO_SETTINGS):
        sso_text = (
            f"the real EVE SSO (client id {os.environ['ESI_SSO_CLIENT_ID']}, "
            f"callback {os.environ['ESI_SSO_CALLBACK_URL']})"
        )
    else:
        sso = _start_fake_sso(args.host, args.sso_port, site_url)
        os.environ["DEMO_FAKE_SSO_URL"] = sso.base_url
        names = ", ".join(name for _, name in DEMO_CHARACTERS)
        sso_text = f"a fake EVE SSO at {sso.base_url} (characters: {names})"

    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        from django.contrib.auth import get_user_model

        User = get_user_model()
        if not User.objects.filter(username=ADMIN_USERNAME).exists():
            User.objects.create_superuser(ADMIN_USERNAME, "admin@example.com", ADMIN_PASSWORD)
            admin_text = f"user {ADMIN_USERNAME!r}, password {ADMIN_PASSWORD!r} (just created)"
        else:
            admin_text = f"user {ADMIN_USERNAME!r} (already existed; password unchanged)"

        from django.conf import settings

        rule = "=" * 72
        print(f"\n{rule}\n django-esi-views demo\n{rule}", flush=True)
        print(f" Open          {site_url}/", flush=True)
        print(f" EVE SSO       {sso_text}", flush=True)
        print(f" Admin         {site_url}/admin/  {admin_text}", flush=True)
        print(f" Swagger UI    {site_url}/api/docs/", flush=True)
        print(f" Database      {settings.DATABASES['default']['NAME']}", flush=True)
        celery_mode = (
            "eager (in the web process)"
            if settings.CELERY_TASK_ALWAYS_EAGER
            else f"broker {settings.CELERY_BROKER_URL}"
        )
        print(f" Celery        {celery_mode}, demo task rate {settings.DEMO_TASK_RATE}", flush=True)
        print(f" Stop          Ctrl-C\n{rule}\n", flush=True)
        call_command("runserver", f"{args.host}:{args.port}", use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        if sso is not None:
            sso.stop()
        print("Demo stopped.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
