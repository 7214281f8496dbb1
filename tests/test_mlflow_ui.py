"""The MLflow UI, in a real headless Chromium, shows a sweep as a parent with its children and
their metrics. Needs Debian's ``chromium`` and the ``playwright`` package (``.ci/run`` installs
both); skipped with the reason elsewhere. The server listens on 127.0.0.1 only and is stopped by
its PID."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import CHROMIUM, all_runs, cli, launch_chromium, store_uri
from servers import listening_addresses, mlflow_server

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")


@pytest.fixture
def ui_server(tmp_path):
    """A store filled by a small sweep, served by ``mlflow ui`` on 127.0.0.1."""
    result = cli("-m", "model=linear,logistic", "trainer.max_epochs=3", "tracking.log_model=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    with mlflow_server("ui", ["--backend-store-uri", store_uri(tmp_path)], cwd=tmp_path,
                       log=tmp_path / "ui.log", wait=60) as (url, server):
        yield url, store_uri(tmp_path), server.pid


def test_ui_shows_the_sweep_parent_its_children_and_their_metrics(ui_server):
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    url, uri, pid = ui_server
    if shutil.which("ss"):
        assert listening_addresses(pid) <= {"127.0.0.1"}
    runs = all_runs(uri)
    parent = next(r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 2000, "height": 700})
            page.goto(f"{url}/#/experiments/{parent.info.experiment_id}/runs")
            page.get_by_text(parent.info.run_name[:30], exact=False).first.wait_for(timeout=60_000)
            # show the validation loss column, then open the parent's children
            page.get_by_role("button", name="Columns").click()
            page.get_by_role("dialog").get_by_text("val/loss", exact=True).click()
            page.keyboard.press("Escape")
            page.locator("[role=gridcell] button").first.click()
            for child in children:
                page.get_by_text(child.info.run_name, exact=True).first.wait_for(timeout=30_000)
            page.get_by_role("columnheader", name="val/loss").first.wait_for(timeout=30_000)
            cells = page.locator("[role=gridcell]").all_inner_texts()
            close = page.get_by_role("button", name="Close")  # MLflow's assistant panel
            if close.count():
                close.first.click()
            page.get_by_role("columnheader", name="val/loss").first.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "mlflow-ui-sweep.png"))
        finally:
            browser.close()
    for child in children:
        shown = f"{child.data.metrics['val/loss']:.4f}"[:5]
        assert any(cell.startswith(shown) for cell in cells), (shown, cells)
    assert (SCREENSHOTS / "mlflow-ui-sweep.png").stat().st_size > 10_000
