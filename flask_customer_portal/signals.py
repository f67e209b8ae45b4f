"""Signals the portal sends, so the merchant's code can react.

Every signal is sent with the Flask app as sender
(``current_app._get_current_object()``) and keyword arguments as listed.
Connect with ``session_created.connect_via(app)`` to listen to one app only.
"""

from __future__ import annotations

from blinker import Namespace

__all__ = [
    "cancellation_undone",
    "email_change_requested",
    "email_changed",
    "invite_sent",
    "invoice_paid",
    "link_used",
    "login_link_requested",
    "payment_method_changed",
    "payment_method_removed",
    "profile_updated",
    "reactivation_failed",
    "reactivation_succeeded",
    "session_created",
    "signed_in",
    "signed_out",
    "subscription_cancelled",
    "subscription_put_on_hold",
    "subscription_renewed",
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

#: The customer saved a new name or phone number. Keyword arguments:
#: ``customer`` (as saved), ``changed`` (a tuple of the field names that changed).
profile_updated = _signals.signal("profile-updated")

#: The customer asked to change their email; a confirmation link went to the
#: new address. Keyword arguments: ``customer``, ``new_email``.
email_change_requested = _signals.signal("email-change-requested")

#: The customer confirmed a new email address; their older sessions and
#: links no longer work. Keyword arguments: ``customer`` (with the new
#: email), ``old_email``.
email_changed = _signals.signal("email-changed")

#: The customer cancelled a subscription, now or at the end of the period.
#: Keyword arguments: ``customer``, ``subscription`` (as saved),
#: ``at_period_end`` (bool).
subscription_cancelled = _signals.signal("subscription-cancelled")

#: The customer kept a subscription that was set to end at period end.
#: Keyword arguments: ``customer``, ``subscription``.
cancellation_undone = _signals.signal("cancellation-undone")

#: A subscription is charged to another payment method from now on.
#: Keyword arguments: ``customer``, ``subscription``, ``payment_method``.
payment_method_changed = _signals.signal("payment-method-changed")

#: The customer removed a saved payment method. Keyword arguments:
#: ``customer``, ``payment_method``.
payment_method_removed = _signals.signal("payment-method-removed")

#: An invoice was paid (reactivation, renewal or retry). Keyword arguments:
#: ``customer``, ``invoice`` (paid), ``provider_reference``.
invoice_paid = _signals.signal("invoice-paid")

#: An ``on_hold`` subscription was paid up and is ``active`` again.
#: Keyword arguments: ``customer``, ``subscription``, ``invoice``.
reactivation_succeeded = _signals.signal("reactivation-succeeded")

#: A reactivation attempt did not pay the arrears; the subscription stays
#: ``on_hold``. Keyword arguments: ``customer``, ``subscription``,
#: ``invoice``, ``reason`` (a decline code or ``"failed"``, ``"pending"``,
#: ``"requires_action"``).
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
