"""Browser and operating system from a ``User-Agent`` header, for the
customer's list of signed-in devices.

Deliberately small: the sessions page needs "Firefox on Windows", not a
device database, so a dozen ordered rules cover the browsers people use and
everything else is reported as unknown rather than guessed. Names are
product names and are not translated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Device", "parse_user_agent"]


@dataclass(frozen=True, slots=True)
class Device:
    browser: str | None
    """``"Chrome"``, ``"Safari"`` …, or ``None`` when not recognised."""
    os: str | None
    """``"Windows"``, ``"iOS"`` …, or ``None`` when not recognised."""


#: Checked in order, first match wins: browsers built on Chromium or WebKit
#: also name Chrome and Safari, so they come before them.
_BROWSERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"\bEdg(e|A|iOS)?/", "Edge"),
        (r"\b(OPR|OPiOS|Opera)/", "Opera"),
        (r"\bSamsungBrowser/", "Samsung Internet"),
        (r"\bYaBrowser/", "Yandex Browser"),
        (r"\bVivaldi/", "Vivaldi"),
        (r"\bUCBrowser/", "UC Browser"),
        (r"\b(Firefox|FxiOS)/", "Firefox"),
        (r"\b(Chrome|CriOS|HeadlessChrome)/", "Chrome"),
        (r"\bVersion/[\d.]+.*\bSafari/", "Safari"),
        (r"\b(MSIE |Trident/)", "Internet Explorer"),
    )
)

_OPERATING_SYSTEMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"\bWindows Phone\b", "Windows Phone"),
        (r"\bWindows\b", "Windows"),
        (r"\biPad\b", "iPadOS"),
        (r"\b(iPhone|iPod)\b", "iOS"),
        (r"\bAndroid\b", "Android"),
        (r"\bCrOS\b", "ChromeOS"),
        (r"\bMac OS X\b|\bMacintosh\b", "macOS"),
        (r"\bLinux\b|\bX11\b", "Linux"),
    )
)

#: Longer headers are cut before matching (the portal stores 255 characters).
_MAX_LENGTH = 512


def _first(rules: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str | None:
    for pattern, name in rules:
        if pattern.search(text):
            return name
    return None


def parse_user_agent(user_agent: str | None) -> Device:
    """The browser and operating system a ``User-Agent`` names.

    >>> parse_user_agent(
    ...     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    ...     "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
    ... )
    Device(browser='Safari', os='iOS')
    >>> parse_user_agent("curl/8.5.0")
    Device(browser=None, os=None)
    """
    if not user_agent:
        return Device(browser=None, os=None)
    text = user_agent[:_MAX_LENGTH]
    return Device(browser=_first(_BROWSERS, text), os=_first(_OPERATING_SYSTEMS, text))
