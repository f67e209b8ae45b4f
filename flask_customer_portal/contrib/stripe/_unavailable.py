"""Stripe not answering a page's read (see :mod:`.._unavailable`)."""

from __future__ import annotations

import stripe

from .._unavailable import reads_of

__all__ = ["stripe_read", "unanswered"]


def unanswered(error: Exception) -> bool:
    """Whether Stripe failed to answer: unreachable or timed out, asked to
    slow down (429), or failed on its side (5xx). A refusal of what the
    portal asked (``invalid_request_error``, a wrong key) is the portal's
    own mistake and stays an error."""
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if not isinstance(error, stripe.StripeError):
        return False
    return (error.http_status or 0) >= 500 or type(error) is stripe.APIError


#: Decorates the Stripe store's page reads.
stripe_read = reads_of("Stripe", unanswered)
