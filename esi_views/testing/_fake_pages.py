"""HTML and SVG that :class:`~esi_views.testing.FakeEveSSO` serves to browsers.

Self-contained (inline CSS, no CDN, no JavaScript) so the demo site and browser tests
work offline. Every interpolated value is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Protocol

_CSS = """
body { font-family: system-ui, sans-serif; background: #10141a; color: #e6e8eb;
       margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center; }
main { background: #1b222c; border: 1px solid #2c3744; border-radius: 8px; padding: 2rem;
       width: min(30rem, 90vw); box-shadow: 0 8px 24px rgb(0 0 0 / 40%); }
h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
p { color: #aab4bf; line-height: 1.4; }
code { color: #e6e8eb; }
ul { list-style: none; padding: 0; margin: 1.5rem 0; display: grid; gap: .6rem; }
button { font: inherit; cursor: pointer; border-radius: 6px; }
.character { width: 100%; display: flex; align-items: center; gap: 1rem; padding: .6rem;
             background: #232c38; color: inherit; border: 1px solid #2c3744; text-align: left; }
.character:hover, .character:focus { border-color: #d9a53f; outline: none; }
.character img { width: 48px; height: 48px; border-radius: 4px; }
.cancel { background: transparent; color: #aab4bf; border: 1px solid #2c3744; padding: .5rem 1rem; }
.error { color: #ff8a80; }
"""


class CharacterLike(Protocol):
    character_id: int
    name: str


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def error_page(message: str) -> str:
    """What EVE shows for a malformed authorize request: no redirect, just an explanation."""
    return _document(
        "Bad request - Fake EVE SSO",
        f'<h1>Bad authorization request</h1><p class="error">{escape(message)}</p>',
    )


def server_error_page(status: int) -> str:
    return _document(
        f"{status} - Fake EVE SSO",
        f"<h1>{status}</h1><p>The fake SSO was told to fail (fault injection).</p>",
    )


def picker_page(
    base_url: str,
    client_id: str,
    characters: Iterable[CharacterLike],
    params: Mapping[str, str],
) -> str:
    """The character chooser: one button per character, and Cancel.

    The authorize request's parameters ride along as hidden fields, so the approve
    endpoint can validate them again rather than trust a server-side session.
    """
    hidden = "".join(
        f'<input type="hidden" name="{escape(key)}" value="{escape(value)}">'
        for key, value in params.items()
        if key not in {"character_id", "action"}
    )
    buttons = (
        "".join(
            f'<li><button class="character" name="character_id" value="{c.character_id}">'
            f'<img src="{escape(base_url)}/characters/{c.character_id}/portrait" alt="">'
            f"<span>{escape(c.name)}</span></button></li>"
            for c in characters
        )
        or "<li><p>No characters. Add some with <code>add_character()</code>.</p></li>"
    )
    scopes = params.get("scope", "").split()
    scope_text = ", ".join(f"<code>{escape(s)}</code>" for s in scopes) or "none"
    body = (
        "<h1>Fake EVE Online SSO</h1>"
        f"<p>Log in to <strong>{escape(client_id)}</strong> as one of these characters.</p>"
        f"<p>Requested scopes: {scope_text}</p>"
        f'<form method="post" action="/v2/oauth/authorize/approve">{hidden}'
        f"<ul>{buttons}</ul>"
        '<button class="cancel" name="action" value="cancel">Cancel</button></form>'
    )
    return _document("Log in - Fake EVE SSO", body)


def portrait_svg(character_id: int, name: str) -> str:
    """A 128x128 portrait: the character's initials on a colour derived from the id."""
    hue = (character_id * 47) % 360
    initials = "".join(word[0] for word in name.split()[:2]).upper() or "?"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128">'
        f'<rect width="128" height="128" fill="hsl({hue}, 55%, 40%)"/>'
        '<text x="64" y="64" dy=".35em" text-anchor="middle" font-family="sans-serif" '
        f'font-size="52" fill="#fff">{escape(initials)}</text></svg>'
    )
