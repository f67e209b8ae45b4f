"""``scripts/missing_translations.py``: what a catalogue lacks, as a .po to fill in."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from babel.messages.pofile import read_po, write_po

REPO = Path(__file__).resolve().parents[1]
TRANSLATIONS = REPO / "flask_customer_portal" / "translations"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "missing_translations", REPO / "scripts" / "missing_translations.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def translations(tmp_path: Path) -> Path:
    """The template and the Spanish catalogue, with three holes in it."""
    root = tmp_path / "translations"
    (root / "es" / "LC_MESSAGES").mkdir(parents=True)
    shutil.copy(TRANSLATIONS / "customer_portal.pot", root)
    with (TRANSLATIONS / "es" / "LC_MESSAGES" / "customer_portal.po").open("rb") as file:
        catalog = read_po(file)
    catalog["Billing history"].string = ""  # untranslated
    catalog["Sign out"].flags.add("fuzzy")  # fuzzy
    catalog.delete("Overview")  # not in the catalogue yet
    plural = catalog[("%(num)d key", "%(num)d keys")]
    plural.string = (plural.string[0], "", "")  # one form left empty
    with (root / "es" / "LC_MESSAGES" / "customer_portal.po").open("wb") as file:
        write_po(file, catalog)
    return root


def test_lists_what_is_missing_as_a_po_file(translations: Path, tmp_path: Path) -> None:
    script = _script()
    assert script.main(["--translations", str(translations), "--output-dir", str(tmp_path / "out")]) == 1
    with (tmp_path / "out" / "es.po").open("rb") as file:
        found = read_po(file)
    ids = sorted(str(message.id) for message in found if message.id)
    assert ids == sorted(["Billing history", "Sign out", "Overview", str(("%(num)d key", "%(num)d keys"))])
    assert found.plural_forms == "nplurals=3; plural=(n == 1 ? 0 : n != 0 && n % 1000000 == 0 ? 1 : 2);"
    assert found[("%(num)d key", "%(num)d keys")].string == ("", "", "")
    assert all(not message.fuzzy for message in found if message.id)


def test_an_unknown_language_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _script().main(["xx"])
    assert "no catalogue for xx" in capsys.readouterr().err
