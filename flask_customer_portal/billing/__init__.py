"""The portal's billing rules: every decision about a subscription or an
invoice is made here, once.

Views parse a request, call one of the verbs below and render what it
returns; ``flask portal renew-due`` calls :func:`renew_due`. Stores persist
under the subscription lock and answer queries; they do not decide.

=============================  ===================================================
Verb                           Where it is decided
=============================  ===================================================
:func:`cancel`                 :mod:`.lifecycle` (states and guards)
:func:`undo_cancellation`      :mod:`.lifecycle` (keep one that was set to end)
:func:`pause`                  :mod:`.pausing` (``may_pause``, ``pause_choices``)
:func:`unpause`                :mod:`.pausing` (end a pause)
:func:`reactivate`             :mod:`.reactivation` (pay the arrears of ``on_hold``)
:func:`change_plan`            :mod:`.plan_change` (with :mod:`.proration`)
:func:`schedule_plan_change`   :mod:`.plan_change` (at the period's end)
:func:`accept_offer`           :mod:`.retention` (stay, with the merchant's offer)
:func:`change_payment_method`  :mod:`.payment_methods` (moves no money)
:func:`renew_due`              :mod:`.renewal` (renewals, ends, resumes)
:func:`pay_invoice`            :mod:`.collect` (one invoice, exactly once)
=============================  ===================================================

Around them: :mod:`.outcomes` (what came of a payment), :mod:`.periods`
(billing periods), :mod:`.retention` (retention offers),
:mod:`.settlement` (plan-change payments whose outcome was unknown),
:mod:`.quotes` (what a plan-change preview showed),
:mod:`.arrears` (providers that bill subscriptions themselves) and
:mod:`.notify` (after a change: the signal, then the email).
"""

from __future__ import annotations

from .collect import pay_invoice
from .lifecycle import SubscriptionView, cancel, describe, rules_for, undo_cancellation
from .outcomes import PaymentOutcome
from .pausing import pause_subscription as pause
from .pausing import unpause
from .payment_methods import change_payment_method
from .plan_change import change_plan_now as change_plan
from .plan_change import schedule_plan_change
from .reactivation import amount_due
from .reactivation import reactivate_subscription as reactivate
from .renewal import renew_due
from .retention import accept_offer

__all__ = [
    "PaymentOutcome",
    "SubscriptionView",
    "accept_offer",
    "amount_due",
    "cancel",
    "change_payment_method",
    "change_plan",
    "describe",
    "pause",
    "pay_invoice",
    "reactivate",
    "renew_due",
    "rules_for",
    "schedule_plan_change",
    "undo_cancellation",
    "unpause",
]
