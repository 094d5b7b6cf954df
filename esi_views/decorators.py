"""Decorators for function views and Celery tasks.

The view decorators are thin: each builds a class-based view from the matching mixin
(as DRF's ``@api_view`` builds an APIView), so a decorated function and a mixin view
behave the same in every case. The token arrives as the second argument:

    @token_required(scopes="esi-characters.read_medals.v1")
    def medals(request, token): ...

    @tokens_required(scopes=["esi-location.read_ship_type.v1"])
    def fleet(request, tokens): ...

``async def`` views are accepted as they are: the view class built around them is
then async (see ``esi_views.mixins`` for how the token is acquired without blocking
the event loop).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views import View

from .mixins import BaseTokenMixin, SingleUseTokenMixin, TokenRequiredMixin, TokensRequiredMixin
from .ratelimit import rate_limited_task
from .retry import rate_limit_retry_task
from .scopes import ScopesArg

__all__ = [
    "rate_limit_retry_task",
    "rate_limited_task",
    "single_use_token",
    "token_required",
    "tokens_required",
]

# A view function: returns an HttpResponse, or for ``async def`` views a coroutine of one.
ViewFunction = Callable[..., Any]


def _view_from_mixin(
    mixin: type[BaseTokenMixin], attribute: str, scopes: ScopesArg, new: bool
) -> Callable[[ViewFunction], ViewFunction]:
    def decorator(view_func: ViewFunction) -> ViewFunction:
        def handle(self: View, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return view_func(request, getattr(self, attribute), *args, **kwargs)

        async def handle_async(
            self: View, request: HttpRequest, *args: Any, **kwargs: Any
        ) -> HttpResponse:
            return await view_func(request, getattr(self, attribute), *args, **kwargs)

        # Every handler async for an async function, so Django marks the view async.
        handler = handle_async if iscoroutinefunction(view_func) else handle

        # A function view answers every method itself; the class just passes them on.
        # Except OPTIONS (a CORS preflight): it comes without a token, so the function,
        # which expects one, is not called; Django's View.options() answers it.
        methods = {name: handler for name in View.http_method_names if name != "options"}
        # A View subclass, built at runtime because its base mixin is a parameter.
        view_class = cast(
            "type[View]",
            type(
                view_func.__name__,
                (mixin, View),
                {
                    "scopes": scopes,
                    "new_token": new,
                    "__module__": view_func.__module__,
                    "__qualname__": f"{view_func.__qualname__}.<{mixin.__name__}>",
                    **methods,
                },
            ),
        )
        view = view_class.as_view()
        functools.update_wrapper(view, view_func)
        return view

    return decorator


def token_required(
    scopes: ScopesArg = "", new: bool = False
) -> Callable[[ViewFunction], ViewFunction]:
    """One token, chosen by the user or freshly obtained: ``view(request, token, ...)``."""
    return _view_from_mixin(TokenRequiredMixin, "token", scopes, new)


def tokens_required(
    scopes: ScopesArg = "", new: bool = False
) -> Callable[[ViewFunction], ViewFunction]:
    """All the user's valid tokens with the scopes: ``view(request, tokens, ...)``."""
    return _view_from_mixin(TokensRequiredMixin, "tokens", scopes, new)


def single_use_token(
    scopes: ScopesArg = "", new: bool = False
) -> Callable[[ViewFunction], ViewFunction]:
    """A token for this view and session only, no login needed: ``view(request, token, ...)``.

    ``new`` is accepted for symmetry; a single-use token is always new.
    """
    return _view_from_mixin(SingleUseTokenMixin, "token", scopes, new)
