"""The forms every area shares: the base form (CSRF always on, whatever
``WTF_CSRF_ENABLED`` says for the host's own forms), sign-in and one-button
confirmations."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, Field, Form
from wtforms.validators import DataRequired, Length, ValidationError

from ..i18n import lazy_gettext as _l

__all__ = ["ConfirmForm", "LoginForm", "OpenLinkForm", "PortalForm", "normalize_email"]


def normalize_email(value: str) -> str:
    """A syntactically valid address, normalised (domain lower-cased,
    unicode NFC). Raises :class:`ValueError` with a message for people."""
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


class PortalForm(FlaskForm):
    """The base of the portal's forms, and of a host's own pages that sit
    beside the portal: CSRF is always on, whatever ``WTF_CSRF_ENABLED``
    says for the rest of the app."""

    class Meta:
        csrf = True

    @property
    def csrf_failed(self) -> bool:
        """Whether the form was refused for its CSRF token (a stale page)."""
        field = getattr(self, "csrf_token", None)
        return bool(field is not None and field.errors)


class EmailAddress:
    """Validates with email-validator and replaces the data with the
    normalised address."""

    def __call__(self, form: Form, field: Field) -> None:
        try:
            field.data = normalize_email((field.data or "").strip())
        except ValueError:
            raise ValidationError(str(_l("Enter a valid email address, like name@example.com."))) from None


class LoginForm(PortalForm):
    email = EmailField(
        _l("Email address"),
        validators=[
            DataRequired(message=_l("Enter the email address you used when you bought.")),
            Length(max=254, message=_l("That email address is too long.")),
            EmailAddress(),
        ],
        render_kw={
            "autocomplete": "email",
            "inputmode": "email",
            "autocapitalize": "off",
            "spellcheck": "false",
        },
    )


class ConfirmForm(PortalForm):
    """A form with only a CSRF token: one button that confirms an action."""


class OpenLinkForm(PortalForm):
    """The button of a link's page. ``switch_account`` is the customer's
    explicit "yes": sent only by the button shown when another customer is
    signed in in this browser, it lets the link replace that session."""

    switch_account = BooleanField()
