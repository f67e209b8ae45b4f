"""Signed, purpose-salted, one-time links.

A link carries a signed token (itsdangerous) whose payload binds it to one
customer, the portal's mode and business, the customer's current email and
auth version, and a random token id. The database keeps only a hash of the
token id (:class:`~flask_customer_portal.storage.LinkRecord`), so a link
works once, dies with a logout-everywhere or an email change, and a leaked
database holds no usable link.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .storage import Customer, LinkPurpose

__all__ = ["LinkProblem", "LinkSigner", "LinkTokenError", "TokenPayload", "hash_token_id"]

_SALTS = {
    LinkPurpose.SESSION_LINK: "flask-customer-portal.session-link",
    LinkPurpose.LOGIN_LINK: "flask-customer-portal.login-link",
    LinkPurpose.EMAIL_CHANGE: "flask-customer-portal.email-change",
}


class LinkProblem(str, enum.Enum):
    """Why a link cannot be used; each gets its own page."""

    EXPIRED = "expired"
    USED = "used"
    INVALID = "invalid"
    WRONG_MODE = "wrong_mode"

    def __str__(self) -> str:
        return self.value


class LinkTokenError(Exception):
    def __init__(self, problem: LinkProblem) -> None:
        self.problem = problem
        super().__init__(problem.value)


@dataclass(frozen=True, slots=True)
class TokenPayload:
    customer_id: str
    token_id: str
    email_fingerprint: str
    auth_version: int
    return_url: str | None = None
    new_email: str | None = None
    flow: str | None = None
    """The deep-link flow the link lands on (``None``: the overview)."""
    subscription_id: str | None = None
    """The subscription the flow is about."""


def hash_token_id(token_id: str) -> str:
    """What the database stores instead of the token id."""
    return hashlib.sha256(token_id.encode()).hexdigest()


class LinkSigner:
    """Makes and checks link tokens for one app.

    ``secret_keys`` is ``SECRET_KEY_FALLBACKS`` followed by ``SECRET_KEY``:
    tokens are signed with the last key and accepted with any of them, so a
    key can be rotated without killing links already sent.
    """

    def __init__(self, secret_keys: Sequence[str | bytes], *, mode: str, business_id: str) -> None:
        self._keys = list(secret_keys)
        self._mode = mode
        self._business_id = business_id
        self._serializers = {
            purpose: URLSafeTimedSerializer(cast("list[str]", self._keys), salt=salt)
            for purpose, salt in _SALTS.items()
        }

    @staticmethod
    def email_fingerprint(email: str) -> str:
        """A hash of the address: binds a token to the current email without
        putting the address itself in the URL. Not keyed, so it survives a
        key rotation; whoever holds the link can sign in and see the address
        anyway, so the hash reveals nothing more."""
        digest = hashlib.sha256(b"flask-customer-portal.email\0" + email.casefold().encode())
        return digest.hexdigest()[:24]

    def make(
        self,
        purpose: LinkPurpose,
        customer: Customer,
        *,
        return_url: str | None = None,
        new_email: str | None = None,
        flow: str | None = None,
        subscription_id: str | None = None,
    ) -> tuple[str, str]:
        """A fresh ``(token, token_id)`` for ``customer``."""
        token_id = secrets.token_urlsafe(18)
        data: dict[str, object] = {
            "c": customer.id,
            "j": token_id,
            "m": self._mode,
            "b": self._business_id,
            "e": self.email_fingerprint(customer.email),
            "v": customer.auth_version,
        }
        if return_url:
            data["r"] = return_url
        if new_email:
            data["n"] = new_email
        if flow:
            data["f"] = flow
        if subscription_id:
            data["s"] = subscription_id
        token = self._serializers[purpose].dumps(data)
        return str(token), token_id

    def read(self, purpose: LinkPurpose, token: str, *, max_age: int) -> TokenPayload:
        """Check signature, purpose, age, mode and business of ``token``.

        Whether the link was used and whether it still matches the
        customer are checked by the caller against the database.
        """
        serializer = self._serializers[purpose]
        if len(token) > 2048:
            raise LinkTokenError(LinkProblem.INVALID)
        expired = False
        try:
            data = serializer.loads(token, max_age=max_age)
        except SignatureExpired as exc:
            # The signature is good, only the age is not: still check that the
            # token is ours before telling the visitor it merely expired.
            expired = True
            try:
                data = serializer.load_payload(exc.payload) if exc.payload is not None else None
            except BadSignature:
                data = None
        except BadSignature:
            raise LinkTokenError(LinkProblem.INVALID) from None
        if not isinstance(data, dict) or data.get("b") != self._business_id:
            raise LinkTokenError(LinkProblem.INVALID)
        if data.get("m") != self._mode:
            raise LinkTokenError(LinkProblem.WRONG_MODE)
        if expired:
            raise LinkTokenError(LinkProblem.EXPIRED)
        try:
            return TokenPayload(
                customer_id=str(data["c"]),
                token_id=str(data["j"]),
                email_fingerprint=str(data["e"]),
                auth_version=int(data["v"]),
                return_url=str(data["r"]) if data.get("r") else None,
                new_email=str(data["n"]) if data.get("n") else None,
                flow=str(data["f"]) if data.get("f") else None,
                subscription_id=str(data["s"]) if data.get("s") else None,
            )
        except (KeyError, TypeError, ValueError):
            raise LinkTokenError(LinkProblem.INVALID) from None
