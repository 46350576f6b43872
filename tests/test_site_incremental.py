"""A rebuild into the same folder renders again only the run pages whose inputs changed, and the
result is the same site a fresh build writes."""
from __future__ import annotations

import json

from results_fixture import write_results

from metaft.leaderboard.site import SiteBuilder, build_site


def test_a_rebuild_renders_only_changed_run_pages_and_equals_a_fresh_build(tmp_path, monkeypatch):
    root = write_results(tmp_path / "results", n_tasks=8, seeds=(0,), hostile=False)
    site = tmp_path / "site"
    build_site([str(root)], site, n_resamples=0)
    rendered: list[str] = []
    original = SiteBuilder.run_page

    def counting(self, run_id):
        rendered.append(run_id)
        return original(self, run_id)

    monkeypatch.setattr(SiteBuilder, "run_page", counting)
    build_site([str(root)], site, n_resamples=0)
    assert rendered == []  # nothing changed: every run page was linked from the previous build

    manifest = root / "good-minilm-s0" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "note": "edited"}))
    build_site([str(root)], site, n_resamples=0)
    assert rendered == ["good-minilm-s0"]
    assert "edited" in (site / "runs" / "good-minilm-s0.html").read_text()

    fresh = tmp_path / "fresh"
    build_site([str(root)], fresh, n_resamples=0)
    pages = sorted(p.name for p in (site / "runs").glob("*.html"))
    assert pages == sorted(p.name for p in (fresh / "runs").glob("*.html")) and len(pages) == 3
    for name in pages:
        assert (site / "runs" / name).read_text() == (fresh / "runs" / name).read_text()
