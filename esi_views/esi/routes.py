"""Which ESI routes need which scope, and how a concrete path maps to its route template.

The table covers the authenticated routes most sites call (taken from the ``security``
section of ESI's OpenAPI document). A route missing from it is not checked before the
call: ESI itself answers 403 if the token lacks the scope (which costs 5 rate-limit
tokens and one error-limit point), so add what you call to ``ROUTE_SCOPES`` via
:func:`register_route` when you rely on a route not listed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["ROUTE_SCOPES", "Route", "match_route", "register_route"]

_C = "/characters/{character_id}"
_K = "/corporations/{corporation_id}"

# (method, template) -> the scope the route needs; None: a public route.
ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", f"{_C}/agents_research"): "esi-characters.read_agents_research.v1",
    ("GET", f"{_C}/assets"): "esi-assets.read_assets.v1",
    ("POST", f"{_C}/assets/locations"): "esi-assets.read_assets.v1",
    ("POST", f"{_C}/assets/names"): "esi-assets.read_assets.v1",
    ("GET", f"{_C}/attributes"): "esi-skills.read_skills.v1",
    ("GET", f"{_C}/blueprints"): "esi-characters.read_blueprints.v1",
    ("GET", f"{_C}/calendar"): "esi-calendar.read_calendar_events.v1",
    ("GET", f"{_C}/clones"): "esi-clones.read_clones.v1",
    ("GET", f"{_C}/contacts"): "esi-characters.read_contacts.v1",
    ("GET", f"{_C}/contacts/labels"): "esi-characters.read_contacts.v1",
    ("GET", f"{_C}/contracts"): "esi-contracts.read_character_contracts.v1",
    ("GET", f"{_C}/fatigue"): "esi-characters.read_fatigue.v1",
    ("GET", f"{_C}/fittings"): "esi-fittings.read_fittings.v1",
    ("GET", f"{_C}/fleet"): "esi-fleets.read_fleet.v1",
    ("GET", f"{_C}/fw/stats"): "esi-characters.read_fw_stats.v1",
    ("GET", f"{_C}/implants"): "esi-clones.read_implants.v1",
    ("GET", f"{_C}/industry/jobs"): "esi-industry.read_character_jobs.v1",
    ("GET", f"{_C}/killmails/recent"): "esi-killmails.read_killmails.v1",
    ("GET", f"{_C}/location"): "esi-location.read_location.v1",
    ("GET", f"{_C}/loyalty/points"): "esi-characters.read_loyalty.v1",
    ("GET", f"{_C}/mail"): "esi-mail.read_mail.v1",
    ("POST", f"{_C}/mail"): "esi-mail.send_mail.v1",
    ("GET", f"{_C}/mail/labels"): "esi-mail.read_mail.v1",
    ("GET", f"{_C}/mail/lists"): "esi-mail.read_mail.v1",
    ("GET", f"{_C}/mail/{{mail_id}}"): "esi-mail.read_mail.v1",
    ("GET", f"{_C}/medals"): "esi-characters.read_medals.v1",
    ("GET", f"{_C}/mining"): "esi-industry.read_character_mining.v1",
    ("GET", f"{_C}/notifications"): "esi-characters.read_notifications.v1",
    ("GET", f"{_C}/online"): "esi-location.read_online.v1",
    ("GET", f"{_C}/orders"): "esi-markets.read_character_orders.v1",
    ("GET", f"{_C}/orders/history"): "esi-markets.read_character_orders.v1",
    ("GET", f"{_C}/planets"): "esi-planets.manage_planets.v1",
    ("GET", f"{_C}/roles"): "esi-characters.read_corporation_roles.v1",
    ("GET", f"{_C}/search"): "esi-search.search_structures.v1",
    ("GET", f"{_C}/ship"): "esi-location.read_ship_type.v1",
    ("GET", f"{_C}/skillqueue"): "esi-skills.read_skillqueue.v1",
    ("GET", f"{_C}/skills"): "esi-skills.read_skills.v1",
    ("GET", f"{_C}/standings"): "esi-characters.read_standings.v1",
    ("GET", f"{_C}/titles"): "esi-characters.read_titles.v1",
    ("GET", f"{_C}/wallet"): "esi-wallet.read_character_wallet.v1",
    ("GET", f"{_C}/wallet/journal"): "esi-wallet.read_character_wallet.v1",
    ("GET", f"{_C}/wallet/transactions"): "esi-wallet.read_character_wallet.v1",
    ("GET", f"{_K}/assets"): "esi-assets.read_corporation_assets.v1",
    ("GET", f"{_K}/members"): "esi-corporations.read_corporation_membership.v1",
    ("GET", f"{_K}/membertracking"): "esi-corporations.track_members.v1",
    ("GET", f"{_K}/roles"): "esi-corporations.read_corporation_membership.v1",
    ("GET", f"{_K}/structures"): "esi-corporations.read_structures.v1",
    ("GET", f"{_K}/wallets"): "esi-wallet.read_corporation_wallets.v1",
    ("GET", "/fleets/{fleet_id}"): "esi-fleets.read_fleet.v1",
    ("GET", "/markets/structures/{structure_id}"): "esi-markets.structure_markets.v1",
    ("GET", "/universe/structures/{structure_id}"): "esi-universe.read_structures.v1",
    ("POST", "/ui/autopilot/waypoint"): "esi-ui.write_waypoint.v1",
    ("POST", "/ui/openwindow/marketdetails"): "esi-ui.open_window.v1",
    # Public routes (no scope): listed so their templates are known.
    ("GET", "/status"): None,
    ("GET", "/characters/{character_id}"): None,
    ("GET", "/corporations/{corporation_id}"): None,
    ("GET", "/alliances/{alliance_id}"): None,
    ("GET", "/markets/prices"): None,
    ("GET", "/markets/{region_id}/orders"): None,
    ("GET", "/universe/types/{type_id}"): None,
    ("POST", "/universe/names"): None,
    ("POST", "/universe/ids"): None,
}

# "/latest", "/v4", "/legacy"... in front of a path select an old ESI version.
_VERSION_PREFIX = re.compile(r"^/(?:latest|legacy|dev|v\d+)(?=/)")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class Route:
    """A call's route: its template (names the route for groups and signals) and scope."""

    method: str
    template: str
    scope: str | None
    known: bool
    params: dict[str, str]


def normalise_path(path: str) -> str:
    """``/latest/characters/1/skills/`` -> ``/characters/1/skills``."""
    path = "/" + path.strip("/")
    return _VERSION_PREFIX.sub("", path) or "/"


def register_route(method: str, template: str, scope: str | None) -> None:
    """Teach the scope check (and route naming) a route this table lacks."""
    ROUTE_SCOPES[(method.upper(), normalise_path(template))] = scope
    _compiled.cache_clear()


@lru_cache(maxsize=1)
def _compiled() -> list[tuple[re.Pattern[str], str, str, str | None]]:
    patterns = []
    for (method, template), scope in ROUTE_SCOPES.items():
        regex = _PLACEHOLDER.sub(
            lambda m: f"(?P<{m[1]}>[^/]+)",
            re.escape(template).replace(r"\{", "{").replace(r"\}", "}"),
        )
        patterns.append((re.compile(f"^{regex}$"), method, template, scope))
    # Literal segments win over placeholders: /characters/{id}/mail/labels, not /mail/{mail_id}.
    patterns.sort(key=lambda p: p[2].count("{"))
    return patterns


def _generic_template(path: str) -> str:
    # Unknown route: numbers become placeholders so /x/1 and /x/2 share a name.
    return "/".join("{id}" if part.isdigit() else part for part in path.split("/"))


def match_route(method: str, path: str) -> Route:
    """The route a concrete path belongs to (``known=False`` when not in the table)."""
    method = method.upper()
    path = normalise_path(path)
    for pattern, route_method, template, scope in _compiled():
        if route_method != method:
            continue
        found = pattern.match(path)
        if found:
            return Route(method, template, scope, True, found.groupdict())
    return Route(method, _generic_template(path), None, False, {})


def fill_template(path: str, values: dict[str, object]) -> str:
    """``/characters/{character_id}/skills`` with ``character_id=1`` -> the concrete path.

    Values must be single path segments (digits, letters, ``_.-``): a value holding a
    slash or ``..`` could otherwise point the bearer token at another route.
    """

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if name not in values:
            raise ValueError(f"No value given for {{{name}}} in {path!r}.")
        value = str(values[name])
        if not _SEGMENT.match(value) or value in (".", ".."):
            raise ValueError(f"Invalid value for {{{name}}}: {value!r}.")
        return value

    return _PLACEHOLDER.sub(replace, path)
