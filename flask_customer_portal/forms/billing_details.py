"""The billing details form: name, address, country and tax ID.

Like the profile form, every field shows back what the customer typed; the
checked record is :attr:`BillingDetailsForm.cleaned` after a successful
:meth:`~BillingDetailsForm.validate`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from babel import Locale, UnknownLocaleError
from wtforms import Field, SelectField, StringField
from wtforms.validators import ValidationError

from ..i18n import gettext as _
from ..i18n import lazy_gettext as _l
from ..storage import BillingDetails, TaxIdScheme
from ..tax_ids import (
    SCHEME_EXAMPLES,
    SCHEMES,
    InvalidTaxId,
    TaxIdProblem,
    country_codes,
    format_tax_id,
    scheme_for_country,
)
from ..tax_ids import validate_tax_id as check_tax_id
from .common import PortalForm

__all__ = ["BillingDetailsForm", "scheme_label"]

#: Column sizes of the SQLAlchemy store.
NAME_MAX_LENGTH = 200
LINE_MAX_LENGTH = 200
POSTAL_CODE_MAX_LENGTH = 20
TAX_ID_MAX_LENGTH = 40

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_POSTAL_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]*")

#: The "derive it from the country" choice of the scheme select.
FROM_COUNTRY = ""


def _scheme_or_none(value: str) -> TaxIdScheme | None:
    try:
        return TaxIdScheme(value)
    except ValueError:
        return None


def option_label(scheme: TaxIdScheme, locale: str) -> str:
    """A kind of tax ID as the form lists it: its country (or the EU) in
    ``locale`` and the name it has on an invoice."""
    rule = SCHEMES[scheme]
    try:
        country = Locale.parse(locale).territories.get(rule.country) or rule.country
    except (ValueError, UnknownLocaleError):
        country = rule.country
    # CLDR's qualifiers ("RAE de Hong Kong (China)") only lengthen a label.
    country = re.sub(r"\s*\([^)]*\)", "", country).strip() or rule.country
    return f"{country} \u00b7 {rule.short_name}"


def scheme_label(scheme: TaxIdScheme | str) -> str:
    """The name of a kind of tax ID, in the customer's language."""
    labels = {
        TaxIdScheme.EU_VAT: _("EU VAT number"),
        TaxIdScheme.ID_NPWP: _("Indonesian NPWP"),
        TaxIdScheme.GB_VAT: _("UK VAT number"),
        TaxIdScheme.AU_ABN: _("Australian ABN"),
        TaxIdScheme.CH_VAT: _("Swiss VAT number"),
        TaxIdScheme.NO_VAT: _("Norwegian VAT number"),
        TaxIdScheme.NZ_GST: _("New Zealand GST number"),
        TaxIdScheme.IN_GST: _("Indian GSTIN"),
        TaxIdScheme.SG_UEN: _("Singapore UEN"),
        TaxIdScheme.SG_GST: _("Singapore GST registration number"),
        TaxIdScheme.CA_BN: _("Canadian Business Number (BN)"),
        TaxIdScheme.US_EIN: _("US Employer Identification Number (EIN)"),
        TaxIdScheme.BR_CNPJ: _("Brazilian CNPJ"),
        TaxIdScheme.BR_CPF: _("Brazilian CPF"),
        TaxIdScheme.MX_RFC: _("Mexican RFC"),
        TaxIdScheme.JP_CN: _("Japanese Corporate Number"),
        TaxIdScheme.KR_BRN: _("South Korean Business Registration Number"),
        TaxIdScheme.ZA_VAT: _("South African VAT number"),
        TaxIdScheme.AE_TRN: _("UAE Tax Registration Number (TRN)"),
        TaxIdScheme.SA_VAT: _("Saudi VAT number"),
        TaxIdScheme.TR_TIN: _("Turkish tax number (VKN)"),
        TaxIdScheme.CL_TIN: _("Chilean RUT"),
        TaxIdScheme.CO_NIT: _("Colombian NIT"),
        TaxIdScheme.AR_CUIT: _("Argentinian CUIT"),
        TaxIdScheme.IS_VAT: _("Icelandic VAT number (VSK)"),
        TaxIdScheme.RU_INN: _("Russian INN"),
        TaxIdScheme.TW_VAT: _("Taiwanese VAT number (UBN)"),
        TaxIdScheme.IL_VAT: _("Israeli VAT number"),
        TaxIdScheme.TH_VAT: _("Thai tax ID"),
        TaxIdScheme.PE_RUC: _("Peruvian RUC"),
        TaxIdScheme.HK_BR: _("Hong Kong Business Registration number"),
    }
    return labels[TaxIdScheme(scheme)]


class _Text(StringField):
    """Shows back what was typed, without control characters (a NUL byte
    has no business in an HTML attribute)."""

    def _value(self) -> str:
        text = "" if self.data is None else str(self.data)
        return "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs"))


def _clean_text(value: str | None, *, max_length: int, required_message: str | None) -> str | None:
    """``value`` trimmed and NFC-normalised, ``None`` when empty and optional."""
    text = unicodedata.normalize("NFC", value or "").strip()
    if not text:
        if required_message is not None:
            raise ValidationError(required_message)
        return None
    if len(text) > max_length:
        raise ValidationError(_("This can be at most %(max)d characters long.", max=max_length))
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c in _BIDI_CONTROLS for c in text):
        raise ValidationError(_("Remove the invisible control characters."))
    return text


class BillingDetailsForm(PortalForm):
    """Fields of :class:`~flask_customer_portal.storage.BillingDetails`;
    ``locale`` names the countries in the list."""

    name = _Text(
        _l("Name or company name"),
        render_kw={"autocomplete": "organization", "required": True, "maxlength": NAME_MAX_LENGTH},
    )
    line1 = _Text(
        _l("Street address"),
        render_kw={"autocomplete": "address-line1", "required": True, "maxlength": LINE_MAX_LENGTH},
    )
    line2 = _Text(
        _l("Address line 2"),
        render_kw={"autocomplete": "address-line2", "maxlength": LINE_MAX_LENGTH},
    )
    city = _Text(
        _l("City"),
        render_kw={"autocomplete": "address-level2", "required": True, "maxlength": LINE_MAX_LENGTH},
    )
    region = _Text(
        _l("State, province or region"),
        render_kw={"autocomplete": "address-level1", "maxlength": LINE_MAX_LENGTH},
    )
    postal_code = _Text(
        _l("Postal code"),
        render_kw={"autocomplete": "postal-code", "maxlength": POSTAL_CODE_MAX_LENGTH},
    )
    country = SelectField(_l("Country"), choices=[], validate_choice=False, render_kw={"required": True})
    tax_id_scheme = SelectField(_l("Kind of tax ID"), choices=[], validate_choice=False)
    tax_id = _Text(
        _l("Tax ID"),
        render_kw={"autocapitalize": "characters", "spellcheck": "false", "maxlength": TAX_ID_MAX_LENGTH},
    )

    def __init__(self, *args: Any, locale: str = "en", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        countries = country_codes(locale)
        self._country_codes = frozenset(code for code, _name in countries)
        self.country.choices = [("", _("Choose a country")), *countries]
        # "Country · short name" ("United States · EIN"): short enough for
        # the closed list to fit a phone, and found by the customer's own
        # country; the chosen kind's example is the tax ID field's hint
        # (tax_id_example), its full name the error messages'.
        kinds = sorted(
            ((scheme.value, option_label(scheme, locale)) for scheme in TaxIdScheme),
            key=lambda choice: choice[1].casefold(),
        )
        self.tax_id_scheme.choices = [(FROM_COUNTRY, _("The usual one of the country")), *kinds]
        self._cleaned: BillingDetails | None = None

    def tax_id_example(self) -> str | None:
        """A valid number of the chosen kind (or of the country's usual one),
        to show how it is written."""
        chosen = self.tax_id_scheme.data or FROM_COUNTRY
        scheme = scheme_for_country(self.country.data) if chosen == FROM_COUNTRY else _scheme_or_none(chosen)
        return None if scheme is None else SCHEME_EXAMPLES[scheme]

    def country_examples(self) -> dict[str, str]:
        """An example number of each offered country's usual kind of tax ID."""
        schemes = ((code, scheme_for_country(code)) for code in sorted(self._country_codes))
        return {code: SCHEME_EXAMPLES[scheme] for code, scheme in schemes if scheme is not None}

    @classmethod
    def data_of(cls, details: BillingDetails | None) -> dict[str, str]:
        """Field values that show ``details`` (the tax ID formatted)."""
        if details is None:
            return {}
        scheme = details.tax_id_scheme
        return {
            "name": details.name,
            "line1": details.line1,
            "line2": details.line2 or "",
            "city": details.city or "",
            "region": details.region or "",
            "postal_code": details.postal_code or "",
            "country": details.country,
            "tax_id_scheme": FROM_COUNTRY if scheme is None else TaxIdScheme(scheme).value,
            "tax_id": ""
            if not details.tax_id or scheme is None
            else format_tax_id(TaxIdScheme(scheme), details.tax_id),
        }

    def validate_name(self, field: Field) -> None:
        _clean_text(field.data, max_length=NAME_MAX_LENGTH, required_message=_("Enter the name to bill."))

    def validate_line1(self, field: Field) -> None:
        _clean_text(field.data, max_length=LINE_MAX_LENGTH, required_message=_("Enter the street address."))

    def validate_line2(self, field: Field) -> None:
        _clean_text(field.data, max_length=LINE_MAX_LENGTH, required_message=None)

    def validate_city(self, field: Field) -> None:
        _clean_text(field.data, max_length=LINE_MAX_LENGTH, required_message=_("Enter the city."))

    def validate_region(self, field: Field) -> None:
        _clean_text(field.data, max_length=LINE_MAX_LENGTH, required_message=None)

    def validate_postal_code(self, field: Field) -> None:
        text = _clean_text(field.data, max_length=POSTAL_CODE_MAX_LENGTH, required_message=None)
        if text is not None and not _POSTAL_CODE.fullmatch(text):
            raise ValidationError(_("Enter a valid postal code: letters, digits, spaces and hyphens."))

    def validate_country(self, field: Field) -> None:
        if not field.data:
            raise ValidationError(_("Choose a country."))
        if field.data not in self._country_codes:
            raise ValidationError(_("Choose a country from the list."))

    def validate_tax_id(self, field: Field) -> None:
        # Length and characters first, with the other fields' messages;
        # the number itself is checked against its scheme in validate().
        _clean_text(field.data, max_length=TAX_ID_MAX_LENGTH, required_message=None)

    def validate_tax_id_scheme(self, field: Field) -> None:
        if field.data and field.data not in {scheme.value for scheme in TaxIdScheme}:
            raise ValidationError(_("Choose a kind of tax ID from the list."))

    def validate(self, extra_validators: Any = None) -> bool:
        if not super().validate(extra_validators):
            return False
        country = str(self.country.data)
        scheme: TaxIdScheme | None = None
        tax_id: str | None = None
        raw_tax_id = _clean_text(self.tax_id.data, max_length=TAX_ID_MAX_LENGTH, required_message=None)
        if raw_tax_id is not None:
            chosen = self.tax_id_scheme.data
            scheme = TaxIdScheme(chosen) if chosen else scheme_for_country(country)
            if scheme is None:
                self.tax_id_scheme.errors = [_("Choose which kind of tax ID this is.")]
                return False
            try:
                tax_id = check_tax_id(scheme, raw_tax_id, country=country)
            except InvalidTaxId as exc:
                self.tax_id.errors = [_tax_id_message(exc)]
                return False

        def text(field: Field) -> str | None:
            return unicodedata.normalize("NFC", field.data or "").strip() or None

        self._cleaned = BillingDetails(
            name=text(self.name) or "",
            line1=text(self.line1) or "",
            line2=text(self.line2),
            city=text(self.city),
            region=text(self.region),
            postal_code=text(self.postal_code),
            country=country,
            tax_id=tax_id,
            tax_id_scheme=scheme,
        )
        return True

    @property
    def cleaned(self) -> BillingDetails:
        """The checked details (without ``updated_at``); only after a successful ``validate()``."""
        if self._cleaned is None or self.errors:
            raise RuntimeError("the billing details form has not been validated successfully")
        return self._cleaned


def _tax_id_message(error: InvalidTaxId) -> str:
    name, example = scheme_label(error.scheme), SCHEME_EXAMPLES[error.scheme]
    if error.problem is TaxIdProblem.CHECKSUM:
        return _("This %(scheme)s is not valid. Check it for typing mistakes.", scheme=name)
    return _("Enter a valid %(scheme)s, like %(example)s.", scheme=name, example=example)
