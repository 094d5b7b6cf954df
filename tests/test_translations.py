"""Translations: pages and API answers in German (and French), and catalogues that hold
every marked string.

The catalogue check runs ``makemessages`` over a copy of each package and fails when it
would add a string the committed catalogues lack, or when a string is untranslated,
fuzzy, or missing from the compiled ``.mo``.
"""

from __future__ import annotations

import gettext
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.views_app import SCOPES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("esi_views", "esi_drf")
LANGUAGES = ("de", "fr")
_ESCAPES = {"n": "\n", "t": "\t"}


# -- rendered in the browser's language ------------------------------------------------------


@pytest.fixture
def german(db) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="de")
    client.force_login(get_user_model().objects.create_user("kapselpilot"))
    return client


def test_the_selection_page_in_german(german, esi_token, fake_sso):
    user = get_user_model().objects.get(username="kapselpilot")
    esi_token(user, character_id=90006001, character_name="Erster Pilot", scopes=SCOPES)
    page = german.get("/v/mixin/token/1/")
    html = page.content.decode()
    assert page.status_code == 200 and page["Content-Language"] == "de"
    assert '<html lang="de">' in html
    assert "<title>Wähle einen Charakter</title>" in html
    assert "Diese Seite braucht Zugriff auf: esi-skills.read_skills.v1" in html
    assert 'aria-label="Weiter als Erster Pilot"' in html
    assert "+ Weiteren Charakter hinzufügen" in html
    assert "Choose a character" not in html


def test_an_error_page_in_german(german):
    german.get("/v/mixin/token/1/")  # a session
    page = german.get("/esi/callback/", {"state": "x" * 20, "code": "c"})
    html = page.content.decode()
    assert page.status_code == 400
    assert "Fehler 400" in html and "Unbekannter Anmeldeversuch" in html
    assert "Dieser Anmeldeversuch ist unbekannt oder wurde bereits verwendet." in html
    assert "Zurück zur Startseite" in html


def test_a_drf_403_in_german(german, fake_sso):
    answer = german.get("/api/skills/")
    assert answer.status_code == 403
    body = answer.json()
    assert body["detail"] == "Ein EVE-SSO-Token mit den nötigen Berechtigungen wird benötigt."
    assert body["code"] == "esi_token_required"  # codes and URLs are not translated
    header = german.get("/api/skills/", HTTP_X_ESI_CHARACTER_ID="abc").json()
    assert header["detail"] == "X-ESI-Character-ID muss eine Charakter-ID sein (nur Ziffern)."


def test_a_bearer_401_is_german_in_the_body_and_ascii_english_in_the_header(db):
    answer = Client(HTTP_ACCEPT_LANGUAGE="de").get(
        "/api/skills/", HTTP_AUTHORIZATION="Bearer two parts"
    )
    assert answer.status_code == 401
    assert "Ungültiger Authorization-Header" in answer.json()["detail"]
    assert "Invalid Authorization header" in answer["WWW-Authenticate"]
    assert answer["WWW-Authenticate"].isascii()


def test_french_too(db, fake_sso):
    client = Client(HTTP_ACCEPT_LANGUAGE="fr")
    page = client.get("/v/mixin/single_use/1/", {"esi_flow": "a" * 20})
    assert page.status_code == 302  # no flow: off to the SSO, whatever the language
    error = client.get("/esi/callback/")
    assert "Réponse incomplète" in error.content.decode()


def test_english_when_the_browser_asks_for_nothing_we_have(db):
    page = Client(HTTP_ACCEPT_LANGUAGE="tlh").get("/esi/callback/")
    html = page.content.decode()
    assert '<html lang="en">' in html and "Session missing" in html


# -- the catalogues hold every marked string --------------------------------------------------


def _gettext_tools() -> None:
    if shutil.which("xgettext") and shutil.which("msgfmt"):
        return
    reason = "GNU gettext is missing (apt-get install gettext)"
    if os.environ.get("ESI_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"ESI_TEST_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _entries(po: Path) -> dict[tuple[str, str], list[str]]:
    """(msgctxt, msgid) -> msgstr forms, from a .po file, header and obsolete entries left out."""
    entries: dict[tuple[str, str], list[str]] = {}
    for block in po.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#~")]
        text = "\n".join(lines)

        def field(name: str, text: str = text) -> str | None:
            match = re.search(rf'^{name} ((?:".*"\n?)+)', text + "\n", re.M)
            if match is None:
                return None
            raw = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1)))
            return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw)

        msgid = field("msgid")
        if not msgid:
            continue
        forms = (
            [field(r"msgstr(?:\[\d\])?")]
            if "msgstr[" not in text
            else [field(rf"msgstr\[{n}\]") for n in range(text.count("msgstr["))]
        )
        key = (field("msgctxt") or "", msgid)
        entries[key] = ["" if f is None else f for f in forms]
        if "#, fuzzy" in text or ", fuzzy" in text:
            entries[key] = [""]
    return entries


def _makemessages(package: str, into: Path) -> Path:
    """Run makemessages over a copy of ``package``; return the copy's German catalogue."""
    copy = into / package
    shutil.copytree(ROOT / package, copy, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    subprocess.run(
        # -P: the copy holds http.py, which must not shadow the standard library.
        [
            sys.executable,
            "-P",
            "-m",
            "django",
            "makemessages",
            "-l",
            "de",
            "--no-obsolete",
            "--no-location",
        ],
        cwd=copy,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return copy / "locale" / "de" / "LC_MESSAGES" / "django.po"


@pytest.mark.parametrize("package", PACKAGES)
def test_makemessages_would_add_nothing(package, tmp_path):
    _gettext_tools()
    extracted = set(_entries(_makemessages(package, tmp_path)))
    for language in LANGUAGES:
        committed = set(
            _entries(ROOT / package / "locale" / language / "LC_MESSAGES" / "django.po")
        )
        missing = sorted(extracted - committed)
        assert not missing, (
            f"{package} has strings missing from its {language} catalogue (run `make messages` "
            f"and translate them): {missing}"
        )


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("package", PACKAGES)
def test_every_string_is_translated_and_compiled(package, language):
    folder = ROOT / package / "locale" / language / "LC_MESSAGES"
    entries = _entries(folder / "django.po")
    assert entries
    untranslated = sorted(key for key, forms in entries.items() if not all(forms))
    assert not untranslated, f"{package}/{language} untranslated or fuzzy: {untranslated}"
    with (folder / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)._catalog  # type: ignore[attr-defined]
    for (context, msgid), forms in entries.items():
        key = f"{context}\x04{msgid}" if context else msgid
        found = compiled.get(key, compiled.get((key, 0)))
        assert found == forms[0], f"{package}/{language}: {msgid!r} not compiled (make messages)"
