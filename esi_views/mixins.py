"""Class-based views that need EVE SSO tokens, in the style of Django's auth mixins.

    class SkillsView(TokenRequiredMixin, TemplateView):
        scopes = "esi-skills.read_skills.v1"

        def get_context_data(self, **kwargs):
            return super().get_context_data(skills=fetch(self.token), **kwargs)

Put the mixin left of the view class. ``get_scopes()`` and ``get_new_token()`` are the
hooks for per-request choices; ``handle_no_token()`` is the one place that decides
what happens without a token (by default: off to the EVE SSO). The flow itself lives
in ``esi_views.flow``.

Async views (every handler ``async def``) work the same way: the whole token flow
(session, user, queries, refreshes, and the hooks above) runs in one
``sync_to_async`` hop per request, so the event loop never waits on the database or
the SSO; the handler then finds ``self.token``/``self.tokens`` already evaluated.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils.functional import Promise
from django.views import View

from . import flow, reentry
from .models import Token, TokenQuerySet
from .scopes import normalize_scopes

__all__ = ["SingleUseTokenMixin", "TokenRequiredMixin", "TokensRequiredMixin"]


def _scopes_of(cls: type, scopes: Any) -> frozenset[str]:
    try:
        return normalize_scopes(scopes)
    except TypeError as exc:
        raise ImproperlyConfigured(
            f"{cls.__qualname__}.scopes must be a space-delimited string or a list of scope "
            f"names, not {scopes!r}."
        ) from exc


def _check_configuration(cls: type[BaseTokenMixin]) -> None:
    """Mistakes that would silently unprotect a view fail when the class is defined."""
    if "scopes" in vars(cls):
        _scopes_of(cls, cls.scopes)
    if not isinstance(cls.new_token, bool):
        raise ImproperlyConfigured(
            f"{cls.__qualname__}.new_token must be True or False, not {cls.new_token!r}."
        )
    mro = cls.__mro__
    # The flavours are the classes that define acquire_token: ours and users' own.
    mixins = [m for m in mro[1:] if "acquire_token" in vars(m) and m is not BaseTokenMixin]
    if len(mixins) > 1:
        names = " and ".join(m.__name__ for m in mixins)
        raise ImproperlyConfigured(f"{cls.__qualname__} combines {names}; use one of them.")
    if mixins and View in mro and mro.index(View) < mro.index(mixins[0]):
        raise ImproperlyConfigured(
            f"{cls.__qualname__}: put {mixins[0].__name__} to the left of {View.__name__} "
            f"(e.g. class {cls.__name__}({mixins[0].__name__}, View)), or it never runs."
        )


class BaseTokenMixin:
    """What the three mixins share: configuration, hooks, and the hand-back check."""

    scopes: ClassVar[str | list[str] | tuple[str, ...]] = ""
    new_token: ClassVar[bool] = False
    kind: ClassVar[str]
    # Where users log in first, as in Django's AccessMixin (None: settings.LOGIN_URL).
    login_url: ClassVar[str | Promise | None] = None
    redirect_field_name: ClassVar[str | None] = REDIRECT_FIELD_NAME
    # Read by django.contrib.auth's LoginRequiredMiddleware (Django 5.1+) from the view
    # function as_view() returns: False lets anonymous users through to this mixin.
    login_required: ClassVar[bool] = True
    request: HttpRequest

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_configuration(cls)

    def get_scopes(self) -> frozenset[str]:
        """The scopes this request needs; override for per-request scopes."""
        return _scopes_of(type(self), self.scopes)

    def get_new_token(self) -> bool:
        """Whether this request always needs a freshly obtained token (e.g. to log in)."""
        return self.new_token

    def handle_no_token(self) -> HttpResponse:
        """The response when there is no usable token: send the user to the EVE SSO."""
        return flow.start_sso(
            self.request, self.kind, self.get_scopes(), form_data=reentry.capture(self.request)
        )

    def get_login_url(self) -> str:
        """``login_url`` or ``settings.LOGIN_URL``, as in Django's ``AccessMixin``."""
        login_url = self.login_url or settings.LOGIN_URL
        if not login_url:
            raise ImproperlyConfigured(
                f"{type(self).__qualname__} is missing the login_url attribute. Define "
                f"{type(self).__qualname__}.login_url, settings.LOGIN_URL, or override "
                f"{type(self).__qualname__}.get_login_url()."
            )
        return str(login_url)

    def get_redirect_field_name(self) -> str | None:
        """The query parameter that carries the page to come back to (``next``)."""
        return self.redirect_field_name

    def redirect_to_login(self) -> HttpResponse:
        """Off to the login page, coming back here afterwards (as ``AccessMixin`` does)."""
        path = self.request.build_absolute_uri()
        resolved_login_url = resolve_url(self.get_login_url())
        # A login page on this very site gets a relative "next".
        login_scheme, login_netloc = urlsplit(resolved_login_url)[:2]
        current_scheme, current_netloc = urlsplit(path)[:2]
        if (not login_scheme or login_scheme == current_scheme) and (
            not login_netloc or login_netloc == current_netloc
        ):
            path = self.request.get_full_path()
        return redirect_to_login(path, resolved_login_url, self.get_redirect_field_name())

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        view = super().as_view(**initkwargs)  # type: ignore[misc]
        if not cls.login_required:
            view.login_required = False  # what django's login_not_required sets
        return view

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if request.method == "OPTIONS":
            # CORS preflights and the like go straight to the view (as in
            # django-oauth-toolkit): no token, no flow, no session written.
            return cast(View, super()).dispatch(request, *args, **kwargs)
        if getattr(self, "view_is_async", False):
            return self._dispatch_async(request, *args, **kwargs)
        response = self._token_or_response(request)
        if response is not None:
            return response
        # _check_configuration makes sure a View follows us in the MRO.
        return cast(View, super()).dispatch(request, *args, **kwargs)

    async def _dispatch_async(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        # One hop to a worker thread for the whole flow, not one per query: the flow is
        # a handful of queries (and maybe an SSO call) that belong together.
        response = await sync_to_async(self._token_or_response)(request)
        if response is not None:
            return response
        # View.dispatch hands back the async handler's coroutine (typed as a response).
        parent: Any = super()
        return await parent.dispatch(request, *args, **kwargs)

    def _token_or_response(self, request: HttpRequest) -> HttpResponse | None:
        try:
            return self.acquire_token(request)
        except flow.FlowError as error:
            return flow.error_response(request, error)

    def acquire_token(self, request: HttpRequest) -> HttpResponse | None:
        """Set ``self.token``/``self.tokens`` and return None, or return the response to send."""
        raise NotImplementedError

    def handed_back(self, request: HttpRequest, scopes: Any) -> Token | HttpResponse | None:
        """A token a finished flow brought back; a page re-entering a POST; or None."""
        return reentry.hand_back(request, self.kind, scopes)


class TokenRequiredMixin(BaseTokenMixin):
    """One token, chosen by the user from theirs, or freshly obtained: ``self.token``."""

    kind = flow.Kind.TOKEN
    token: Token
    token_selection_template_name: ClassVar[str] = "esi_views/select_token.html"

    def acquire_token(self, request: HttpRequest) -> HttpResponse | None:
        scopes = self.get_scopes()
        token = self.handed_back(request, scopes)
        if isinstance(token, HttpResponse):
            return token
        if token is not None:
            self.token = token
            return None
        if not self.get_new_token() and request.user.is_authenticated:
            tokens = Token.objects.selectable_by(request.user, scopes)
            if tokens:
                return self.render_token_selection(tokens)
        return self.handle_no_token()

    def render_token_selection(self, tokens: list[Token]) -> HttpResponse:
        """The page listing the user's matching characters; override to restyle."""
        return flow.render_selection(
            self.request,
            self.kind,
            self.get_scopes(),
            tokens,
            self.token_selection_template_name,
            form_data=reentry.capture(self.request),
        )


class TokensRequiredMixin(BaseTokenMixin):
    """All of the user's valid tokens with the scopes, as a queryset: ``self.tokens``."""

    kind = flow.Kind.TOKENS
    tokens: TokenQuerySet

    def acquire_token(self, request: HttpRequest) -> HttpResponse | None:
        scopes = self.get_scopes()
        token = self.handed_back(request, scopes)
        if isinstance(token, HttpResponse):
            return token
        if token is not None:
            self.tokens = Token.objects.filter(pk=token.pk)
            len(self.tokens)  # evaluated here, so async handlers can read it without a query
            return None
        if not request.user.is_authenticated:
            return self.handle_no_token()
        if not self.get_new_token():
            tokens = Token.objects.usable_by(request.user, scopes)
            if tokens:  # evaluates once; the view then reads the cached rows
                self.tokens = tokens
                return None
        return self.handle_no_token()

    def handle_no_token(self) -> HttpResponse:
        """Anonymous users log in first (their tokens are per user); others go to the SSO."""
        if not self.request.user.is_authenticated:
            return self.redirect_to_login()
        return super().handle_no_token()


class SingleUseTokenMixin(BaseTokenMixin):
    """A token for this view and this session only; no login needed: ``self.token``.

    Open to anonymous users even under ``LoginRequiredMiddleware``; set
    ``login_required = True`` on the view to require a login there.
    """

    kind = flow.Kind.SINGLE_USE
    login_required = False
    token: Token

    def acquire_token(self, request: HttpRequest) -> HttpResponse | None:
        token = self.handed_back(request, self.get_scopes())
        if isinstance(token, HttpResponse):
            return token
        if token is None:
            return self.handle_no_token()
        self.token = token
        return None
