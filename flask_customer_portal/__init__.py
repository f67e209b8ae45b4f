"""flask-customer-portal: a self-hosted customer portal for Flask apps."""

from __future__ import annotations

from .auth import PortalSession, current_customer
from .errors import ConfigurationError, CustomerNotFound, PortalError
from .extension import CustomerPortal
from .mail import LogMailer, Mailer, Message, SMTPMailer
from .money import Money, format_money
from .payments import PaymentProvider, TestPaymentProvider
from .rules import CustomerRules
from .storage import (
    Customer,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LicenseKey,
    LicenseKeyStatus,
    Page,
    PaymentMethod,
    Plan,
    PortalStorage,
    Subscription,
    SubscriptionStatus,
)

__all__ = [
    "ConfigurationError",
    "Customer",
    "CustomerNotFound",
    "CustomerPortal",
    "CustomerRules",
    "Invoice",
    "InvoiceLine",
    "InvoiceStatus",
    "LicenseKey",
    "LicenseKeyStatus",
    "LogMailer",
    "Mailer",
    "Message",
    "Money",
    "Page",
    "PaymentMethod",
    "PaymentProvider",
    "Plan",
    "PortalError",
    "PortalSession",
    "PortalStorage",
    "SMTPMailer",
    "Subscription",
    "SubscriptionStatus",
    "TestPaymentProvider",
    "current_customer",
    "format_money",
]

__version__ = "0.2.0.dev0"
