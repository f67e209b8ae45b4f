"""List the portal's strings that a catalogue does not translate yet, as a
``.po`` fragment a translator fills in.

    python scripts/missing_translations.py                # every catalogue, to stdout
    python scripts/missing_translations.py es ar          # some of them
    python scripts/missing_translations.py --output-dir missing/   # missing/<lang>.po each

A string counts as missing when the catalogue lacks it (run ``make
extract-messages`` first to bring the catalogues up to the code), leaves a
form empty, or marks it fuzzy. The fragment has the catalogue's header (so
its plural rule comes along) and one entry per string with an empty
``msgstr`` for each plural form. Once filled in, merge it back with GNU
gettext's ``msgcat --use-first filled.po catalogue.po -o catalogue.po`` or
copy the entries across, then ``make translations`` and the tests in
``tests/test_i18n.py``. Exit status 1 when anything is missing, so CI can
use it as a check.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
TRANSLATIONS = ROOT / "flask_customer_portal" / "translations"
DOMAIN = "customer_portal"


def _read(path: Path) -> Catalog:
    with path.open("rb") as file:
        return read_po(file)


def _is_missing(message: Message | None, num_plurals: int) -> bool:
    if message is None or message.fuzzy:
        return True
    if message.pluralizable:
        forms = message.string if isinstance(message.string, (list, tuple)) else (message.string,)
        return len(forms) != num_plurals or not all(forms)
    return not message.string


def missing_messages(template: Catalog, catalog: Catalog) -> list[Message]:
    """The template's messages that ``catalog`` does not translate."""
    found = []
    for message in template:
        if not message.id:
            continue
        translated = catalog.get(message.id, message.context)
        if _is_missing(translated, catalog.num_plurals):
            found.append(message)
    return found


def fragment(catalog: Catalog, messages: Iterable[Message]) -> bytes:
    """A ``.po`` file of ``messages`` to translate, with ``catalog``'s header."""
    out = Catalog(
        locale=catalog.locale,
        domain=DOMAIN,
        project=catalog.project,
        version=catalog.version,
        fuzzy=False,
    )
    out.header_comment = f"# Untranslated strings of the {catalog.locale} catalogue: fill in each msgstr.\n#"
    for message in messages:
        string: str | tuple[str, ...] = ("",) * out.num_plurals if message.pluralizable else ""
        out.add(message.id, string, flags=message.flags - {"fuzzy"}, auto_comments=message.auto_comments)
    buffer = BytesIO()
    write_po(buffer, out, width=76, omit_header=False)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("languages", nargs="*", help="language codes (default: every catalogue)")
    parser.add_argument("--output-dir", type=Path, help="write <dir>/<lang>.po instead of printing")
    parser.add_argument("--translations", type=Path, default=TRANSLATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    template = _read(args.translations / f"{DOMAIN}.pot")
    available = sorted(p.parents[1].name for p in args.translations.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    languages = args.languages or available
    unknown = sorted(set(languages) - set(available))
    if unknown:
        parser.error(f"no catalogue for {', '.join(unknown)} (have: {', '.join(available)})")

    anything_missing = False
    for language in languages:
        catalog = _read(args.translations / language / "LC_MESSAGES" / f"{DOMAIN}.po")
        messages = missing_messages(template, catalog)
        print(f"{language}: {len(messages)} untranslated", file=sys.stderr)
        if not messages:
            continue
        anything_missing = True
        text = fragment(catalog, messages)
        if args.output_dir is not None:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            (args.output_dir / f"{language}.po").write_bytes(text)
        else:
            sys.stdout.write(text.decode("utf-8"))
            sys.stdout.write("\n")
    return 1 if anything_missing else 0


if __name__ == "__main__":
    sys.exit(main())
