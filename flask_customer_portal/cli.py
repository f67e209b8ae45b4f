"""``flask portal …`` commands for the merchant's support and operations."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, cast

import click
from flask import current_app
from flask.cli import with_appcontext

from .auth import session_limits, validate_return_url
from .billing.renewal import RenewalOutcome, renew_due
from .billing.settlement import SettlementOutcome
from .capabilities import PrunesWebhookEvents
from .clock import utcnow
from .deep_links import Flow, create_session_link
from .emails import render_message
from .erasure import ErasureRefused, erase_customer
from .errors import CustomerNotFound
from .mail import MailDeliveryError
from .migrations.cli import db_cli
from .migrations.gate import refuse_behind_schema
from .outbox import deliver_ids, new_mail, outbox_of
from .outbox.cli import mail_status_command, send_mail_command, worker_command
from .production import CheckStatus, production_checklist
from .state import get_state

if TYPE_CHECKING:
    from .auth import PortalSession
    from .storage import AuditEvent, LinkRecord, MailOutboxStore

__all__ = ["portal_cli"]


@click.group("portal", help="Customer portal commands.")
def portal_cli() -> None:
    pass


portal_cli.add_command(db_cli)
portal_cli.add_command(send_mail_command)
portal_cli.add_command(worker_command)
portal_cli.add_command(mail_status_command)


@portal_cli.command("create-session")
@click.argument("customer_id")
@click.option("--return-url", default=None, help='Where the portal\'s "Back to shop" link goes.')
@click.option("--email", "send_email", is_flag=True, help="Also email the link to the customer.")
@click.option(
    "--flow",
    type=click.Choice([f.value for f in Flow]),
    default=None,
    help="Make a deep link that lands on this task.",
)
@click.option(
    "--subscription",
    "subscription_id",
    default=None,
    metavar="SUBSCRIPTION_ID",
    help="The subscription the --flow is about (payment_method_update, cancel, plan_change).",
)
@with_appcontext
def create_session_command(
    customer_id: str,
    return_url: str | None,
    send_email: bool,
    flow: str | None,
    subscription_id: str | None,
) -> None:
    """Print a one-time portal link for CUSTOMER_ID.

    The link expires after CUSTOMER_PORTAL_SESSION_LINK_MAX_AGE seconds
    (24 hours by default) and works once. With --flow it lands on one task
    and sends the customer back to --return-url when it is done."""
    state = get_state()
    try:
        return_url = validate_return_url(state, return_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--return-url") from None
    queued: list[str] = []

    def save_with_email(record: LinkRecord, portal_session: PortalSession, created: AuditEvent) -> None:
        # The link and its email in one transaction: the email goes out
        # (now, or from the next sender if this process dies) exactly
        # when the link exists.
        customer = state.storage.get_customer(customer_id)
        if customer is None:  # pragma: no cover - create_session_link found it a moment ago
            raise CustomerNotFound(customer_id)
        message = render_message(
            state,
            "session_link",
            to=customer.email,
            customer=customer,
            link=portal_session.link,
            expires_at=portal_session.expires_at,
        )
        mail = new_mail(state, message, kind="session_link", customer_id=customer.id)
        cast("MailOutboxStore", state.storage).enqueue_mail([mail], link=record, events=[created])
        queued.append(mail.id)

    through_outbox = send_email and outbox_of(state) is not None
    try:
        portal_session = create_session_link(
            state,
            customer_id,
            return_url,
            flow=flow,
            subscription_id=subscription_id,
            save=save_with_email if through_outbox else None,
        )
    except CustomerNotFound:
        raise click.ClickException(f"No customer with id {customer_id!r}.") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--flow/--subscription") from None
    click.echo(portal_session.link)
    click.echo(f"Expires at {portal_session.expires_at.isoformat()} (one use).", err=True)
    if through_outbox:
        if deliver_ids(state, queued, give_up=True).failed:
            raise click.ClickException("Could not send the email; the link above still works.")
        click.echo(f"Emailed to {state.storage.get_customer(customer_id).email}.", err=True)  # type: ignore[union-attr]
    elif send_email:
        customer = state.storage.get_customer(customer_id)
        if customer is None:  # deleted in the meantime
            raise click.ClickException(f"No customer with id {customer_id!r}.")
        message = render_message(
            state,
            "session_link",
            to=customer.email,
            customer=customer,
            link=portal_session.link,
            expires_at=portal_session.expires_at,
        )
        try:
            state.mailer.send(message)
        except MailDeliveryError as exc:
            current_app.logger.error("Could not email the portal link to customer %s: %s", customer_id, exc)
            raise click.ClickException("Could not send the email; the link above still works.") from None
        click.echo(f"Emailed to {customer.email}.", err=True)


@portal_cli.command("renew-due")
@click.option("--batch-size", default=100, show_default=True, help="Subscriptions read per query.")
@with_appcontext
def renew_due_command(batch_size: int) -> None:
    """Renew every subscription whose period has ended.

    Charges the saved payment method of each due ``active`` subscription
    (once: a rerun after a crash never charges twice), finishes
    cancellations set for the period's end, and puts subscriptions whose
    payment fails ``on_hold`` and emails their customer. ``on_hold``
    subscriptions are skipped: they only come back when the customer pays.
    First, plan-change payments whose outcome was left unknown are settled
    with the payment provider: the plan changes (or the amount becomes
    credit) if the money was taken, the invoice is voided if not.
    Run it from cron or a scheduler, e.g. every 15 minutes, on as many
    hosts as you like: on PostgreSQL the runs share the work, each claiming
    the subscriptions it renews, and never renew one twice. Exits with
    status 1 if any subscription could not be processed, and charges
    nothing while the portal's tables are behind the package (run
    `flask portal db upgrade`)."""

    refuse_behind_schema(current_app)
    report = renew_due(get_state(), batch_size=batch_size)
    for outcome in RenewalOutcome:
        if outcome is not RenewalOutcome.SKIPPED:
            click.echo(f"{outcome.value}: {report.count(outcome)}")
    for settled in SettlementOutcome:
        click.echo(f"plan_change_{settled.value}: {report.plan_changes.count(settled)}")
    for subscription_id, error in report.errors:
        click.echo(f"error: {subscription_id} ({error})", err=True)
    if report.errors:
        raise SystemExit(1)


@portal_cli.command("prune")
@click.option(
    "--webhook-events-older-than-days",
    "webhook_days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Forget webhook events received more than this many days ago.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=10_000),
    default=500,
    show_default=True,
    help="Rows deleted per transaction.",
)
@with_appcontext
def prune_command(webhook_days: int, batch_size: int) -> None:
    """Delete what has expired: one-time links past their expiry, portal
    sessions that can no longer sign anybody in (signed out, idle past
    CUSTOMER_PORTAL_SESSION_IDLE_TIMEOUT, older than
    CUSTOMER_PORTAL_SESSION_MAX_AGE), and webhook events older than
    --webhook-events-older-than-days (keep them well past the time the
    payment company retries an event: Stripe up to three days, or a
    redelivery would be handled again), and emails sent more than
    CUSTOMER_PORTAL_MAIL_KEEP_SENT_DAYS ago (failed ones stay). Prints how
    many rows of each went.

    Deletes in small batches, each in its own short transaction; safe to
    run from cron on several hosts at once, e.g. hourly."""
    state = get_state()
    storage = state.storage
    if not state.capabilities.prune:
        raise click.ClickException(f"{type(storage).__name__} cannot prune (it has no prune_expired)")
    now = utcnow()
    idle_timeout, max_age = session_limits(state)
    report = storage.prune_expired(
        now,
        session_idle_timeout=idle_timeout,
        session_max_age=max_age,
        webhook_events_before=now - timedelta(days=webhook_days),
        batch_size=batch_size,
        **(
            {"sent_mail_before": now - timedelta(days=state.config.mail.keep_sent_days)}
            if outbox_of(state)
            else {}
        ),
    )
    click.echo(f"links: {report.links}")
    click.echo(f"sessions: {report.sessions}")
    click.echo(f"webhook events: {report.webhook_events}")
    if outbox_of(state) is not None:
        click.echo(f"sent mail: {report.mail}")


@portal_cli.command("prune-webhook-events")
@click.option(
    "--older-than-days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Forget events received more than this many days ago.",
)
@with_appcontext
def prune_webhook_events_command(older_than_days: int) -> None:
    """Forget old webhook events the store remembers to ignore repeats.

    `flask portal prune` does this and more; this command stays for
    existing cron jobs. Keep events well past the time the payment company
    retries one (Stripe: up to three days): a delivery of a forgotten event
    would be handled again."""
    state = get_state()
    if not state.capabilities.webhook_pruning:
        raise click.ClickException("this storage does not keep webhook events")
    storage = cast(PrunesWebhookEvents, state.storage)
    pruned = storage.prune_webhook_events(datetime.now(timezone.utc) - timedelta(days=older_than_days))
    click.echo(f"pruned: {pruned}")


@portal_cli.command("erase-customer")
@click.argument("customer_id")
@click.option(
    "--force",
    is_flag=True,
    help="Cancel the customer's subscriptions that are not cancelled yet (now), then erase.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def erase_customer_command(customer_id: str, force: bool, yes: bool) -> None:
    """Erase the personal data of CUSTOMER_ID (GDPR art. 17).

    Removes or anonymises name, email, phone, billing details, sessions,
    links, licence keys, saved cards and personal audit details; keeps
    issued invoices with the billing details they were issued with. The
    customer can no longer sign in. Refused while a subscription of theirs
    is not cancelled, unless --force. Cannot be undone."""
    state = get_state()
    if state.storage.get_customer(customer_id) is None:
        raise click.ClickException(f"No customer with id {customer_id!r}.")
    if not yes:
        click.confirm(f"Erase the personal data of {customer_id}? This cannot be undone", abort=True)
    try:
        report = erase_customer(state, customer_id, force=force, actor="merchant", details={"via": "cli"})
    except CustomerNotFound:
        raise click.ClickException(f"No customer with id {customer_id!r}.") from None
    except ErasureRefused as exc:
        raise click.ClickException(str(exc)) from None
    except TypeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Erased customer {customer_id}.")
    for name in (
        "sessions_deleted",
        "links_deleted",
        "billing_details_deleted",
        "payment_methods_deleted",
        "payment_methods_kept",
        "license_keys_deleted",
        "audit_events_scrubbed",
        "invoices_kept",
    ):
        click.echo(f"{name.replace('_', ' ')}: {getattr(report, name)}")


@portal_cli.command("check")
@with_appcontext
def check_command() -> None:
    """Print the production checklist and exit with status 1 if any item fails.

    One line per item, OK, WARN (advisory) or FAIL, judged by live mode's
    rules whatever CUSTOMER_PORTAL_MODE says: the mode, SECRET_KEY and every
    key in SECRET_KEY_FALLBACKS, an https base URL, a real mail transport,
    rate limits shared by every worker, secure cookies, the portal's tables
    in the database, and live payment credentials. Secrets are judged, never
    printed. Run it on the production configuration before going live and
    after each deploy."""

    results = production_checklist(current_app, get_state())
    for result in results:
        click.echo(str(result))
    failed = sum(result.status is CheckStatus.FAIL for result in results)
    warned = sum(result.status is CheckStatus.WARN for result in results)
    click.echo(f"{failed} failed, {warned} to look at, {len(results) - failed - warned} OK.")
    if failed:
        raise SystemExit(1)
