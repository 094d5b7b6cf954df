"""Browser tests of the sample site: Playwright driving Debian's chromium.

The fake EVE SSO runs in this process (so tests can steer it); the sample site runs
as a real ``manage.py runserver`` process against a temporary SQLite database.
Screenshots of every step go to tests/browser/artifacts/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

# Debian's chromium; ESI_TEST_CHROMIUM points elsewhere (e.g. to check the skip).
CHROMIUM = Path(os.environ.get("ESI_TEST_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_SITE = ROOT / "sample_site"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARACTERS = {90000001: "Amarr Pilot", 90000002: "Caldari Pilot", 90000003: "Gallente Pilot"}
TASK_RATE = "5/s"


def _unavailable(reason: str) -> None:
    if os.environ.get("ESI_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"ESI_TEST_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoSite:
    def __init__(self, url: str, sso) -> None:
        self.url, self.sso = url, sso

    def __call__(self, path: str) -> str:
        return self.url + path


# Module scope: the browser (and its event loop) is gone before other tests use the ORM.
@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def demo_site(playwright_browser, tmp_path_factory) -> Iterator[DemoSite]:
    """The fake SSO (picker page on) and the sample site on free ports."""
    from esi_views.testing import FakeEveSSO

    tmp = tmp_path_factory.mktemp("demo_site")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    sso = FakeEveSSO(callback_url=f"{url}/esi/callback/").start()
    for character_id, name in CHARACTERS.items():
        sso.add_character(character_id, name)
    sso.select_character(None)  # the picker page: the browser chooses

    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ESI_SSO_", "DEMO_", "DJANGO_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="sample_site.settings",
        DEMO_DATABASE=str(tmp / "db.sqlite3"),
        DEMO_SITE_URL=url,
        DEMO_FAKE_SSO_URL=sso.base_url,
        DEMO_TASK_RATE=TASK_RATE,
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, str(SAMPLE_SITE / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, timeout=120)
    subprocess.run(
        [
            *manage,
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "admin@example.com",
        ],
        env={**env, "DJANGO_SUPERUSER_PASSWORD": "admin"},
        check=True,
        timeout=120,
    )
    log = (tmp / "runserver.log").open("w")
    server = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "sample site did not start:\n" + (tmp / "runserver.log").read_text()[-3000:]
                )
            time.sleep(0.2)
        yield DemoSite(url, sso)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        sso.stop()


@pytest.fixture
def page(playwright_browser, demo_site):
    """A fresh browser context (own cookies) whose requests may only reach 127.0.0.1."""
    context = playwright_browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    external: list[str] = []

    def only_local(route):
        if route.request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    yield page
    context.close()
    assert not external, f"pages asked for external resources: {external}"


@pytest.fixture
def shot(request):
    """``shot(page, "name")`` saves artifacts/<test>-<n>-<name>.png (full page)."""
    ARTIFACTS.mkdir(exist_ok=True)
    counter = iter(range(1, 100))
    test = request.node.name.removeprefix("test_")

    def save(page, name: str) -> Path:
        path = ARTIFACTS / f"{test}-{next(counter):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
