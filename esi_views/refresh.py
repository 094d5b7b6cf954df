"""Refreshing tokens: one SSO call per token however many processes ask, and nothing
good lost.

``refresh_tokens`` takes a row lock on every token (``SELECT ... FOR UPDATE``; on
backends without it, such as SQLite, an in-process lock stands in) and re-reads them,
so a token another process refreshed meanwhile is not sent to the SSO again. The SSO
calls run in parallel (``ESI_REFRESH_CONCURRENCY``) while the locks are held; only
the calls run in threads.

Inside a caller's transaction (``ATOMIC_REQUESTS``), on databases that can skip locked
rows, the refresh commits on a connection of its own, so a view failing afterwards
cannot roll back a refresh token the SSO has rotated. Rows that connection cannot see
or lock are refreshed in the caller's transaction instead.

With ``skip_locked=True`` (used by cleanup) tokens that another process or thread
holds the lock on are not waited for: they are left alone and listed in
``RefreshReport.skipped_locked``.

Outcomes: refreshed; dead (``invalid_grant``, ``invalid_token``, owner changed, no
refresh token) -> deleted; transient -> kept (with the new refresh token, if the
unusable answer carried one); anything unexpected -> kept, logged; a configuration
error is raised after the rest has been saved.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import connections, router, transaction
from django.db.models import Field
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import sso
from .conf import esi_settings
from .exceptions import (
    NoRefreshTokenError,
    SSOConfigurationError,
    SSOError,
    SSOTransientError,
    TokenDeadError,
    TokenGoneError,
)

if TYPE_CHECKING:
    from .models import Token

logger = logging.getLogger(__name__)


def _token_model() -> type[Token]:
    # From the app registry, not an import: models.py -> querysets.py -> this module, so
    # importing models here would close a cycle.
    return apps.get_model("esi_views", "Token")


__all__ = ["NoRefreshTokenError", "RefreshReport", "TokenGoneError", "refresh_tokens"]

SAVED_FIELDS = ("access_token", "refresh_token", "expires_at", "character_name", "updated")


@dataclass
class RefreshReport:
    refreshed: list[Token] = field(default_factory=list)
    already_fresh: list[Token] = field(default_factory=list)
    dead: list[tuple[Token, TokenDeadError]] = field(default_factory=list)
    transient: list[tuple[Token, SSOTransientError]] = field(default_factory=list)
    other: list[tuple[Token, SSOError]] = field(default_factory=list)
    # skip_locked=True only: ids locked by someone else (or deleted meanwhile), untouched.
    skipped_locked: list[int] = field(default_factory=list)

    def merge(self, other: RefreshReport) -> None:
        for name in ("refreshed", "already_fresh", "dead", "transient", "other", "skipped_locked"):
            getattr(self, name).extend(getattr(other, name))

    @property
    def usable(self) -> list[Token]:
        return self.refreshed + self.already_fresh

    def raise_for(self, token: Token) -> None:
        """Update ``token`` in place from the outcome, or raise that token's error."""
        for kept in self.usable:
            if kept.pk == token.pk:
                for name in SAVED_FIELDS:
                    setattr(token, name, getattr(kept, name))
                return
        for failed, error in (*self.dead, *self.transient, *self.other):
            if failed.pk == token.pk:
                raise error
        if token.pk in self.skipped_locked:
            raise SSOTransientError("The token is being refreshed by someone else.")
        raise TokenGoneError("The token no longer exists.")


# Striped in-process locks: without SELECT FOR UPDATE (SQLite) they are what keeps
# threads of one process from refreshing a token twice.
_STRIPES = [threading.Lock() for _ in range(256)]


@contextlib.contextmanager
def _process_locks(ids: Iterable[int], skip_locked: bool = False) -> Iterator[set[int]]:
    """Hold the stripes of ``ids``; yields the ids whose stripe is held.

    Only where the database has no row locks: next to SELECT FOR UPDATE they would be
    a second lock taken in another order, and a deadlock no database can detect.
    Blocking: every stripe, in a fixed order (no deadlock). ``skip_locked``: only the
    stripes free right now (a non-blocking acquire cannot deadlock either).
    """
    ids = list(ids)
    if _has_row_locks():
        yield set(ids)
        return
    stripes = sorted({pk % len(_STRIPES) for pk in ids})  # fixed order: no deadlock
    with contextlib.ExitStack() as stack:
        held = set()
        for index in stripes:
            if skip_locked:
                if _STRIPES[index].acquire(blocking=False):
                    stack.callback(_STRIPES[index].release)
                    held.add(index)
            else:
                stack.enter_context(_STRIPES[index])
                held.add(index)
        yield {pk for pk in ids if pk % len(_STRIPES) in held}


_executors: dict[tuple[str, int], ThreadPoolExecutor] = {}
_executor_lock = threading.Lock()


def _executor(name: str, size: int) -> ThreadPoolExecutor:
    # Long-lived, so each worker thread keeps its keep-alive SSO session.
    with _executor_lock:
        if (name, size) not in _executors:
            _executors[name, size] = ThreadPoolExecutor(size, thread_name_prefix=name)
        return _executors[name, size]


def _pool() -> ThreadPoolExecutor:
    return _executor("esi-refresh", max(1, int(esi_settings.REFRESH_CONCURRENCY)))


class UnexpectedRefreshError(SSOError):
    """Refreshing failed in an unforeseen way (a bug, a cache that is down); token kept."""


# sensitive_variables(): error reports hide the locals of these frames and of every
# frame below them (authlib's included), which hold refresh and access tokens.
@sensitive_variables()
def _call_sso(token: Token) -> sso.TokenResponse | SSOError:
    try:
        # Inside the try: reading the refresh token decrypts it, and that can fail too.
        if not token.refresh_token:
            return NoRefreshTokenError("The token expired and has no refresh token.")
        return sso.refresh(token.refresh_token, owner_hash=token.character_owner_hash)
    except SSOError as exc:
        return exc
    except Exception as exc:
        # One token's surprise must not roll back the batch's saved refreshes.
        logger.exception("Unexpected error while refreshing token %s", token.pk)
        error = UnexpectedRefreshError(f"Unexpected error while refreshing: {exc!r}")
        error.__cause__ = exc
        return error


def _timed_call(token: Token) -> sso.TokenResponse | SSOError:
    """``_call_sso``, announced with the ``sso_call`` signal (metrics, logging)."""
    from .esi.signals import sso_call

    started = time.monotonic()
    result = _call_sso(token)
    outcome = type(result).__name__ if isinstance(result, Exception) else "ok"
    sso_call.send(
        _timed_call,
        grant_type="refresh_token",
        outcome=outcome,
        duration=time.monotonic() - started,
    )
    return result


def _call_all(tokens: list[Token]) -> list[sso.TokenResponse | SSOError]:
    if len(tokens) <= 1:
        return [_timed_call(token) for token in tokens]
    return list(_pool().map(_timed_call, tokens))


def refresh_tokens(
    tokens: Iterable[Token], *, force: bool = False, skip_locked: bool = False
) -> RefreshReport:
    """Refresh the tokens that are (still) expired, or all of them with ``force``.

    ``skip_locked``: do not wait for tokens someone else is refreshing; they are
    reported in ``skipped_locked`` and left untouched (no SSO call, no deletion).
    """
    ids = sorted({token.pk for token in tokens})
    if not ids:
        return RefreshReport()
    if not _inside_a_transaction():
        return _refresh(ids, force=force, skip_locked=skip_locked)
    # The caller's transaction may still roll back (ATOMIC_REQUESTS and a view that
    # fails later): a refresh token the SSO rotated must survive that, so the refresh
    # commits on a connection of its own. Rows that connection cannot see (created in
    # the caller's transaction) or cannot lock (the caller holds them) are refreshed
    # in the caller's transaction, as before.
    report = _detached_pool().submit(_refresh_detached, ids, force).result()
    # Dead tokens are deleted here, not there: the delete cascades to rows the caller's
    # transaction may hold locks on, which that connection would wait for forever.
    _delete_dead(report)
    pending, report.skipped_locked = report.skipped_locked, []
    if pending:
        report.merge(_refresh(pending, force=force, skip_locked=skip_locked))
    return report


@sensitive_variables()
def _refresh(
    ids: list[int], *, force: bool, skip_locked: bool, delete_dead: bool = True
) -> RefreshReport:
    token_model = _token_model()
    report = RefreshReport()
    config_error: SSOConfigurationError | None = None
    database = router.db_for_write(token_model)
    with _process_locks(ids, skip_locked) as held, transaction.atomic(using=database):
        rows = token_model.objects.select_for_update(skip_locked=skip_locked and _can_skip_locked())
        locked = list(rows.filter(pk__in=sorted(held)).order_by("pk"))
        if skip_locked:
            got = {token.pk for token in locked}
            report.skipped_locked = [pk for pk in ids if pk not in got]
        due = [token for token in locked if force or token.expired]
        report.already_fresh = [token for token in locked if not (force or token.expired)]
        now = timezone.now()
        rotated_only: list[Token] = []
        for token, outcome in zip(due, _call_all(due), strict=True):
            if isinstance(outcome, sso.TokenResponse):
                token.access_token = outcome.access_token
                token.refresh_token = outcome.refresh_token or token.refresh_token
                token.expires_at = outcome.expires_at
                token.character_name = outcome.claims.character_name[:100]
                token.updated = now
                report.refreshed.append(token)
            elif isinstance(outcome, TokenDeadError):
                report.dead.append((token, outcome))
            elif isinstance(outcome, SSOTransientError):
                report.transient.append((token, outcome))
                # An answer we could not use may still have rotated the refresh token.
                new = getattr(outcome, "refresh_token", None)
                if new and new != token.refresh_token:
                    token.refresh_token, token.updated = new, now
                    rotated_only.append(token)
            else:
                report.other.append((token, outcome))
                if isinstance(outcome, SSOConfigurationError):
                    config_error = outcome
        _save(report.refreshed, SAVED_FIELDS)
        _save(rotated_only, ("refresh_token", "updated"))
        if delete_dead:
            _delete_dead(report)
    _log(report)
    if config_error is not None:
        raise config_error
    return report


def _concrete_field(model: type[Token], name: str) -> Field[Any, Any]:
    model_field = model._meta.get_field(name)
    if not isinstance(model_field, Field):  # a relation's reverse side has no column
        raise TypeError(f"{name} is not a concrete field of {model.__name__}")
    return model_field


def _column(model_field: Field[Any, Any]) -> str:
    if model_field.column is None:  # only non-concrete fields have no column
        raise TypeError(f"{model_field.name} has no database column")
    return model_field.column


@sensitive_variables()
def _save(tokens: list[Token], fields: tuple[str, ...]) -> None:
    """One UPDATE run for every row (executemany).

    Django's bulk_update builds a CASE expression per row and field, which costs more
    CPU than the refresh itself; this is the same write, prepared by the fields.
    """
    token_model = _token_model()
    if not tokens:
        return
    model_fields = [_concrete_field(token_model, name) for name in fields]
    connection = connections[router.db_for_write(token_model)]
    quote = connection.ops.quote_name
    sql = (
        f"UPDATE {quote(token_model._meta.db_table)} SET "  # noqa: S608 - quoted model identifiers
        + ", ".join(f"{quote(_column(field))} = %s" for field in model_fields)
        + f" WHERE {quote(_column(token_model._meta.pk))} = %s"
    )
    rows = [
        [field.get_db_prep_save(field.pre_save(token, False), connection) for field in model_fields]
        + [token.pk]
        for token in tokens
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _delete_dead(report: RefreshReport) -> None:
    token_model = _token_model()
    if report.dead:
        token_model.objects.filter(pk__in=[token.pk for token, _ in report.dead]).delete()


def _refresh_detached(ids: list[int], force: bool) -> RefreshReport:
    try:
        return _refresh(ids, force=force, skip_locked=True, delete_dead=False)
    finally:
        connections.close_all()  # this thread's connections only


def _detached_pool() -> ThreadPoolExecutor:
    return _executor("esi-refresh-commit", 4)


def _inside_a_transaction() -> bool:
    connection = connections[router.db_for_write(_token_model())]
    # Only where rows can be skipped when locked: otherwise the separate connection
    # could wait forever for a row lock the caller's own transaction holds.
    return connection.in_atomic_block and _can_skip_locked()


def _has_row_locks() -> bool:
    return bool(connections[router.db_for_write(_token_model())].features.has_select_for_update)


def _can_skip_locked() -> bool:
    # Backends without SELECT ... FOR UPDATE (SQLite) ignore the lock entirely; the
    # in-process stripes are what is skipped there.
    features = connections[router.db_for_write(_token_model())].features
    return bool(features.has_select_for_update and features.has_select_for_update_skip_locked)


def _log(report: RefreshReport) -> None:
    for token, error in report.dead:
        logger.info("Deleted dead token %s: %s", token, error)
    for token, problem in (*report.transient, *report.other):
        logger.warning("Could not refresh token %s (kept): %s", token, problem)
