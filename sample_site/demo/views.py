"""Every way to ask for EVE SSO tokens, each on a page that shows what it got."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView

from esi_views.accounts import merge_tokens
from esi_views.decorators import token_required
from esi_views.exceptions import EsiError
from esi_views.links import portrait_url
from esi_views.mixins import SingleUseTokenMixin, TokenRequiredMixin, TokensRequiredMixin
from esi_views.models import Token
from esi_views.ratelimit import parse_rate

from . import tasks
from .info import describe
from .scopes import CHARACTER_SCOPES, WALLET_SCOPE


def home(request):
    return render(request, "demo/home.html", {"scopes": CHARACTER_SCOPES, "wallet": WALLET_SCOPE})


# Logging in, out, alts and the characters page are esi_views' own: EveSSOBackend,
# esi_views:login, esi_views:logout and esi_views:characters (see settings and urls).


# -- one token: the mixin and the decorator --------------------------------------------------


class CharacterView(TokenRequiredMixin, TemplateView):
    """``TokenRequiredMixin``: choose one of your characters (or add one)."""

    template_name = "demo/character.html"
    scopes = CHARACTER_SCOPES

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            token=describe(self.token, claims=True), variant="mixin", **kwargs
        )


@token_required(scopes=CHARACTER_SCOPES)
def character_decorated(request, token):
    """The same page with the ``token_required`` decorator."""
    return render(
        request,
        "demo/character.html",
        {"token": describe(token, claims=True), "variant": "decorator"},
    )


# -- all tokens, adding characters -----------------------------------------------------------


class CharactersView(TokensRequiredMixin, TemplateView):
    """``TokensRequiredMixin`` with no scopes: every valid token of the user.

    Listed one row per character (``merge_tokens``): several tokens of one character,
    each granting other scopes, are one row with their scopes merged.
    """

    template_name = "demo/characters.html"
    scopes = ""

    def get_context_data(self, **kwargs):
        rows = sorted(merge_tokens(self.tokens), key=lambda row: row.name.lower())
        return super().get_context_data(
            characters=[
                {
                    "character_id": row.character_id,
                    "name": row.name,
                    "portrait": portrait_url(row.character_id, 128),
                    "scopes": row.sorted_scopes,
                    "expires_at": row.expires_at,
                    "tokens": len(row.tokens),
                }
                for row in rows
            ],
            **kwargs,
        )


# -- single use --------------------------------------------------------------------------------


class SingleUseView(SingleUseTokenMixin, TemplateView):
    """``SingleUseTokenMixin``: no login; the token is for this visit only."""

    template_name = "demo/single_use.html"
    scopes = ["publicData"]

    def get_context_data(self, **kwargs):
        return super().get_context_data(token=describe(self.token, claims=True), **kwargs)


# -- the API, from a page ------------------------------------------------------------------------


def api_page(request):
    return render(request, "demo/api.html", {"wallet": WALLET_SCOPE})


@login_required
@require_POST
@sensitive_variables()  # the bearer token, here and in requests' frames, in error reports
def api_bearer(request):
    """Call /api/me/ from the server with one of your access tokens as the bearer token.

    No cookie goes with the request, so only the bearer token authenticates it; the
    token itself is never shown.
    """
    token = Token.objects.filter(user=request.user).order_by("-updated").first()
    result = None
    if token is None:
        messages.error(request, "You have no token to send.")
    else:
        # Our own server, by address: never a URL built from the request's Host header,
        # which a client could point elsewhere to collect the token.
        own_url = f"http://127.0.0.1:{request.META['SERVER_PORT']}{reverse('demo:api-me')}"
        answer = requests.get(
            own_url,
            headers={
                "Authorization": f"Bearer {token.valid_access_token()}",
                "Accept": "application/json",
            },
            timeout=15,
        )
        try:
            body = json.dumps(answer.json(), indent=2)
        except ValueError:
            body = answer.text[:500]
        result = {"status": answer.status_code, "body": body, "character": token.character_name}
    return render(request, "demo/api.html", {"wallet": WALLET_SCOPE, "bearer": result})


# DEMO ONLY: a page that hands a user their own access token, for Swagger UI's
# "Authorize" (the eveBearer scheme). A real site has no such page; its API clients get
# tokens from the EVE SSO themselves.
@never_cache
@login_required
@sensitive_variables()
def api_token(request):
    """The logged-in user's most recent access token (refreshed if expired), on POST only.

    POST, so the token is not in a URL, the history or a prefetch; never cached.
    """
    context: dict = {"wallet": WALLET_SCOPE}
    if request.method == "POST":
        token = Token.objects.filter(user=request.user).order_by("-updated").first()
        if token is None:
            context["error"] = "You have no token."
        else:
            try:
                context["access_token"] = token.valid_access_token()
            except EsiError as exc:
                context["error"] = f"Could not get a valid access token: {exc}"
            context["token"] = describe(token)
    return render(request, "demo/api_token.html", context)


# -- rate-limited tasks --------------------------------------------------------------------------


def _batch_key(batch: str) -> str:
    return f"demo:tasks:{batch}"


def tasks_page(request):
    rate = parse_rate(settings.DEMO_TASK_RATE)
    return render(
        request,
        "demo/tasks.html",
        {
            "rate": settings.DEMO_TASK_RATE,
            "spacing": rate.interval_seconds,
            "eager": settings.CELERY_TASK_ALWAYS_EAGER,
            "batch": request.GET.get("batch", ""),
        },
    )


@require_POST
def tasks_start(request):
    try:
        count = max(1, min(20, int(request.POST.get("count", "8"))))
    except ValueError:
        count = 8
    batch = uuid.uuid4().hex
    cache.set(
        _batch_key(batch),
        {"count": count, "queued": time.time(), "rate": settings.DEMO_TASK_RATE},
        tasks.RECORD_TTL,
    )
    calls = [(batch, i, f"ESI call {i + 1}") for i in range(count)]
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # No worker: run the tasks in this process, one thread each, all at once. The
        # limiter makes each wait for its slot, exactly as workers would.
        for args in calls:
            threading.Thread(
                target=tasks.fetch_character_sheet.delay, args=args, daemon=True
            ).start()
    else:
        for args in calls:
            tasks.fetch_character_sheet.delay(*args)
    return HttpResponseRedirect(f"{reverse('demo:tasks')}?batch={batch}")


def tasks_status(request, batch):
    meta = cache.get(_batch_key(batch))
    if meta is None:
        raise Http404("unknown batch")
    records = cache.get_many([tasks.record_key(batch, i) for i in range(meta["count"])])
    queued = meta["queued"]
    rows = []
    for i in range(meta["count"]):
        record = records.get(tasks.record_key(batch, i)) or {}
        started, finished = record.get("started"), record.get("finished")
        rows.append(
            {
                "index": i + 1,
                "started": round(started - queued, 3) if started else None,
                "finished": round(finished - queued, 3) if finished else None,
            }
        )
    starts = sorted(r["started"] for r in rows if r["started"] is not None)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    return JsonResponse(
        {
            "rate": meta["rate"],
            "spacing": parse_rate(meta["rate"]).interval_seconds,
            "count": meta["count"],
            "started": len(starts),
            "finished": sum(r["finished"] is not None for r in rows),
            "smallest_gap": min(gaps) if gaps else None,
            "tasks": rows,
        }
    )
