"""Signals the portal sends, so the merchant's code can react.

Every signal is sent with the Flask app as sender
(``current_app._get_current_object()``) and keyword arguments as listed.
Connect with ``session_created.connect_via(app)`` to listen to one app only.
"""

from __future__ import annotations

from blinker import Namespace

__all__ = [
    "billing_details_updated",
    "cancellation_undone",
    "charge_amount_mismatch",
    "customer_erased",
    "default_payment_method_changed",
    "email_change_requested",
    "email_changed",
    "invite_sent",
    "invoice_billing_details_added",
    "invoice_paid",
    "language_changed",
    "license_key_instance_deactivated",
    "link_used",
    "login_link_requested",
    "mail_failed",
    "payment_method_added",
    "payment_method_changed",
    "payment_method_removed",
    "plan_change_credited",
    "plan_change_schedule_cancelled",
    "plan_change_scheduled",
    "plan_changed",
    "profile_updated",
    "reactivation_failed",
    "reactivation_succeeded",
    "retention_offer_accepted",
    "session_created",
    "session_revoked",
    "signed_in",
    "signed_out",
    "signed_out_everywhere",
    "subscription_cancelled",
    "subscription_paused",
    "subscription_put_on_hold",
    "subscription_renewed",
    "subscription_resumed",
]

_signals = Namespace()

#: A dynamic link was made with :meth:`CustomerPortal.create_session`.
#: Keyword arguments: ``customer`` (:class:`~flask_customer_portal.Customer`),
#: ``session`` (:class:`~flask_customer_portal.PortalSession`).
session_created = _signals.signal("session-created")

#: A one-time link was used up. Keyword arguments: ``customer``, ``purpose``
#: (:class:`~flask_customer_portal.storage.LinkPurpose`).
link_used = _signals.signal("link-used")

#: Someone asked for a login link on the static page and the address is a
#: customer's. Keyword arguments: ``customer``. Not sent for unknown
#: addresses or over the rate limit.
login_link_requested = _signals.signal("login-link-requested")

#: A customer signed in. Keyword arguments: ``customer``, ``method``
#: (``"session_link"``, ``"login_link"``, ``"email_change"`` or ``"host_user"``).
signed_in = _signals.signal("signed-in")

#: A customer signed out. Keyword arguments: ``customer``.
signed_out = _signals.signal("signed-out")

#: The customer signed out everywhere from the portal's sessions page: every
#: portal session of theirs ended and every link sent before stopped
#: working (``signed_out`` follows, for this browser). Keyword arguments:
#: ``customer``, ``sessions`` (how many sessions were live).
signed_out_everywhere = _signals.signal("signed-out-everywhere")

#: The customer signed one of their other sessions out from the sessions
#: page. Keyword arguments: ``customer``, ``session``
#: (:class:`~flask_customer_portal.storage.PortalSessionRecord`, revoked).
session_revoked = _signals.signal("session-revoked")

#: The customer saved a new name or phone number. Keyword arguments:
#: ``customer`` (as saved), ``changed`` (a tuple of the field names that changed).
profile_updated = _signals.signal("profile-updated")

#: A signed-in customer chose the portal's language (saved on the customer,
#: also used for their emails). Keyword arguments: ``customer`` (as saved),
#: ``locale`` (the new language code), ``previous`` (the old one or ``None``).
language_changed = _signals.signal("language-changed")

#: The customer asked to change their email; a confirmation link went to the
#: new address. Keyword arguments: ``customer``, ``new_email``.
email_change_requested = _signals.signal("email-change-requested")

#: The customer confirmed a new email address; their older sessions and
#: links no longer work. Keyword arguments: ``customer`` (with the new
#: email), ``old_email``.
email_changed = _signals.signal("email-changed")

#: The customer saved their billing details (name, address, tax ID);
#: invoices issued from now on carry them. Keyword arguments: ``customer``,
#: ``billing_details`` (:class:`~flask_customer_portal.storage.BillingDetails`,
#: as saved), ``changed`` (a tuple of the field names that changed).
billing_details_updated = _signals.signal("billing-details-updated")

#: The customer added their billing details to an invoice issued without
#: any. Keyword arguments: ``customer``, ``invoice`` (with its details).
invoice_billing_details_added = _signals.signal("invoice-billing-details-added")

#: The customer cancelled a subscription, now or at the end of the period.
#: Keyword arguments: ``customer``, ``subscription`` (as saved),
#: ``at_period_end`` (bool), ``reason`` (the reason's code, or ``None`` when
#: none was given) and ``reason_text`` (the customer's comment, or ``None``).
subscription_cancelled = _signals.signal("subscription-cancelled")

#: The merchant erased a customer's personal data
#: (:meth:`CustomerPortal.erase_customer`, ``flask portal erase-customer``).
#: Keyword arguments: ``customer`` (the record as it was before, to find
#: copies elsewhere; do not store it), ``report``
#: (:class:`~flask_customer_portal.storage.ErasureReport`), ``cancelled``
#: (the subscriptions ``force`` cancelled, as saved).
customer_erased = _signals.signal("customer-erased")

#: The customer kept a subscription that was set to end at period end.
#: Keyword arguments: ``customer``, ``subscription``.
cancellation_undone = _signals.signal("cancellation-undone")

#: A subscription was paused. Keyword arguments: ``customer``,
#: ``subscription`` (as saved, ``paused``), ``resumes_at`` (aware UTC).
subscription_paused = _signals.signal("subscription-paused")

#: A paused subscription is ``active`` again. Keyword arguments:
#: ``customer``, ``subscription`` (as saved, its period moved on),
#: ``automatic`` (``True`` when ``flask portal renew-due`` resumed it at its
#: ``resumes_at``, ``False`` when the customer did).
subscription_resumed = _signals.signal("subscription-resumed")

#: The customer took a retention offer instead of cancelling. Keyword
#: arguments: ``customer``, ``subscription`` (as saved), ``offer`` (the
#: :class:`~flask_customer_portal.billing.retention.PauseOffer` or
#: :class:`~flask_customer_portal.billing.retention.DiscountOffer` applied) and
#: ``reason`` (:class:`~flask_customer_portal.billing.retention.CancellationReason`).
retention_offer_accepted = _signals.signal("retention-offer-accepted")

#: The customer saved a new payment method (on the payment-methods page or
#: while changing a subscription's). Keyword arguments: ``customer``,
#: ``payment_method`` (as saved: brand, last four, expiry, never card data).
payment_method_added = _signals.signal("payment-method-added")

#: The customer made one of their saved methods their default. Keyword
#: arguments: ``customer``, ``payment_method`` (the new default),
#: ``previous`` (the default before, or ``None``) and ``subscriptions`` (a
#: tuple of the active subscriptions the customer also moved to it, each
#: announced with ``payment_method_changed`` as well; empty if none).
default_payment_method_changed = _signals.signal("default-payment-method-changed")

#: A subscription is charged to another payment method from now on.
#: Keyword arguments: ``customer``, ``subscription``, ``payment_method``.
payment_method_changed = _signals.signal("payment-method-changed")

#: The customer removed a saved payment method. Keyword arguments:
#: ``customer``, ``payment_method``.
payment_method_removed = _signals.signal("payment-method-removed")

#: An invoice was paid (reactivation, renewal or retry). Keyword arguments:
#: ``customer``, ``invoice`` (paid), ``provider_reference``.
invoice_paid = _signals.signal("invoice-paid")

#: The payment provider reported taking another amount (or currency) than
#: the invoice's. The invoice was **not** marked paid: it stays open, its
#: attempt is recorded as ``amount_mismatch`` and the portal never charges
#: it again; someone has to look at the payment. Keyword arguments:
#: ``customer``, ``invoice`` (open), ``expected`` and ``charged``
#: (:class:`~flask_customer_portal.Money`), ``provider_reference``.
charge_amount_mismatch = _signals.signal("charge-amount-mismatch")

#: A plan change's payment turned out to have been taken after the customer
#: left, but the subscription had moved on (another period, plan or state),
#: so the change was not made: the amount paid became account credit on
#: the subscription. Keyword arguments: ``customer``, ``subscription`` (as
#: saved), ``invoice`` (the paid proration invoice), ``amount``
#: (:class:`~flask_customer_portal.Money`), ``reason``.
plan_change_credited = _signals.signal("plan-change-credited")

#: An ``on_hold`` subscription was paid up and is ``active`` again.
#: Keyword arguments: ``customer``, ``subscription``, ``invoice``.
reactivation_succeeded = _signals.signal("reactivation-succeeded")

#: A reactivation attempt did not pay the arrears; the subscription stays
#: ``on_hold``. Keyword arguments: ``customer``, ``subscription``,
#: ``invoice``, ``reason`` (a decline code or ``"failed"``, ``"pending"``,
#: ``"requires_action"``, ``"amount_mismatch"``).
reactivation_failed = _signals.signal("reactivation-failed")

#: A renewal was paid and the subscription moved to its next period.
#: Keyword arguments: ``customer``, ``subscription``, ``invoice``.
subscription_renewed = _signals.signal("subscription-renewed")

#: A renewal payment failed and the subscription is now ``on_hold``.
#: Keyword arguments: ``customer``, ``subscription``, ``invoice``, ``reason``.
subscription_put_on_hold = _signals.signal("subscription-put-on-hold")

#: The merchant emailed a customer a fresh dynamic link with
#: :meth:`CustomerPortal.send_invite`; sent after ``session_created``, once
#: the mail transport took the message. Keyword arguments: ``customer``,
#: ``session`` (:class:`~flask_customer_portal.PortalSession`).
invite_sent = _signals.signal("invite-sent")

#: The customer deactivated one activation (device) of a licence key; the
#: key's activation count went down by one. Keyword arguments: ``customer``,
#: ``license_key`` (as saved), ``instance``
#: (:class:`~flask_customer_portal.storage.LicenseKeyInstance`, deactivated).
license_key_instance_deactivated = _signals.signal("license-key-instance-deactivated")

#: A subscription moved to another plan (or quantity): now, by the
#: customer, or at the end of its period, by ``flask portal renew-due``.
#: Keyword arguments: ``customer``, ``subscription`` (as saved),
#: ``previous`` (the subscription before the change), ``invoice`` (the
#: paid proration invoice, or ``None`` when nothing was due) and ``when``
#: (``"now"`` or ``"period_end"``).
plan_changed = _signals.signal("plan-changed")

#: The customer chose a plan that takes over when the current period ends.
#: Keyword arguments: ``customer``, ``subscription`` (with
#: ``scheduled_plan_id`` and ``scheduled_quantity``), ``plan``.
plan_change_scheduled = _signals.signal("plan-change-scheduled")

#: The customer withdrew a plan change set for the period's end.
#: Keyword arguments: ``customer``, ``subscription``.
plan_change_schedule_cancelled = _signals.signal("plan-change-schedule-cancelled")

#: The portal gave up on an email: every attempt failed
#: (``CUSTOMER_PORTAL_MAIL_MAX_ATTEMPTS``), the mail server refused it for
#: good, or it expired before it could be sent. The row stays in the
#: outbox with status ``failed`` (``flask portal mail-status`` lists it).
#: Keyword arguments: ``mail`` (:class:`~flask_customer_portal.storage.OutboxMail`,
#: without its bodies), ``error`` (why, as recorded on the row: never a
#: link's token).
mail_failed = _signals.signal("mail-failed")
