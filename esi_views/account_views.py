"""Logging out, and the characters page: one row per character, add, grant, main, remove.

Both are plain class-based views: subclass them (or override their templates,
``esi_views/characters.html``) like Django's own auth views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.generic import TemplateView

from . import accounts, flow, links
from .conf import esi_settings
from .models import Scope

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

__all__ = ["CharactersView", "LogoutView"]


def default_redirect(setting: str) -> str:
    """The LOGIN/LOGOUT_REDIRECT_URL the site set, else ``/`` (Django's default 404s)."""
    # LazySettings forwards is_overridden() to Settings; the stubs lack it there.
    if getattr(settings, setting, None) and settings.is_overridden(setting):  # type: ignore[misc]
        return resolve_url(getattr(settings, setting))
    return "/"


def _note(request: HttpRequest, level: int, text: StrOrPromise) -> None:
    messages.add_message(request, level, text, fail_silently=True)


@method_decorator(never_cache, name="dispatch")
class LogoutView(View):
    """POST only (a GET must not log anyone out); then to ``next`` if on this site."""

    http_method_names = ["post", "options"]

    def post(self, request: HttpRequest) -> HttpResponse:
        auth.logout(request)
        next_url = request.POST.get("next") or request.GET.get("next")
        target = links.safe_return_url(request, next_url) if next_url else None
        return HttpResponseRedirect(target or default_redirect("LOGOUT_REDIRECT_URL"))


def _character_id(raw: str) -> int | None:
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:  # a bigint
        return int(raw)
    return None


@method_decorator(never_cache, name="dispatch")
class CharactersView(LoginRequiredMixin, TemplateView):
    """The logged-in user's characters; POST ``action=main|remove`` with ``character``."""

    template_name = "esi_views/characters.html"

    def get_grantable_scopes(self) -> list[str]:
        """Scopes offered under "grant more scopes": ``ESI_GRANTABLE_SCOPES``, else all known."""
        configured = esi_settings.GRANTABLE_SCOPES
        if configured is not None:
            return sorted(configured)
        return list(Scope.objects.order_by("name").values_list("name", flat=True))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        here = self.request.get_full_path()
        grantable = self.get_grantable_scopes()
        rows = []
        for row in accounts.character_rows(self.request.user):
            rows.append(
                {
                    "character_id": row.character_id,
                    "name": row.name,
                    "portrait": links.portrait_url(row.character_id),
                    "scopes": row.sorted_scopes,
                    "usable": row.usable,
                    "is_main": row.is_main,
                    "more_scopes": [s for s in grantable if s not in row.scopes],
                }
            )
        return super().get_context_data(
            characters=rows,
            add_url=links.login_url("", here),
            login_url=reverse("esi_views:login"),
            next=here,
            **kwargs,
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        character_id = _character_id(request.POST.get("character", ""))
        action = request.POST.get("action")
        if character_id is None or action not in {"main", "remove"}:
            return flow.error_response(
                request,
                flow.FlowError(
                    400, _("Invalid request"), _("Choose one of your characters and an action.")
                ),
            )
        if action == "main":
            done = accounts.set_main(request.user, character_id)
        else:
            done = accounts.unlink_character(request.user, character_id)
        if not done:
            return flow.error_response(
                request,
                flow.FlowError(
                    404, _("Not your character"), _("That character is not linked to your account.")
                ),
            )
        _note(
            request,
            messages.SUCCESS,
            _("Main character changed.") if action == "main" else _("Character removed."),
        )
        return HttpResponseRedirect(request.path)
