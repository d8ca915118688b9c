"""The report opened from disk in a real headless Chromium: no console errors, every image
decodes, every section is there, the page is not blank and the tables sort."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from browser import Browser, find_chromium
from imgclf.cli import main
from imgclf.reporting.html import SECTIONS

SECTION_IDS = tuple(s[0] for s in SECTIONS)
from test_report import add_other_evaluations, make_full_run, make_train_run

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (no /usr/bin/chromium): install Debian's 'chromium' package "
           "(scripts/install-chromium.sh, run by 'make test') to check the report in a real browser")

PAGE_STATE = """(() => ({
  images: Array.from(document.images).map(i => ({alt: i.alt, width: i.naturalWidth, complete: i.complete})),
  sections: Array.from(document.querySelectorAll("main > section")).map(s => ({id: s.id, height: s.offsetHeight})),
  external: Array.from(document.querySelectorAll("[src],[href]"))
    .map(e => e.getAttribute("src") || e.getAttribute("href"))
    .filter(u => !u.startsWith("data:") && !u.startsWith("#")),
  title: document.title,
}))()"""

SORT_COLUMN = """((sectionId, header) => {
  const table = document.querySelector("#" + sectionId + " table.sortable");
  const th = Array.from(table.tHead.rows[0].cells).find(c => c.textContent.trim() === header);
  th.click();
  return Array.from(table.tBodies[0].rows).map(r => r.cells[0].textContent.trim());
})"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM is not None
    with Browser(CHROMIUM, width=1280, height=900) as b:
        yield b


def _open_report(browser: Browser, run_root: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["report", str(run_root)]) == 0
    capsys.readouterr()
    browser.open((run_root / "report.html").resolve().as_uri())
    return browser.evaluate(PAGE_STATE)


def _not_blank(png: bytes) -> bool:
    with Image.open(io.BytesIO(png)) as shot:
        colours = shot.convert("RGB").getcolors(maxcolors=1 << 16)
    return colours is None or len(colours) > 20


def test_full_report_in_chromium(tmp_path: Path, browser: Browser, capsys: pytest.CaptureFixture[str]) -> None:
    names = ["x<img src=x onerror=alert(1)>.png", "zdjęcie \"1\" & 'a'.png"]
    run = make_full_run(tmp_path / "run <&> ż", ("allReal", "allFake"), num_mistakes=60, names=names)
    state = _open_report(browser, run.root, capsys)
    assert browser.console_errors() == []
    assert [s["id"] for s in state["sections"]] == list(SECTION_IDS)
    assert all(s["height"] > 40 for s in state["sections"]), state["sections"]
    assert len(state["images"]) >= 1 + 1 + 48 + 1 + 3      # curves, matrix, capped gallery, chart, figures
    broken = [i["alt"] for i in state["images"] if not (i["complete"] and i["width"] > 0)]
    assert broken == []
    assert state["external"] == []
    assert _not_blank(browser.screenshot())
    first = browser.evaluate(f'{SORT_COLUMN}("enhance", "net gain")')
    second = browser.evaluate(f'{SORT_COLUMN}("enhance", "net gain")')
    assert first == ["hist_eq", "none", "clahe", "gamma"] and second == first[::-1]
    assert browser.console_errors() == []


def test_every_evaluation_in_chromium(tmp_path: Path, browser: Browser, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_full_run(tmp_path / "run", ("allReal", "allFake"), num_mistakes=4)
    elsewhere = tmp_path / "elsewhere" / "data"
    add_other_evaluations(run, ("allReal", "allFake"), elsewhere)
    state = _open_report(browser, run.root, capsys)
    assert browser.console_errors() == []
    assert "evaluations" in [s["id"] for s in state["sections"]]
    rows = browser.evaluate("""Array.from(document.querySelectorAll("#evaluations tbody tr"))
        .map(r => Array.from(r.cells).map(c => c.innerText.trim()))""")
    assert len(rows) == 3
    assert "digits-0a1b2c3d" in rows[0][0] and rows[0][1:3] == ["val", "best"] and "optimistic" in rows[0][8]
    by_data = {r[0].split()[0]: r for r in rows}
    assert str(elsewhere) in by_data["data-1234abcd"][0] and by_data["data-1234abcd"][8] == "–"
    assert [r[1] for r in rows].count("test") == 1
    visible = browser.evaluate('document.querySelector("#evaluations table").getBoundingClientRect().height')
    assert visible > 60
    browser.evaluate(f'{SORT_COLUMN}("evaluations", "accuracy")')
    assert browser.console_errors() == []


def test_train_only_report_in_chromium(tmp_path: Path, browser: Browser,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = make_train_run(tmp_path / "fresh", ("cat", "dog", "bird"))
    state = _open_report(browser, run.root, capsys)
    assert browser.console_errors() == []
    assert [s["id"] for s in state["sections"]] == list(SECTION_IDS)
    assert len(state["images"]) == 1 and state["images"][0]["width"] > 0
    hints = browser.evaluate('document.querySelectorAll("p.hint").length')
    assert hints >= 5


def test_checker_sees_console_errors_and_broken_images(tmp_path: Path, browser: Browser) -> None:
    """The checks above would catch a bad page: an error, an exception and a broken image."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="broken" src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom"); undefined_function();</script></body></html>')
    browser.open(page.as_uri())
    errors = browser.console_errors()
    assert any("boom" in e for e in errors) and any("undefined_function" in e for e in errors)
    widths = browser.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
    assert widths == [0]
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    browser.open(empty.as_uri())
    assert not _not_blank(browser.screenshot())     # an empty white page counts as blank
