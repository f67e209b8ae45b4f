"""Exceptions raised by the portal to the merchant's code."""

from __future__ import annotations

from werkzeug.exceptions import ServiceUnavailable

__all__ = [
    "ConfigurationError",
    "CustomerNotFound",
    "PortalError",
    "ProviderUnavailable",
    "SubscriptionNotFound",
]


class PortalError(Exception):
    """Base class of every exception the portal raises on purpose."""


class ConfigurationError(PortalError, RuntimeError):
    """The portal cannot start with this configuration.

    The message names the configuration key and says what to set, so that a
    mistake is caught when the app starts, not as a 500 at 3 a.m.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class CustomerNotFound(PortalError, LookupError):
    """No customer with this id exists in the portal's storage."""

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        super().__init__(f"no customer with id {customer_id!r}")


class SubscriptionNotFound(PortalError, LookupError):
    """The subscription does not exist or is not this customer's."""


class ProviderUnavailable(PortalError, ServiceUnavailable):
    """The payment company did not answer a page's read: it could not be
    reached, timed out, answered with a server error or asked the portal to
    slow down.

    Raised by the Stripe and Dodo Payments stores for reads made for a page
    (a ``GET`` or ``HEAD`` request) only, so nothing can have changed; the
    portal answers it with its error page, HTTP 503 and ``Retry-After``.
    Writes and payments keep their own errors. ``provider`` is the company's
    name as the customer knows it (``"Stripe"``, ``"Dodo Payments"``).
    """

    #: Seconds the customer is asked to wait (the ``Retry-After`` header).
    RETRY_AFTER = 60

    def __init__(self, provider: str) -> None:
        self.provider = provider
        super().__init__(f"{provider} did not answer", retry_after=self.RETRY_AFTER)
