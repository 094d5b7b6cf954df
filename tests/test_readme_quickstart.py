"""README's "Quick start in a new project", run as written, over real HTTP.

The snippets are read from README.md (the fenced block after each
``<!-- quickstart: ... -->`` marker), never copied here. Two changes only: the ports
8000 and 8765 become free ones (other test runs may share this machine), and
``pip install`` lines are skipped (this environment has the package installed). The
project is made by ``django-admin startproject``; the fake SSO runs from its CLI; the
site runs under ``manage.py runserver``; a ``requests`` session plays the browser.
"""

from __future__ import annotations

import html
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- quickstart: (\w+)(?: (\S+))? -->\n```\w*\n(.*?)```", re.S)
AMARR, CALDARI = "90000001", "90000002"
STARTUP_TIMEOUT = 120  # seconds: a loaded 2-core machine migrates and starts slowly


def snippets() -> list[tuple[str, str | None, str]]:
    found = MARKER.findall((ROOT / "README.md").read_text())
    return [(kind, target or None, body) for kind, target, body in found]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the process exited with {process.returncode}")
        try:
            requests.get(url, timeout=5, allow_redirects=False)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up in {STARTUP_TIMEOUT} s")


@pytest.fixture
def quickstart(tmp_path):
    """The README's project, built and running: (site URL, SSO URL, SSO output, logs)."""
    site_port, sso_port = _free_port(), _free_port()

    def adapt(text: str) -> str:
        return text.replace("127.0.0.1:8000", f"127.0.0.1:{site_port}").replace(
            "8765", str(sso_port)
        )

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    project = tmp_path / "mysite"
    processes: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()

    def background(command: str, cwd: Path, name: str) -> subprocess.Popen:
        log = open(logs / name, "w")  # noqa: SIM115 - closed with the process
        # The README's own command, run by a shell as a user types it.
        process = subprocess.Popen(  # noqa: S602
            command,
            shell=True,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(process)
        return process

    kinds = [kind for kind, _, _ in snippets()]
    assert kinds.count("run") == 1 and kinds.count("sso") == 1 and kinds.count("site") == 1
    sso_process = None
    try:
        for kind, target, body in snippets():
            body = adapt(body)
            if kind == "run":
                commands = [
                    line
                    for line in body.splitlines()
                    if line.strip() and not line.startswith("pip install")
                ]
                subprocess.run(  # noqa: S602
                    " && ".join(commands),
                    shell=True,
                    cwd=tmp_path,
                    env=env,
                    check=True,
                    capture_output=True,
                    timeout=STARTUP_TIMEOUT,
                )
            elif kind == "append":
                with open(project / target, "a") as file:
                    file.write("\n" + body)
            elif kind == "write":
                (project / target).parent.mkdir(parents=True, exist_ok=True)
                (project / target).write_text(body)
            elif kind == "sso":
                sso_process = background(body.strip(), project, "sso")
                _wait_for(f"http://127.0.0.1:{sso_port}/oauth/jwks", sso_process)
            elif kind == "site":
                *setup, serve = [line for line in body.splitlines() if line.strip()]
                for command in setup:
                    subprocess.run(  # noqa: S602
                        command,
                        shell=True,
                        cwd=project,
                        env=env,
                        check=True,
                        capture_output=True,
                        timeout=STARTUP_TIMEOUT,
                    )
                site = background(serve, project, "site")
                _wait_for(f"http://127.0.0.1:{site_port}/esi/login/", site)
            else:
                raise AssertionError(f"unknown quickstart marker {kind!r}")
        yield (
            f"http://127.0.0.1:{site_port}",
            f"http://127.0.0.1:{sso_port}",
            (logs / "sso").read_text(),
            logs,
        )
    finally:
        for process in processes:  # only the processes this test started, by their group
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)


def _approve(
    browser: requests.Session, picker: requests.Response, sso_url: str, character_id: str
) -> requests.Response:
    """Pick a character on the fake SSO's page, as a user clicking its button."""
    assert picker.url.startswith(sso_url + "/v2/oauth/authorize"), picker.url
    fields = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', picker.text))
    form = {html.unescape(k): html.unescape(v) for k, v in fields.items()}
    return browser.post(
        f"{sso_url}/v2/oauth/authorize/approve",
        data={**form, "character_id": character_id},
        timeout=30,
    )


def _csrf(browser: requests.Session) -> str:
    return browser.cookies["csrftoken"]


def test_the_quickstart_works_verbatim(quickstart):
    site, sso, sso_output, logs = quickstart
    # What the fake SSO prints is what the site was configured with.
    assert f"ESI_SSO_CALLBACK_URL = '{site}/esi/callback/'" in sso_output
    assert f"ESI_SSO_BASE_URL = '{sso}'" in sso_output
    browser = requests.Session()

    # An anonymous visitor of the protected home page logs in with EVE, comes back there.
    picker = browser.get(site + "/", timeout=30)
    home = _approve(browser, picker, sso, AMARR)
    assert home.status_code == 200, (home.url, home.text[:500], (logs / "site").read_text())
    assert home.url == site + "/"
    assert "Hello amarr_pilot" in home.text and "Amarr Pilot" in home.text

    # The characters page adds an alt to the same account.
    page = browser.get(site + "/esi/characters/", timeout=30)
    assert page.status_code == 200 and "Amarr Pilot" in page.text
    add = html.unescape(re.search(r'class="add" href="([^"]+)"', page.text).group(1))
    added = _approve(browser, browser.get(site + add, timeout=30), sso, CALDARI)
    assert urlsplit(added.url).path == "/esi/characters/"
    assert "Amarr Pilot" in added.text and "Caldari Pilot" in added.text

    # The class-based view needs the skills scope: one more trip, then the page.
    skills = _approve(browser, browser.get(site + "/skills/", timeout=30), sso, CALDARI)
    assert urlsplit(skills.url).path == "/skills/" and skills.status_code == 200
    assert "Skills of Caldari Pilot" in skills.text

    # The function view lists both characters, once each.
    home = browser.get(site + "/", timeout=30)
    assert home.text.count("<li>Amarr Pilot</li>") == 1
    assert home.text.count("<li>Caldari Pilot</li>") == 1

    # Log out (POST), then log in with the alt: the same account.
    out = browser.post(
        site + "/esi/logout/",
        data={"csrfmiddlewaretoken": _csrf(browser)},
        headers={"Referer": site + "/"},
        timeout=30,
    )
    assert out.url.startswith(sso + "/v2/oauth/authorize")  # / needs a login again
    again = _approve(browser, out, sso, CALDARI)
    assert "Hello amarr_pilot" in again.text and "Caldari Pilot" in again.text


def test_fake_sso_cli_derives_the_callback_from_the_site(tmp_path):
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "esi_views.testing.fake_sso",
        "--port",
        str(port),
        "--site",
        "http://127.0.0.1:8123/",
        "--quiet",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "ESI_SSO_CALLBACK_URL = 'http://127.0.0.1:8123/esi/callback/'" in output
        assert f"ESI_SSO_BASE_URL = 'http://127.0.0.1:{port}'" in output
        # A site that sends another callback URL gets a page naming both.
        answer = requests.get(
            f"http://127.0.0.1:{port}/v2/oauth/authorize",
            params={
                "response_type": "code",
                "client_id": "fake-client-id",
                "redirect_uri": "http://127.0.0.1:8000/esi/callback/",
                "code_challenge": "x",
                "code_challenge_method": "S256",
                "state": "s",
            },
            timeout=10,
        )
        assert answer.status_code == 400 and "8123/esi/callback/" in answer.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
