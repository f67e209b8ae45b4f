"""The screenshot tour of the docs: docs/tour.rst shows an image of every
page of :data:`scripts.tour.PAGES` at both sizes, every one of them is in
the repository, and the script that makes them runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.tour import IMAGES, PAGES, ROOT, RTL_PAGES, TOUR_RST, VIEWPORTS, tour_rst

SCRIPT = ROOT / "scripts" / "tour.py"


def _referenced() -> list[str]:
    return re.findall(r"^\.\. image:: (\S+)$", TOUR_RST.read_text(), flags=re.MULTILINE)


def test_every_image_the_tour_shows_is_in_the_repository() -> None:
    referenced = _referenced()
    # Every page at both sizes; the right-to-left pages on a phone only.
    assert len(referenced) == 2 * len(PAGES) + len(RTL_PAGES)
    missing = [name for name in referenced if not (TOUR_RST.parent / name).is_file()]
    assert not missing, f"make tour: docs/tour.rst shows images that are not there: {missing}"


def test_no_image_is_left_over_and_each_is_a_small_png() -> None:
    referenced = {Path(name).name for name in _referenced()}
    on_disk = {path.name for path in IMAGES.iterdir()}
    assert on_disk == referenced
    for path in IMAGES.iterdir():
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
        assert len(data) < 150_000, f"{path.name} is {len(data)} bytes"
    assert sum(path.stat().st_size for path in IMAGES.iterdir()) < 4_000_000


def test_the_main_pages_are_shown_right_to_left_on_a_phone() -> None:
    referenced = set(_referenced())
    paths = {p.path for p in RTL_PAGES}
    for shown in ("/portal/", "/portal/subscriptions", "/portal/invoices", "/portal/payment-methods"):
        assert shown in paths
    for shown in ("/portal/license-keys", "/portal/profile", "/portal/login/biz_demo"):
        assert shown in paths
    assert any(
        p.path.startswith("/portal/subscriptions/") and p.path.endswith("/payment-method") for p in RTL_PAGES
    )
    assert any(p.path.startswith("/portal/invoices/") for p in RTL_PAGES)
    assert len({p.slug for p in RTL_PAGES} | {p.slug for p in PAGES}) == len(RTL_PAGES) + len(PAGES)
    for target in RTL_PAGES:
        assert f"_static/tour/{target.slug}-phone.png" in referenced
        assert f"_static/tour/{target.slug}-desktop.png" not in referenced


def test_the_page_is_what_the_script_writes() -> None:
    assert TOUR_RST.read_text() == tour_rst() + "\n", (
        "run `make tour` (or edit scripts/tour.py, not docs/tour.rst)"
    )


def test_the_tour_is_in_the_table_of_contents() -> None:
    assert re.search(r"^   tour$", (ROOT / "docs" / "index.rst").read_text(), flags=re.MULTILINE)


@pytest.mark.slow
@pytest.mark.browser
def test_the_script_makes_the_images(tmp_path: Path) -> None:
    from PIL import Image

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    slugs = ("login", "link-problem", "budi-dashboard")
    rtl_slugs = ("ar-login",)
    command = [
        sys.executable,
        str(SCRIPT),
        "--out",
        str(tmp_path / "tour"),
        "--rst",
        str(tmp_path / "tour.rst"),
    ]
    done = subprocess.run(
        [*command, "--only", ",".join(slugs + rtl_slugs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "7 images" in done.stdout
    made = sorted(path.name for path in (tmp_path / "tour").iterdir())
    expected = [f"{slug}-{size}.png" for slug in slugs for size, _w, _h in VIEWPORTS]
    assert made == sorted(expected + [f"{slug}-phone.png" for slug in rtl_slugs])
    with Image.open(tmp_path / "tour" / "ar-login-phone.png") as image:
        assert image.mode == "P"
        assert image.width == VIEWPORTS[0][1]
    for size, width, _height in VIEWPORTS:
        with Image.open(tmp_path / "tour" / f"budi-dashboard-{size}.png") as image:
            assert image.format == "PNG"
            assert image.mode == "P"  # a palette: small
            assert image.width == width
            assert image.height > 400
    assert (tmp_path / "tour.rst").read_text() == tour_rst() + "\n"
