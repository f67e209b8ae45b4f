#!/usr/bin/env bash
# Installs the system packages the test suite drives for real: Debian's
# Chromium (Playwright cannot download browsers here), the PostgreSQL
# server, Redis (shared rate limits; the tests start their own servers on
# free loopback ports, never the packaged service), nginx (the
# access-log recipe in docs/security.rst), a Java runtime (the W3C Nu
# HTML Checker, vnu.jar, that tests/test_html_validity.py runs), the CJK
# fonts of the invoice PDFs and GNU gettext. Does nothing when they are
# present; needs root (or sudo) for apt.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
fc-list 2>/dev/null | grep -qi dejavu || missing+=(fonts-dejavu-core)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
# Invoice PDFs in Chinese, Japanese and Korean (pdf/fallback_fonts.py).
[ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || missing+=(fonts-droid-fallback)
[ -f /usr/share/fonts/truetype/nanum/NanumGothic.ttf ] || missing+=(fonts-nanum)
# GNU msgfmt checks the catalogues (tests/test_i18n.py).
command -v msgfmt >/dev/null 2>&1 || missing+=(gettext)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing system packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  apt_get=(apt-get)
elif command -v sudo >/dev/null 2>&1; then
  apt_get=(sudo apt-get)
else
  echo "Cannot install ${missing[*]}: run as root or install them yourself." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${apt_get[@]}" update -qq
"${apt_get[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
