"""flask-customer-portal: a self-hosted customer portal for Flask apps.

The names here are the public API, everything a host app needs (the demo
shop in ``example_app/`` uses nothing else). The optional back ends live in
:mod:`flask_customer_portal.contrib` and the schema migrations in
:mod:`flask_customer_portal.migrations`.
"""

from __future__ import annotations

from .auth import PortalSession, current_customer
from .billing.periods import add_months
from .clock import utcnow
from .config import PortalConfig
from .errors import ConfigurationError, CustomerNotFound, PortalError, ProviderUnavailable
from .extension import CustomerPortal
from .forms import PortalForm
from .mail import LogMailer, MailDeliveryError, Mailer, Message, SMTPMailer
from .money import Money, format_money
from .offers import CancellationReason, DiscountOffer, PauseOffer, PlanOffer, RetentionOffer
from .payments import DeclineReason, PaymentProvider, TestPaymentProvider
from .production import schema_problems
from .ratelimit import client_ip
from .rules import CustomerRules
from .storage import (
    BillingDetails,
    CreditNote,
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LicenseKey,
    LicenseKeyInstance,
    LicenseKeyStatus,
    Page,
    PaymentMethod,
    Plan,
    PortalStorage,
    Subscription,
    SubscriptionStatus,
    TaxIdScheme,
)

__all__ = [
    "BillingDetails",
    "CancellationReason",
    "ConfigurationError",
    "CreditNote",
    "Customer",
    "CustomerNotFound",
    "CustomerPortal",
    "CustomerRules",
    "DeclineReason",
    "DiscountOffer",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "LicenseKey",
    "LicenseKeyInstance",
    "LicenseKeyStatus",
    "LogMailer",
    "MailDeliveryError",
    "Mailer",
    "Message",
    "Money",
    "Page",
    "PauseOffer",
    "PaymentMethod",
    "PaymentProvider",
    "Plan",
    "PlanOffer",
    "PortalConfig",
    "PortalError",
    "PortalForm",
    "PortalSession",
    "PortalStorage",
    "ProviderUnavailable",
    "RetentionOffer",
    "SMTPMailer",
    "Subscription",
    "SubscriptionStatus",
    "TaxIdScheme",
    "TestPaymentProvider",
    "add_months",
    "client_ip",
    "current_customer",
    "format_money",
    "schema_problems",
    "utcnow",
]

__version__ = "0.2.0.dev0"
