"""manage.py esi_cleanup: the token cleanup of the Celery tasks, for operators. No Celery needed."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from esi_views.cleanup import CleanupReport, cleanup_callbackredirect, cleanup_tokens

BAR_WIDTH = 30
# The exit status when tokens were kept because the SSO failed transiently: nothing is
# wrong with them, but they were not refreshed, and cron should say so.
EXIT_TRANSIENT = 3


class Command(BaseCommand):
    help = (
        "Refresh expired EVE tokens and delete the dead ones (and user-less tokens past "
        "ESI_SINGLE_USE_TOKEN_MAX_AGE). Transient SSO failures never delete anything, "
        f"but the command then exits with status {EXIT_TRANSIENT} (see --allow-transient)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--subset",
            type=int,
            metavar="FRACTION",
            default=None,
            help="Handle only the next 1/FRACTION of the tokens (as cleanup_token_subset).",
        )
        parser.add_argument(
            "--bucket",
            type=int,
            default=None,
            help="With --subset: this bucket (0..FRACTION-1) instead of the next one.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be done; change nothing, call no SSO.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="Tokens per batch (default ESI_CLEANUP_BATCH_SIZE).",
        )
        parser.add_argument(
            "--redirects",
            action="store_true",
            help="Also delete SSO flows older than --redirect-max-age.",
        )
        parser.add_argument(
            "--redirect-max-age",
            type=int,
            metavar="SECONDS",
            default=300,
            help="With --redirects: the age in seconds past which an SSO "
            "flow is deleted (default 300).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        parser.add_argument(
            "--allow-transient",
            action="store_true",
            help=f"Exit 0 even when tokens were kept because the EVE SSO failed "
            f"transiently (default: exit status {EXIT_TRANSIENT}, so cron and "
            f"monitoring notice).",
        )

    def handle(
        self,
        *args,
        subset,
        bucket,
        dry_run,
        batch_size,
        redirects,
        redirect_max_age,
        no_progress,
        allow_transient,
        **options,
    ):
        if subset is not None and subset < 1:
            raise CommandError("--subset must be at least 1.")
        if bucket is not None and subset is None:
            raise CommandError("--bucket needs --subset.")
        if redirects and not dry_run:
            count = cleanup_callbackredirect(redirect_max_age)
            self.stdout.write(f"Callback redirects deleted: {count}")
        progress = None if no_progress else _ProgressBar(self.stderr)
        try:
            report = cleanup_tokens(
                fraction=subset or 1,
                bucket=bucket,
                dry_run=dry_run,
                batch_size=batch_size,
                progress=progress,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if progress:
            progress.finish(report)
        self._summary(report)
        if report.skipped_transient and not allow_transient:
            raise CommandError(
                f"{report.skipped_transient} expired token(s) were kept unrefreshed because "
                "the EVE SSO failed transiently; run again later (--allow-transient exits 0).",
                returncode=EXIT_TRANSIENT,
            )

    def _summary(self, report: CleanupReport) -> None:
        would = report.dry_run
        scope = (
            "all tokens"
            if report.fraction <= 1
            else (f"subset bucket {report.bucket} of {report.fraction}")
        )
        self.stdout.write(f"Token cleanup of {scope}{' (dry run)' if would else ''}:")
        rows = [
            ("examined", report.examined),
            ("candidates", report.candidates),
            ("would refresh" if would else "refreshed", report.refreshed),
            ("already fresh", report.already_fresh),
            ("would delete" if would else "deleted", report.deleted_total),
            *((f"  {reason}", count) for reason, count in sorted(report.deleted.items())),
            ("skipped transient", report.skipped_transient),
            ("skipped locked", report.skipped_locked),
            ("skipped rejected", report.skipped_rejected),
            ("young single-use kept", report.kept_young_single_use),
            ("SSO calls", report.sso_calls),
        ]
        for label, value in rows:
            self.stdout.write(f"  {label:<24}{value:>10}")
        self.stdout.write(f"  {'time':<24}{report.elapsed:>9.1f}s")
        if report.stopped:
            self.stdout.write(self.style.WARNING(f"Stopped early: {report.stopped}"))
        else:
            self.stdout.write(self.style.SUCCESS("Done."))


class _ProgressBar:
    """``[#####-----]  512/1024 tokens`` on one line of a terminal; every 10% otherwise."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = getattr(getattr(stream, "_out", stream), "isatty", lambda: False)()
        self.last_decile = -1
        self.last_draw = 0.0

    def __call__(self, report: CleanupReport) -> None:
        total, done = report.candidates, min(report.processed, report.candidates)
        if not total:
            return
        if self.tty:
            if time.monotonic() - self.last_draw < 0.1 and done < total:
                return
            self.last_draw = time.monotonic()
            self.stream.write("\r" + self._line(done, total), ending="")
            self.stream.flush()
            return
        decile = done * 10 // total
        if decile > self.last_decile:
            self.last_decile = decile
            self.stream.write(self._line(done, total))

    def finish(self, report: CleanupReport) -> None:
        if self.tty and report.candidates:
            self.stream.write("\r" + self._line(report.candidates, report.candidates))
        elif report.candidates and self.last_decile < 10:
            self.stream.write(self._line(report.candidates, report.candidates))

    @staticmethod
    def _line(done: int, total: int) -> str:
        filled = BAR_WIDTH * done // total
        width = len(str(total))
        return (
            f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] "
            f"{done:>{width}}/{total} tokens ({100 * done // total}%)"
        )
