"""The profile form: name, email and phone, checked and normalised.

Each field keeps what the customer typed (so a form sent back with an error
shows their input, not ours); the cleaned values are on
:attr:`ProfileForm.cleaned` after :meth:`~ProfileForm.validate` succeeds.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers
from wtforms import EmailField, Field, StringField, TelField
from wtforms.validators import ValidationError

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from .common import PortalForm, normalize_email

__all__ = [
    "EMAIL_MAX_LENGTH",
    "NAME_MAX_LENGTH",
    "PHONE_MAX_LENGTH",
    "CleanedProfile",
    "ProfileError",
    "ProfileForm",
    "clean_name",
    "clean_phone",
    "example_phone_number",
    "format_phone",
]

#: The longest name a customer may save (the SQLAlchemy store's column size).
NAME_MAX_LENGTH = 200
#: RFC 5321 limits a forward path to 256 octets, an address to 254.
EMAIL_MAX_LENGTH = 254
#: Generous for any formatting of a 15-digit E.164 number.
PHONE_MAX_LENGTH = 40

#: Bidirectional embedding, override and isolate controls: they make a
#: name display as something else (in emails, in the merchant's back office).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Characters people use to write phone numbers; phonenumbers would
#: otherwise pick a number out of any text.
_PHONE_CHARACTERS = re.compile(r"[+\d\s().\-/]*")


class ProfileError(ValueError):
    """A value the customer must correct; ``str()`` is the message."""


def clean_name(value: str) -> str:
    """``value`` trimmed and NFC-normalised. Raises :class:`ProfileError`."""
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise ProfileError(_("Enter your name."))
    if len(name) > NAME_MAX_LENGTH:
        raise ProfileError(_("Your name can be at most %(max)d characters long.", max=NAME_MAX_LENGTH))
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI_CONTROLS for c in name):
        raise ProfileError(_("Remove the invisible control characters from your name."))
    if "<" in name or ">" in name:
        raise ProfileError(_("Your name cannot contain the characters < or >."))
    return name


def example_phone_number(region: str | None) -> str:
    """A mobile number of ``region`` (else the United States) in
    international format, to show how a number may be written."""
    example = phonenumbers.example_number_for_type(region or "US", phonenumbers.PhoneNumberType.MOBILE)
    if example is None:  # pragma: no cover - phonenumbers has an example for every region it knows
        return "+1 201-555-0123"
    return str(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


def format_phone(e164: str | None) -> str:
    """A saved E.164 number the way people read it (``+62 812-3456-7890``)."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


def clean_phone(value: str, *, region: str | None, current: str | None = None) -> str | None:
    """``value`` as E.164, or ``None`` when it is empty.

    A number without ``+`` is read as a number of ``region``. The saved
    number ``current`` is always accepted back unchanged, even if the
    numbering plan has changed since it was saved. Raises :class:`ProfileError`.
    """
    raw = value.strip()
    if not raw:
        return None
    invalid = ProfileError(
        _("Enter a valid phone number, like %(example)s.", example=example_phone_number(region))
    )
    if len(raw) > PHONE_MAX_LENGTH:
        raise ProfileError(_("That phone number is too long."))
    if not _PHONE_CHARACTERS.fullmatch(raw):
        raise invalid
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise invalid from None
    e164 = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    if current is not None and e164 == current:
        return current
    if not phonenumbers.is_valid_number(number):
        raise invalid
    return e164


@dataclass(frozen=True, slots=True)
class CleanedProfile:
    name: str
    email: str
    """Normalised with email-validator (domain lower-cased, NFC)."""
    phone: str | None
    """E.164 or ``None``."""


def _stripped_of_controls(value: object) -> str:
    """What a field shows back: the customer's input without control
    characters (a NUL byte has no business in an HTML attribute)."""
    text = "" if value is None else str(value)
    return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs"))


class _ShowBackStringField(StringField):
    def _value(self) -> str:
        return _stripped_of_controls(self.data)


class _ShowBackEmailField(EmailField):
    def _value(self) -> str:
        return _stripped_of_controls(self.data)


class _ShowBackTelField(TelField):
    def _value(self) -> str:
        return _stripped_of_controls(self.data)


class ProfileForm(PortalForm):
    """``name``, ``email`` and ``phone`` (plus ``csrf_token``).

    ``phone_region`` is the region of numbers typed without ``+``;
    ``current_phone`` is the saved number, accepted back as it is.
    """

    name = _ShowBackStringField(
        _l("Name"),
        render_kw={"autocomplete": "name", "required": True, "maxlength": NAME_MAX_LENGTH},
    )
    email = _ShowBackEmailField(
        _l("Email address"),
        render_kw={
            "autocomplete": "email",
            "inputmode": "email",
            "autocapitalize": "off",
            "spellcheck": "false",
            "required": True,
            "maxlength": EMAIL_MAX_LENGTH,
        },
    )
    phone = _ShowBackTelField(
        _l("Phone number"),
        render_kw={"autocomplete": "tel", "inputmode": "tel", "maxlength": PHONE_MAX_LENGTH},
    )

    def __init__(
        self,
        *args: object,
        phone_region: str | None = None,
        current_phone: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.phone_region = phone_region
        self.current_phone = current_phone
        self._name: str | None = None
        self._email: str | None = None
        self._phone: str | None = None

    def validate_name(self, field: Field) -> None:
        try:
            self._name = clean_name(field.data or "")
        except ProfileError as exc:
            raise ValidationError(str(exc)) from None

    def validate_email(self, field: Field) -> None:
        raw = (field.data or "").strip()
        if not raw:
            raise ValidationError(_("Enter your email address."))
        if len(raw) > EMAIL_MAX_LENGTH:
            raise ValidationError(_("That email address is too long."))
        try:
            self._email = normalize_email(raw)
        except ValueError:
            raise ValidationError(_("Enter a valid email address, like name@example.com.")) from None

    def validate_phone(self, field: Field) -> None:
        if not field.raw_data:
            # Not sent at all (only a hand-made request does that): keep the
            # saved number rather than erase it.
            self._phone = self.current_phone
            return
        try:
            self._phone = clean_phone(field.data or "", region=self.phone_region, current=self.current_phone)
        except ProfileError as exc:
            raise ValidationError(str(exc)) from None

    @property
    def cleaned(self) -> CleanedProfile:
        """The normalised values; only after a successful ``validate()``."""
        if self._name is None or self._email is None or self.errors:
            raise RuntimeError("the profile form has not been validated successfully")
        return CleanedProfile(name=self._name, email=self._email, phone=self._phone)
