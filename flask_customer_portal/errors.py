"""Exceptions raised by the portal to the merchant's code."""

from __future__ import annotations

__all__ = ["ConfigurationError", "CustomerNotFound", "PortalError", "SubscriptionNotFound"]


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
