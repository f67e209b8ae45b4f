"""Compiles the gettext catalogues (.po → .mo) when the package is built,
so an installed portal always ships binary catalogues."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCatalogues(build_py):
    def run(self) -> None:
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        root = Path(__file__).parent / "flask_customer_portal" / "translations"
        for po_path in root.glob("*/LC_MESSAGES/*.po"):
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file)
            with po_path.with_suffix(".mo").open("wb") as mo_file:
                write_mo(mo_file, catalog)
        super().run()


setup(cmdclass={"build_py": BuildWithCatalogues})
