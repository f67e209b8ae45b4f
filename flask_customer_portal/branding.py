"""The merchant's brand without a template override: a logo, an accent
colour and the colour scheme (light, dark or the visitor's preference),
read from ``CUSTOMER_PORTAL_BRAND_*`` and checked once at start-up.

The accent colour is text (links, the current navigation item) and the
background of primary buttons, so it must reach the WCAG AA contrast for
text, 4.5:1, on every background it appears on in each theme the portal
shows. A colour that passes on a light background fails on a dark one
(and the other way round), so the dark theme has an accent of its own."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = [
    "BRAND_DEFAULTS",
    "COLOR_SCHEMES",
    "DARK",
    "LIGHT",
    "MIN_TEXT_CONTRAST",
    "Brand",
    "Theme",
    "contrast_ratio",
    "load_brand",
]

BRAND_DEFAULTS: dict[str, Any] = {
    "CUSTOMER_PORTAL_BRAND_LOGO_URL": None,
    "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR": None,
    "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR_DARK": None,
    "CUSTOMER_PORTAL_BRAND_COLOR_SCHEME": "auto",
}

COLOR_SCHEMES = ("auto", "light", "dark")
#: WCAG 2.x success criterion 1.4.3 (AA), normal-size text.
MIN_TEXT_CONTRAST = 4.5

_HEX_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


@dataclass(frozen=True, slots=True)
class Theme:
    """The colours of one theme that the accent is drawn on or under (the
    same values as in ``portal.css`` and ``portal-dark.css``)."""

    name: str
    backgrounds: tuple[tuple[str, str], ...]
    """``(what, colour)`` of every background the accent is text on."""
    default_accent: str
    accent_text: str
    """The text colour on a button filled with the accent."""


LIGHT = Theme(
    name="light",
    backgrounds=(("page", "#f4f5f7"), ("panel", "#ffffff"), ("attention panel", "#fff4e5")),
    default_accent="#0b57d0",
    accent_text="#ffffff",
)
DARK = Theme(
    name="dark",
    backgrounds=(("page", "#0d1117"), ("panel", "#161b22"), ("attention panel", "#2b2111")),
    default_accent="#6cb6ff",
    accent_text="#0d1117",
)


def _channels(color: str) -> tuple[int, int, int]:
    digits = color[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _luminance(color: str) -> float:
    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _channels(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """The WCAG contrast ratio of two ``#rrggbb`` (or ``#rgb``) colours,
    from 1 to 21."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@dataclass(frozen=True, slots=True)
class Brand:
    """The checked ``CUSTOMER_PORTAL_BRAND_*`` settings."""

    logo_url: str | None = None
    """Shown in the header instead of the merchant's name (which becomes
    its ``alt`` text)."""
    accent_color: str | None = None
    """The light theme's accent, ``#rrggbb``; ``None``: the portal's."""
    accent_color_dark: str | None = None
    """The dark theme's accent; ``None``: the portal's."""
    color_scheme: str = "auto"
    """``"auto"`` (the visitor's ``prefers-color-scheme``), ``"light"`` or ``"dark"``."""

    @property
    def themes(self) -> tuple[Theme, ...]:
        """The themes a visitor can see."""
        return {"auto": (LIGHT, DARK), "light": (LIGHT,), "dark": (DARK,)}[self.color_scheme]

    @property
    def css(self) -> str:
        """The custom properties that put the configured accents in place,
        for an inline ``<style>`` after the portal's stylesheets; ``""``
        when no accent is configured."""
        shown_light = self.accent_color and self.color_scheme != "dark"
        light = f":root{{--portal-accent:{self.accent_color}}}" if shown_light else ""
        if not self.accent_color_dark or self.color_scheme == "light":
            return light
        dark = f":root{{--portal-accent:{self.accent_color_dark}}}"
        if self.color_scheme == "auto":
            dark = f"@media (prefers-color-scheme: dark){{{dark}}}"
        return light + dark

    @property
    def content_security_policy(self) -> dict[str, tuple[str, ...]]:
        """What the page's ``Content-Security-Policy`` must allow: the
        inline style by its hash, a logo on another origin by that origin."""
        extra: dict[str, tuple[str, ...]] = {}
        css = self.css
        if css:
            digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
            extra["style-src"] = (f"'sha256-{digest}'",)
        if self.logo_url and self.logo_url.startswith("https://"):
            parts = urlsplit(self.logo_url)
            extra["img-src"] = (f"https://{parts.netloc}",)
        return extra


def _color(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HEX_RE.match(value):
        raise ConfigurationError(key, f'must be a hex colour such as "#6d28d9", got {value!r}')
    r, g, b = _channels(value)
    return f"#{r:02x}{g:02x}{b:02x}"


def _logo_url(config: Mapping[str, Any]) -> str | None:
    key = "CUSTOMER_PORTAL_BRAND_LOGO_URL"
    value = config.get(key)
    if value is None or value == "":
        return None
    must = 'must be an https:// URL or a path on this site such as "/static/logo.svg"'
    if not isinstance(value, str) or not value.isprintable() or any(c.isspace() or c == "\\" for c in value):
        raise ConfigurationError(key, f"{must}, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme == "https":
        if not parts.hostname or parts.username is not None or parts.password is not None:
            raise ConfigurationError(key, f"{must}, with a host and no user name, got {value!r}")
        return value
    # A scheme (javascript:, data:, http:) or a host without one ("//cdn…")
    # would load from, or run, something other than this site's own file.
    if parts.scheme or parts.netloc or not value.startswith("/"):
        raise ConfigurationError(key, f"{must}, got {value!r}")
    return value


def _check_contrast(key: str, accent: str, theme: Theme) -> None:
    for what, background in (*theme.backgrounds, ("its button text", theme.accent_text)):
        ratio = contrast_ratio(accent, background)
        if ratio < MIN_TEXT_CONTRAST:
            advice = (
                " (a colour that reads on a light background cannot on a dark one: set "
                'CUSTOMER_PORTAL_BRAND_ACCENT_COLOR_DARK, or CUSTOMER_PORTAL_BRAND_COLOR_SCHEME = "light")'
                if key == "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR" and theme is DARK
                else ""
            )
            raise ConfigurationError(
                key,
                f"{accent} has a contrast of {ratio:.2f}:1 against the {theme.name} theme's {what} "
                f"({background}); WCAG AA needs {MIN_TEXT_CONTRAST}:1 for text{advice}",
            )


def load_brand(config: Mapping[str, Any]) -> Brand:
    """Read and check the brand settings; raises :class:`ConfigurationError`
    naming the key of a colour that is unreadable in a theme it is used in."""
    scheme = config.get("CUSTOMER_PORTAL_BRAND_COLOR_SCHEME", "auto")
    if scheme not in COLOR_SCHEMES:
        raise ConfigurationError(
            "CUSTOMER_PORTAL_BRAND_COLOR_SCHEME", f'must be "auto", "light" or "dark", got {scheme!r}'
        )
    accent = _color(config, "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR")
    accent_dark = _color(config, "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR_DARK")
    brand = Brand(
        logo_url=_logo_url(config),
        accent_color=accent,
        # One accent for a site that is only ever dark is that theme's accent.
        accent_color_dark=accent_dark or (accent if scheme != "light" else None),
        color_scheme=scheme,
    )
    for theme in brand.themes:
        if theme is LIGHT:
            key, color = "CUSTOMER_PORTAL_BRAND_ACCENT_COLOR", brand.accent_color
        else:
            key = f"CUSTOMER_PORTAL_BRAND_ACCENT_COLOR{'_DARK' if accent_dark else ''}"
            color = brand.accent_color_dark
        _check_contrast(key, color or theme.default_accent, theme)
    return brand
