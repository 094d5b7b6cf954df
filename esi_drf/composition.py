"""``&``, ``|`` and ``~`` for esi_drf permissions that keep the explanation of a refusal.

DRF's own ``AND``/``OR``/``NOT`` carry no ``message``, so ``IsAuthenticated & HasESIToken``
would answer with DRF's generic "You do not have permission" instead of the JSON that
tells the client which scopes to get and where. Composing through our metaclass builds
a real permission class (``AllOf``, ``AnyOf``, ``NoneOf``) whose ``message`` and ``code``
are those of the operand that refused.

Python asks the right operand first when its type is a subclass of the left one's, so
``IsAuthenticated & HasESIToken`` and ``IsAdminUser | (A & HasESIToken)`` reach our
metaclass even though the DRF class is on the left. The one form that cannot is a
composition of DRF-only classes on the left (``(A & B) | HasESIToken``): DRF builds that
one, which refuses just as well, with DRF's generic message. Write
``HasESIToken | (A & B)`` to keep ours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from rest_framework.permissions import BasePermission, BasePermissionMetaclass

__all__ = ["AllOf", "AnyOf", "ESIPermissionMetaclass", "NoneOf"]

Operand = Callable[..., Any]  # a permission class, or DRF's OperandHolder


def _name(operand: Operand) -> str:
    return getattr(operand, "__name__", type(operand).__name__)


class ESIPermissionMetaclass(BasePermissionMetaclass):
    """The metaclass of esi_drf permissions: composition yields explaining classes."""

    def __and__(cls, other: Operand) -> type[AllOf]:  # type: ignore[override]  # a permission class, not DRF's OperandHolder
        return _compose(AllOf, "&", cls, other)

    def __rand__(cls, other: Operand) -> type[AllOf]:  # type: ignore[override]  # a permission class, not DRF's OperandHolder
        return _compose(AllOf, "&", other, cls)

    def __or__(cls, other: Operand) -> type[AnyOf]:  # type: ignore[override]  # a permission class, not DRF's OperandHolder
        return _compose(AnyOf, "|", cls, other)

    def __ror__(cls, other: Operand) -> type[AnyOf]:  # type: ignore[override]  # a permission class, not DRF's OperandHolder
        return _compose(AnyOf, "|", other, cls)

    def __invert__(cls) -> type[NoneOf]:  # type: ignore[override]  # a class, as above
        name = f"~{_name(cls)}"
        negation: type = ESIPermissionMetaclass(
            name, (NoneOf,), {"operands": (cls,), "__qualname__": name}
        )
        return negation


def _compose(base: type[_Composed], sign: str, left: Operand, right: Operand) -> type:
    name = f"({_name(left)} {sign} {_name(right)})"
    return ESIPermissionMetaclass(name, (base,), {"operands": (left, right), "__qualname__": name})


class _Composed(BasePermission, metaclass=ESIPermissionMetaclass):
    operands: ClassVar[tuple[Operand, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.parts = [operand(*args, **kwargs) for operand in self.operands]
        self.refused: list[Any] = []  # the parts that said no, for message and code

    def _explainer(self) -> Any:
        # An esi_drf refusal (a dict with login_url) is the actionable one: prefer it.
        explained = [p for p in self.refused if getattr(p, "message", None) is not None]
        structured = [p for p in explained if isinstance(p.message, dict)]
        return (structured or explained or [None])[0]

    @property
    def message(self) -> Any:
        return getattr(self._explainer(), "message", None)

    @property
    def code(self) -> Any:
        return getattr(self._explainer(), "code", None)


class AllOf(_Composed):
    """Granted when every part grants; explains with the first part that refused."""

    def has_permission(self, request: Any, view: Any) -> bool:
        for part in self.parts:
            if not part.has_permission(request, view):
                self.refused = [part]
                return False
        return True

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        for part in self.parts:
            if not part.has_object_permission(request, view, obj):
                self.refused = [part]
                return False
        return True


class AnyOf(_Composed):
    """Granted when one part grants (same semantics as DRF's ``OR``)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        self.refused = []
        for part in self.parts:
            if part.has_permission(request, view):
                return True
            self.refused.append(part)
        return False

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        self.refused = []
        for part in self.parts:
            # As DRF's OR: a part counts only if it grants the request and the object.
            if part.has_permission(request, view) and part.has_object_permission(
                request, view, obj
            ):
                return True
            self.refused.append(part)
        return False


class NoneOf(_Composed):
    """``~P``: granted when P refuses. Its refusal has nothing to explain (P granted)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return not self.parts[0].has_permission(request, view)

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        return not self.parts[0].has_object_permission(request, view, obj)

    def _explainer(self) -> Any:
        return None
