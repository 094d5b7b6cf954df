"""Cleaning the database: finished SSO flows, and expired tokens refreshed or removed.

Plain functions, usable without Celery: ``esi_views.tasks`` wraps them as Celery tasks
and ``manage.py esi_cleanup`` calls them. See the package documentation, "Cleanup tasks".

A token run, in order:

1. Tokens without a user (single-use, anonymous login) older than
   ``ESI_SINGLE_USE_TOKEN_MAX_AGE`` are deleted: no view can be handed them any more.
   Younger ones may belong to a flow in progress and are never touched. This step
   looks at every token whatever the subset (and ``cleanup_callbackredirect`` runs it
   too), so a user-less token is gone at the first run of any cleanup task after it
   reached the age, not when its subset bucket comes round.
2. Expired tokens (``expires_at <= now + ESI_TOKEN_REFRESH_MARGIN``) that have a user
   are read by keyset pagination on ``(expires_at, pk)``, oldest expiry first, a
   batch (``ESI_CLEANUP_BATCH_SIZE``) at a time, and handed to ``refresh_tokens(...,
   skip_locked=True)``: per-token lock, re-read, parallel SSO calls. A token a request
   refreshed meanwhile is found fresh and left alone; one a request is refreshing
   right now is skipped. Dead ones (``invalid_grant``, ``invalid_token``, owner
   changed, no refresh token) are deleted; transient failures keep the token.
   Fresh tokens are excluded in SQL and never loaded; memory is one batch.
3. The SSO is probed with a small first batch; after ``ESI_CLEANUP_MAX_TRANSIENT_FAILURES``
   transient failures with no answer in between, or a ``Retry-After`` longer than
   ``ESI_CLEANUP_MAX_WAIT``, the run stops calling the SSO and reports the rest as skipped.

The subset run (``fraction`` > 1) refreshes only tokens with ``pk % fraction == bucket``;
the bucket comes from a counter in the Django cache, so ``fraction`` runs visit every
token exactly once whatever tokens are added or deleted in between.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import caches
from django.db.models import Q, QuerySet
from django.db.models.functions import Mod
from django.utils import timezone

from .conf import esi_settings
from .exceptions import (
    InvalidGrantError,
    InvalidTokenError,
    OwnerChangedError,
    SSOConfigurationError,
)
from .models import CallbackRedirect, Token
from .refresh import NoRefreshTokenError, RefreshReport, refresh_tokens

__all__ = [
    "CleanupReport",
    "cleanup_callbackredirect",
    "cleanup_token",
    "cleanup_token_subset",
    "cleanup_tokens",
    "delete_stale_single_use",
    "next_subset_bucket",
    "stale_single_use",
]

logger = logging.getLogger("esi_views.cleanup")

_REASONS: tuple[tuple[type, str], ...] = (
    (NoRefreshTokenError, "no_refresh_token"),
    (InvalidGrantError, "invalid_grant"),
    (InvalidTokenError, "invalid_token"),
    (OwnerChangedError, "owner_changed"),
)
ORPHANED = "single_use_old"


@dataclass
class CleanupReport:
    """What one token run did. In a dry run, counts say what would have been done."""

    fraction: int = 1
    bucket: int | None = None
    dry_run: bool = False
    examined: int = 0  # tokens in this run's scope (all of them, or the subset bucket)
    candidates: int = 0  # expired tokens with a user + user-less tokens past the age
    processed: int = 0  # of the candidates, handled so far (progress)
    refreshed: int = 0
    already_fresh: int = 0  # refreshed by someone else between our read and our lock
    deleted: Counter[str] = field(default_factory=Counter)  # reason -> count
    skipped_transient: int = 0  # SSO failed transiently, or not tried after a stop
    skipped_locked: int = 0  # being refreshed by a request right now
    skipped_rejected: int = 0  # the SSO refused for another reason (e.g. invalid_scope)
    kept_young_single_use: int = 0  # user-less, expired, younger than the max age
    sso_calls: int = 0
    stopped: str = ""  # why the run stopped calling the SSO early, if it did
    retry_after: float | None = None
    elapsed: float = 0.0

    @property
    def deleted_total(self) -> int:
        return sum(self.deleted.values())

    def summary(self) -> str:
        scope = "all tokens" if self.fraction <= 1 else f"subset {self.bucket}/{self.fraction}"
        verb = "would delete" if self.dry_run else "deleted"
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.deleted.items())) or "none"
        parts = [
            f"Token cleanup ({scope}{', dry run' if self.dry_run else ''}): "
            f"{self.examined} examined, {self.candidates} candidates",
            f"{'would refresh' if self.dry_run else 'refreshed'} {self.refreshed}",
            f"already fresh {self.already_fresh}",
            f"{verb} {self.deleted_total} ({reasons})",
            f"skipped transient {self.skipped_transient}",
            f"skipped locked {self.skipped_locked}",
            f"skipped rejected {self.skipped_rejected}",
            f"young single-use kept {self.kept_young_single_use}",
            f"SSO calls {self.sso_calls}",
            f"{self.elapsed:.1f} s",
        ]
        line = ", ".join(parts)
        if self.stopped:
            line += f"; stopped early: {self.stopped}"
        return line

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (Celery results)."""
        return {
            "fraction": self.fraction,
            "bucket": self.bucket,
            "dry_run": self.dry_run,
            "examined": self.examined,
            "candidates": self.candidates,
            "refreshed": self.refreshed,
            "already_fresh": self.already_fresh,
            "deleted": dict(self.deleted),
            "skipped_transient": self.skipped_transient,
            "skipped_locked": self.skipped_locked,
            "skipped_rejected": self.skipped_rejected,
            "kept_young_single_use": self.kept_young_single_use,
            "sso_calls": self.sso_calls,
            "stopped": self.stopped,
            "retry_after": self.retry_after,
            "elapsed": round(self.elapsed, 3),
        }


Progress = Callable[[CleanupReport], None]


# -- callback redirects ------------------------------------------------------------------


def cleanup_callbackredirect(max_age: int = 300) -> int:
    """Delete SSO flows (``CallbackRedirect``) older than ``max_age`` seconds; the count.

    Stale user-less tokens go too (see ``delete_stale_single_use``): a site that
    schedules only this task still keeps ``ESI_SINGLE_USE_TOKEN_MAX_AGE``'s promise.
    """
    cutoff = timezone.now() - timedelta(seconds=max_age)
    deleted, _ = CallbackRedirect.objects.filter(created__lte=cutoff).delete()
    tokens = delete_stale_single_use()
    logger.info(
        "Callback redirect cleanup: deleted %d older than %d s, and %d user-less "
        "tokens past ESI_SINGLE_USE_TOKEN_MAX_AGE",
        deleted,
        max_age,
        tokens,
    )
    return deleted


def stale_single_use() -> QuerySet:
    """User-less tokens older than ``ESI_SINGLE_USE_TOKEN_MAX_AGE``: none is ever handed out."""
    cutoff = timezone.now() - timedelta(seconds=esi_settings.SINGLE_USE_TOKEN_MAX_AGE)
    return Token.objects.filter(user__isnull=True, created__lte=cutoff)


def delete_stale_single_use(batch_size: int | None = None) -> int:
    """Delete every stale user-less token, whatever its subset bucket; the count."""
    report = CleanupReport()
    _delete_orphans(
        report, stale_single_use(), int(batch_size or esi_settings.CLEANUP_BATCH_SIZE), None
    )
    return report.deleted[ORPHANED]


# -- the subset counter --------------------------------------------------------------------


def next_subset_bucket(fraction: int) -> int:
    """The bucket (0 .. fraction-1) for the next subset run: a shared counter, mod fraction.

    ``cache.incr`` is atomic on Redis and Memcached, so overlapping runs get different
    buckets. If the counter is lost (cache flushed), counting restarts at bucket 0.
    """
    cache = caches[esi_settings.CLEANUP_CACHE_ALIAS]
    key = f"esi_views:cleanup:subset:{fraction}"
    cache.add(key, 0, timeout=None)
    try:
        value = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=None)
        value = 1
    return (value - 1) % fraction


# -- tokens ----------------------------------------------------------------------------------


def cleanup_token(**kwargs: Any) -> CleanupReport:
    """Every token: refresh the expired, delete the dead and the stale user-less."""
    return cleanup_tokens(fraction=1, **kwargs)


def cleanup_token_subset(
    fraction: int = 48, bucket: int | None = None, **kwargs: Any
) -> CleanupReport:
    """About 1/``fraction`` of the tokens: ``fraction`` runs cover each token once."""
    return cleanup_tokens(fraction=fraction, bucket=bucket, **kwargs)


def cleanup_tokens(
    *,
    fraction: int = 1,
    bucket: int | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> CleanupReport:
    """One token run (see the module docstring). Logs one summary line and returns it."""
    fraction = max(1, int(fraction))
    if fraction > 1 and bucket is None:
        bucket = next_subset_bucket(fraction)
    if bucket is not None and not 0 <= bucket < fraction:
        raise ValueError(f"bucket must be in 0..{fraction - 1}, not {bucket}")
    report = CleanupReport(
        fraction=fraction, bucket=bucket if fraction > 1 else None, dry_run=dry_run
    )
    started = time.monotonic()
    now = timezone.now()
    young_cutoff = now - timedelta(seconds=esi_settings.SINGLE_USE_TOKEN_MAX_AGE)
    expiry_cutoff = now + timedelta(seconds=esi_settings.TOKEN_REFRESH_MARGIN)
    bucketed = _bucket_filter(Token.objects.all(), fraction, bucket)
    # User-less tokens: all of them, whatever the bucket (their max age is a promise).
    orphans = Token.objects.filter(user__isnull=True, created__lte=young_cutoff)
    expired = bucketed.filter(user__isnull=False, expires_at__lte=expiry_cutoff)
    report.kept_young_single_use = Token.objects.filter(
        user__isnull=True, created__gt=young_cutoff, expires_at__lte=expiry_cutoff
    ).count()
    report.examined = bucketed.count()
    orphan_count, expired_count = orphans.count(), expired.count()
    report.candidates = orphan_count + expired_count
    try:
        if dry_run:
            _dry_run(report, orphan_count, expired)
        else:
            size = int(batch_size or esi_settings.CLEANUP_BATCH_SIZE)
            _delete_orphans(report, orphans, size, progress)
            _refresh_expired(report, expired, size, progress)
    except SSOConfigurationError as exc:
        report.stopped = f"configuration error: {exc}"
        raise
    finally:
        report.elapsed = time.monotonic() - started
        logger.info(report.summary())
    return report


def _bucket_filter(queryset: QuerySet, fraction: int, bucket: int | None) -> QuerySet:
    if fraction <= 1:
        return queryset
    return queryset.alias(_cleanup_bucket=Mod("pk", fraction)).filter(_cleanup_bucket=bucket)


def _dry_run(report: CleanupReport, orphan_count: int, expired: QuerySet) -> None:
    no_refresh = expired.filter(refresh_token="").count()
    report.deleted[ORPHANED] = orphan_count
    report.deleted["no_refresh_token"] = no_refresh
    report.refreshed = report.candidates - orphan_count - no_refresh
    report.deleted = +report.deleted  # drop zero counts
    report.processed = report.candidates


def _delete_orphans(
    report: CleanupReport, orphans: QuerySet, size: int, progress: Progress | None
) -> None:
    last_pk = 0
    while True:
        pks = list(
            orphans.filter(pk__gt=last_pk).order_by("pk").values_list("pk", flat=True)[:size]
        )
        if not pks:
            return
        last_pk = pks[-1]
        # Filter again when deleting: a token given an owner meanwhile is no orphan.
        deleted = orphans.filter(pk__in=pks).delete()[1].get(Token._meta.label, 0)
        if deleted:
            report.deleted[ORPHANED] += deleted
        report.processed += len(pks)
        if progress:
            progress(report)


def _after(queryset: QuerySet, cursor: tuple[datetime, int] | None) -> QuerySet:
    if cursor is None:
        return queryset
    expires_at, pk = cursor
    # The range condition on expires_at alone lets the database walk its index.
    return queryset.filter(expires_at__gte=expires_at).filter(
        Q(expires_at__gt=expires_at) | Q(pk__gt=pk)
    )


def _refresh_expired(
    report: CleanupReport, expired: QuerySet, batch_size: int, progress: Progress | None
) -> None:
    max_failures = max(1, int(esi_settings.CLEANUP_MAX_TRANSIENT_FAILURES))
    cursor: tuple[datetime, int] | None = None
    consecutive = 0
    size = min(batch_size, max_failures)  # probe the SSO with a small first batch
    while True:
        rows = list(
            _after(expired, cursor)
            .order_by("expires_at", "pk")
            .values_list("pk", "expires_at")[:size]
        )
        if not rows:
            return
        cursor = (rows[-1][1], rows[-1][0])
        outcome = refresh_tokens([Token(pk=pk) for pk, _ in rows], skip_locked=True)
        answered = _tally(report, outcome)
        report.processed += len(rows)
        consecutive = 0 if answered else consecutive + len(outcome.transient)
        waits = [e.retry_after for _, e in outcome.transient if e.retry_after is not None]
        if waits and max(waits) > float(esi_settings.CLEANUP_MAX_WAIT):
            report.retry_after = max(waits)
            report.stopped = f"the SSO asked us to retry after {max(waits):g} s"
        elif consecutive >= max_failures:
            report.stopped = f"{consecutive} transient SSO failures in a row"
        if report.stopped:
            rest = _after(expired, cursor).count()
            report.skipped_transient += rest
            report.processed += rest
            if progress:
                progress(report)
            return
        if waits:
            time.sleep(max(waits))
        size = batch_size if consecutive == 0 else max(1, max_failures - consecutive)
        if progress:
            progress(report)


def _tally(report: CleanupReport, outcome: RefreshReport) -> int:
    """Add one batch's outcome; the number of SSO calls that got a real answer."""
    answered = len(outcome.refreshed) + len(outcome.other)
    report.refreshed += len(outcome.refreshed)
    report.already_fresh += len(outcome.already_fresh)
    for _, error in outcome.dead:
        reason = next((name for kind, name in _REASONS if isinstance(error, kind)), "dead")
        report.deleted[reason] += 1
        if not isinstance(error, NoRefreshTokenError):
            answered += 1
    report.skipped_transient += len(outcome.transient)
    report.skipped_rejected += len(outcome.other)
    report.skipped_locked += len(outcome.skipped_locked)
    report.sso_calls += answered + len(outcome.transient)
    return answered
