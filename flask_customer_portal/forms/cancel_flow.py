"""Forms of the cancellation flow and of pausing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from wtforms import Field, RadioField, StringField, TextAreaField
from wtforms.validators import ValidationError

from ..i18n import lazy_gettext as _l
from ..i18n import ngettext
from ..offers import REASON_TEXT_MAX_LENGTH, CancellationReason, clean_reason_text
from .common import PortalForm

__all__ = ["CancellationReasonForm", "PauseForm"]

#: A number of months as typed: ASCII digits, few enough for ``int()``
#: (which refuses more than 4,300 digits).
_MONTHS = re.compile(r"[0-9]{1,9}")


class CancellationReasonForm(PortalForm):
    """Why the customer cancels. ``reason`` is required in the flow
    (``require_reason``) and optional on the final confirmation, which older
    integrations post without one."""

    reason = RadioField(_l("Why are you cancelling?"), choices=[], validate_choice=False)
    reason_text = TextAreaField(
        _l("Anything else you would like to tell us? (optional)"),
        filters=[clean_reason_text],
        render_kw={"rows": 4, "maxlength": REASON_TEXT_MAX_LENGTH},
    )

    def __init__(
        self, *args: Any, reasons: Sequence[tuple[str, str]], require_reason: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.reason.choices = list(reasons)
        self.labels = dict(reasons)
        self.require_reason = require_reason

    def validate_reason(self, field: Field) -> None:
        if not field.data:
            if self.require_reason:
                raise ValidationError(str(_l("Choose the reason that fits best.")))
            return
        if field.data not in self.labels:
            raise ValidationError(str(_l("Choose one of the reasons in the list.")))

    def validate_reason_text(self, field: Field) -> None:
        if field.data and len(field.data) > REASON_TEXT_MAX_LENGTH:
            raise ValidationError(
                ngettext(
                    "Keep it to %(num)d character or fewer.",
                    "Keep it to %(num)d characters or fewer.",
                    REASON_TEXT_MAX_LENGTH,
                )
            )
        if field.data and not self.reason.data:
            raise ValidationError(str(_l("Choose a reason to go with your comment.")))

    @property
    def has_input(self) -> bool:
        """Whether the customer sent a reason or a comment at all."""
        return bool(self.reason.data or self.reason_text.data)

    def cancellation_reason(self) -> CancellationReason | None:
        """The validated reason, or ``None`` when none was given."""
        code = self.reason.data
        if not code:
            return None
        return CancellationReason(code=code, label=self.labels[code], text=self.reason_text.data or None)


class PauseForm(PortalForm):
    months = StringField(_l("Pause for"))

    def __init__(self, *args: Any, max_months: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_months = max_months
        self.months_value = 0
        """The validated number of months."""

    def validate_months(self, field: Field) -> None:
        value = (field.data or "").strip()
        if _MONTHS.fullmatch(value) and 1 <= int(value) <= self.max_months:
            self.months_value = int(value)
            return
        raise ValidationError(
            ngettext(
                "Choose a pause of 1 to %(num)d month.",
                "Choose a pause of 1 to %(num)d months.",
                self.max_months,
            )
        )
