"""The customer's own history: audit events written as sentences.

The audit log is for the merchant; this module decides what of it a
customer reads. Every action the portal records has a sentence (in the
customer's language); an action it does not know — a newer portal version,
the merchant's own events — gets a general sentence for its area, never its
internal name. Of an event's details only the few listed here are shown
(a card's brand and last four digits, whether a cancellation waits for the
period end …); provider references, ids, token hashes and anything else in
``details`` never reach the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .formatting import format_card
from .i18n import gettext as _
from .i18n import ngettext
from .storage import AccessStore, AuditEvent

__all__ = [
    "KNOWN_ACTIONS",
    "ActivityEntry",
    "SubjectLink",
    "actor_label",
    "describe_event",
    "has_signed_in",
]


@dataclass(frozen=True, slots=True)
class SubjectLink:
    endpoint: str
    values: dict[str, str]
    label: str


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    """One line of the customer's history."""

    event: AuditEvent
    sentence: str
    actor: str
    """"You", "Support" or "Automatic", translated."""
    link: SubjectLink | None = None
    """The page about the event's subject, if there is one."""


def actor_label(actor: str) -> str:
    """Who did it, as the customer reads it. Only ``customer`` and
    ``system`` are named; every other actor (the merchant, a staff member's
    id) is "Support", so no staff identity reaches the customer."""
    if actor == "customer":
        return _("You")
    if actor == "system":
        return _("Automatic")
    return _("Support")


def _card(details: Mapping[str, str]) -> str | None:
    brand, last4 = details.get("brand", ""), details.get("last4", "")
    if not (last4.isdigit() and len(last4) == 4):
        return None
    return format_card(brand, last4)


def _signed_in(event: AuditEvent) -> str:
    method = event.details.get("method")
    if method == "login_link":
        return _("Signed in with a link sent by email.")
    if method == "session_link":
        return _("Signed in with a link from the merchant.")
    if method == "email_change":
        return _("Signed in by confirming a new email address.")
    return _("Signed in to the portal.")


def _cancelled(event: AuditEvent) -> str:
    if event.details.get("at_period_end") == "true":
        return _("A subscription was set to end at the end of its billing period.")
    return _("A subscription was cancelled.")


def _payment_method_added(event: AuditEvent) -> str:
    card = _card(event.details)
    return _("Payment method %(card)s was added.", card=card) if card else _("A payment method was added.")


def _default_payment_method_changed(event: AuditEvent) -> str:
    card = _card(event.details)
    if card:
        return _("%(card)s became your default payment method.", card=card)
    return _("Your default payment method was changed.")


def _payment_method_removed(event: AuditEvent) -> str:
    card = _card(event.details)
    if card:
        return _("Payment method %(card)s was removed.", card=card)
    return _("A payment method was removed.")


def _paused(event: AuditEvent) -> str:
    months = event.details.get("months", "")
    if months.isdigit() and 0 < int(months) < 100:
        return ngettext(
            "A subscription was paused for %(num)d month.",
            "A subscription was paused for %(num)d months.",
            int(months),
        )
    return _("A subscription was paused.")


def _fixed(text: Callable[[], str]) -> Callable[[AuditEvent], str]:
    return lambda event: text()


#: Sentence makers by action name: every action the portal records.
_SENTENCES: dict[str, Callable[[AuditEvent], str]] = {
    "session.signed_in": _signed_in,
    "session.signed_out": _fixed(lambda: _("Signed out.")),
    "session.revoked": _fixed(lambda: _("Another device was signed out.")),
    "session.signed_out_everywhere": _fixed(
        lambda: _("Signed out on every device; earlier sign-in links stopped working.")
    ),
    "session_link.created": _fixed(lambda: _("A sign-in link to the portal was made.")),
    "login_link.sent": _fixed(lambda: _("A sign-in link was sent by email.")),
    "invite.sent": _fixed(lambda: _("An invitation to the portal was sent by email.")),
    "profile.updated": _fixed(lambda: _("Contact details were updated.")),
    "profile.email_change_requested": _fixed(
        lambda: _("A change of email address was requested; a confirmation link was sent to the new address.")
    ),
    "profile.email_changed": _fixed(lambda: _("The email address was changed.")),
    "profile.email_change_refused": _fixed(
        lambda: _("A change of email address could not be made: the address is already in use.")
    ),
    "payment_method.added": _payment_method_added,
    "payment_method.removed": _payment_method_removed,
    "payment_method.default_changed": _default_payment_method_changed,
    "payment_method.changed": _fixed(lambda: _("A subscription's payment method was changed.")),
    "subscription.cancelled": _cancelled,
    "subscription.cancellation_undone": _fixed(
        lambda: _("A subscription that was set to end will continue.")
    ),
    "subscription.ended": _fixed(lambda: _("A subscription ended.")),
    "subscription.renewed": _fixed(lambda: _("A subscription was renewed.")),
    "subscription.put_on_hold": _fixed(
        lambda: _("A renewal payment did not go through; the subscription is on hold.")
    ),
    "subscription.reactivated": _fixed(lambda: _("A subscription on hold was paid and is active again.")),
    "subscription.reactivation_failed": _fixed(
        lambda: _("A payment to reactivate a subscription did not go through.")
    ),
    "subscription.paused": _paused,
    "subscription.resumed": _fixed(lambda: _("A paused subscription was resumed.")),
    "subscription.plan_changed": _fixed(lambda: _("A subscription's plan was changed.")),
    "subscription.plan_change_scheduled": _fixed(
        lambda: _("A plan change was scheduled for the end of the billing period.")
    ),
    "subscription.plan_change_schedule_cancelled": _fixed(
        lambda: _("A scheduled plan change was cancelled.")
    ),
    "subscription.plan_change_dropped": _fixed(
        lambda: _("A scheduled plan change could not be made: the plan is no longer offered.")
    ),
    "subscription.plan_change_failed": _fixed(
        lambda: _("A plan change could not be made because the payment did not go through.")
    ),
    "subscription.plan_change_credited": _fixed(
        lambda: _("A plan change could not be completed; its payment was added to your account credit.")
    ),
    "retention_offer.accepted": _fixed(lambda: _("An offer to keep a subscription was accepted.")),
    "subscription.promotion_code_applied": _fixed(
        lambda: _("A promotion code was added to a subscription's next renewals.")
    ),
    "customer.language_changed": _fixed(lambda: _("The portal's language was changed.")),
    "customer.erased": _fixed(lambda: _("The account's personal data was erased.")),
    "billing_details.updated": _fixed(lambda: _("The billing details for invoices were updated.")),
    "invoice.billing_details_added": _fixed(lambda: _("Billing details were added to an invoice.")),
    "license_key.instance_deactivated": _fixed(lambda: _("A device using a licence key was deactivated.")),
    "invoice.issued": _fixed(lambda: _("An invoice was issued.")),
    "invoice.paid": _fixed(lambda: _("An invoice was paid.")),
    "charge.succeeded": _fixed(lambda: _("A payment went through.")),
    "charge.declined": _fixed(lambda: _("A payment was declined.")),
    "charge.requires_action": _fixed(lambda: _("A payment is waiting for confirmation from the bank.")),
    "charge.failed": _fixed(lambda: _("A payment could not be made.")),
    "charge.unknown": _fixed(lambda: _("A payment is being checked with the payment provider.")),
    "charge.amount_mismatch": _fixed(
        lambda: _("A payment of another amount than the invoice was reported; the shop has been told.")
    ),
    "charge.reconciled": _fixed(lambda: _("A payment was checked with the payment provider.")),
}

#: Every action with its own sentence (the rest get their area's sentence).
KNOWN_ACTIONS = frozenset(_SENTENCES)

#: For actions without a sentence of their own: a sentence for their area.
_AREA_SENTENCES: dict[str, Callable[[], str]] = {
    "session": lambda: _("Your sign-in sessions changed."),
    "subscription": lambda: _("A subscription changed."),
    "invoice": lambda: _("An invoice changed."),
    "charge": lambda: _("A payment was updated."),
    "payment_method": lambda: _("Your payment methods changed."),
    "license_key": lambda: _("A licence key changed."),
    "profile": lambda: _("Your account details changed."),
    "billing_details": lambda: _("Your billing details changed."),
}

#: Pages about an event's subject, by the area of its action. The subject's
#: id goes into a link only; the page itself checks that it is the
#: customer's (another customer's id is a 404 there).
_SUBJECT_PAGES: dict[str, tuple[str, str, Callable[[], str]]] = {
    "subscription": ("subscription", "subscription_id", lambda: _("View subscription")),
    "invoice": ("invoice", "invoice_id", lambda: _("View invoice")),
    "charge": ("invoice", "invoice_id", lambda: _("View invoice")),
    "payment_method.changed": ("subscription", "subscription_id", lambda: _("View subscription")),
    "retention_offer.accepted": ("subscription", "subscription_id", lambda: _("View subscription")),
    "license_key.instance_deactivated": (
        "license_key",
        "license_key_id",
        lambda: _("View licence key"),
    ),
}

#: Actions whose page is named by a detail rather than by ``subject_id``.
_SUBJECT_DETAIL = {"license_key.instance_deactivated": "license_key_id"}


def _link(
    event: AuditEvent, area: str, endpoints: Mapping[str, object] | None, blueprint: str
) -> SubjectLink | None:
    detail = _SUBJECT_DETAIL.get(event.action)
    subject = event.details.get(detail) if detail else event.subject_id
    if not subject or endpoints is None:
        return None
    page = _SUBJECT_PAGES.get(event.action) or _SUBJECT_PAGES.get(area)
    if page is None:
        return None
    name, argument, label = page
    endpoint = f"{blueprint}.{name}"
    if endpoint not in endpoints:
        return None
    return SubjectLink(endpoint=endpoint, values={argument: subject}, label=label())


def describe_event(
    event: AuditEvent, endpoints: Mapping[str, object] | None = None, *, blueprint: str = "portal"
) -> ActivityEntry:
    """``event`` as a line of the customer's history, in the current
    language. ``endpoints`` (the app's view functions) decides which
    subject pages can be linked to; without it nothing is linked.
    ``blueprint`` is the name the portal's blueprint is registered under."""
    area = event.action.split(".", 1)[0]
    maker = _SENTENCES.get(event.action)
    if maker is not None:
        sentence = maker(event)
    elif area in _AREA_SENTENCES:
        sentence = _AREA_SENTENCES[area]()
    else:
        sentence = _("Your account was updated.")
    return ActivityEntry(
        event=event,
        sentence=sentence,
        actor=actor_label(event.actor),
        link=_link(event, area, endpoints, blueprint),
    )


#: How much of a customer's history :func:`has_signed_in` reads at most.
_SIGN_IN_SCAN_PAGES = 2
_SIGN_IN_SCAN_PER_PAGE = 100


def has_signed_in(store: AccessStore, customer_id: str) -> bool:
    """Whether the customer has ever signed in to the portal, to greet a
    first-time invitee with "Welcome" rather than "Welcome back".

    A first-timer's history is short (a link made, an invite sent), so it
    is read whole; a long history is read only so far, newest first, and
    counts as a returning customer's: the greeting never costs more than
    two pages of the audit log."""
    for page_number in range(1, _SIGN_IN_SCAN_PAGES + 1):
        page = store.list_customer_events(customer_id, page=page_number, per_page=_SIGN_IN_SCAN_PER_PAGE)
        if any(event.action == "session.signed_in" for event in page.items):
            return True
        if page.page >= page.pages:
            return False
    return True
