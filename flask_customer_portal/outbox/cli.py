"""``flask portal send-mail``, ``flask portal worker`` and ``flask portal
mail-status``: the outbox from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import click
from flask.cli import with_appcontext

from ..clock import utcnow
from ..contrib.sqla import sql_store_of
from ..records import MailStatus
from ..state import PortalState, get_state
from .queue import outbox_of
from .sender import deliver_due
from .worker import run_worker

if TYPE_CHECKING:
    from ..storage import MailOutboxStore

__all__ = ["mail_status_command", "send_mail_command", "worker_command"]


def _state_with_outbox() -> PortalState:
    state = get_state()
    if outbox_of(state) is None:
        raise click.ClickException(
            f"{type(state.storage).__name__} has no mail outbox: the portal sends each email once, "
            "from the process that made it, and there is nothing to deliver here"
        )
    return state


@click.command("send-mail")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Attempt at most this many emails (default: every one that is due).",
)
@with_appcontext
def send_mail_command(limit: int | None) -> None:
    """Deliver the emails that are due, once, and exit.

    Prints one line: how many were sent, are due again later, or failed
    for good. Exits with status 1 if any failed for good or is to be
    retried, so that cron (or a deploy step) notices a mail server that
    refuses. Safe to run on several hosts at once, and next to `flask
    portal worker`: each email is claimed by one sender."""
    state = _state_with_outbox()
    report = deliver_due(state, limit=limit)
    click.echo(f"mail: {report.summary()}.")
    if report.failed or report.retried:
        raise SystemExit(1)


@click.command("worker")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    default=None,
    help="Seconds to wait when nothing is due (default: CUSTOMER_PORTAL_MAIL_POLL_INTERVAL).",
)
@with_appcontext
def worker_command(poll_interval: float | None) -> None:
    """Keep delivering emails as they become due, until SIGTERM or Ctrl-C.

    Stops after the email it is sending (nothing is lost or sent twice),
    so a process manager may restart it at any time. Runs the tasks added
    with CustomerPortal.worker_task too. Several workers, on one host or
    many, share the work."""
    state = _state_with_outbox()
    store = sql_store_of(state.storage)
    close = store.close_db_session if store is not None else None
    click.echo("Customer portal worker started; SIGTERM or Ctrl-C stops it.", err=True)
    done = run_worker(
        state,
        poll_interval=poll_interval,
        close_session=close,
    )
    click.echo(f"Customer portal worker stopped after {done} tasks.", err=True)


@click.command("mail-status")
@click.option("--failed", "show_failed", type=click.IntRange(min=0), default=10, show_default=True)
@with_appcontext
def mail_status_command(show_failed: int) -> None:
    """Print how the outbox stands: pending (and due now), failed, sent;
    then the most recent failed emails (kind, customer, address, why).
    Exits with status 1 if an email has been due for more than five
    minutes (is a sender running?)."""
    outbox = cast("MailOutboxStore", _state_with_outbox().storage)
    now = utcnow()
    counts = outbox.mail_counts(now)
    waiting = (now - counts.oldest_due_at).total_seconds() if counts.oldest_due_at is not None else 0.0
    click.echo(
        f"mail: {counts.pending} pending ({counts.due} due now"
        + (f", oldest due for {waiting:.0f} s" if counts.due else "")
        + f"), {counts.failed} failed, {counts.sent} sent."
    )
    for mail in outbox.list_mail(status=MailStatus.FAILED, limit=show_failed) if show_failed else ():
        click.echo(
            f"failed: {mail.id} {mail.kind} customer={mail.customer_id or '-'} to={mail.to} "
            f"attempts={mail.attempts} error={mail.last_error or '-'}"
        )
    if waiting > 300:
        raise SystemExit(1)
