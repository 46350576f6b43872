"""The manual's generated pages match the code, and the README stays a front page."""
from __future__ import annotations

from pathlib import Path

from metaft.suite.reference import PAGES

ROOT = Path(__file__).resolve().parents[1]


def test_generated_pages_are_current():
    stale = [name for name, make in PAGES.items() if (ROOT / "docs" / name).read_text() != make()]
    assert not stale, f"regenerate with `python -m metaft.suite.reference docs`: {', '.join(stale)}"


def test_every_results_column_is_documented():
    from metaft.suite.results import RUN_COLUMNS, TASK_COLUMNS

    page = (ROOT / "docs" / "reference" / "results.md").read_text()
    assert all(f"| `{c}` |" in page for c in [*TASK_COLUMNS, *RUN_COLUMNS])


def test_the_readme_is_a_front_page_and_its_links_resolve():
    import re

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target
