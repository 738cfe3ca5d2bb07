"""The console's dashboard: figures from the audit rows (app/answer/metrics.py) and the
charts drawn from them (app/web/charts.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from app.answer.metrics import dashboard
from app.embeddings import HashEmbedder
from app.services import Services
from app.web.app import create_app
from tests.conftest import make_settings
from tests.fakes.scripted import ScriptedProvider, fail
from tests.test_answer import LEAVE, TENANT, ask, last, with_providers


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.build(make_settings(tmp_path / "data"), embedder=HashEmbedder())
    s.ingestor.receive(TENANT, "default", "leave.txt", LEAVE.encode())
    s.ingestor.run_pending()
    yield s
    s.close()


def test_figures_come_from_the_audit_rows(services: Services) -> None:
    flaky = ScriptedProvider("flaky", [fail("server", True), fail("server", True)])
    steady = ScriptedProvider("steady")
    first = ask(with_providers(services, flaky, steady), "How long is parental leave?")
    assert last(first, "done")["provider"] == "steady"
    again = ask(with_providers(services, steady), "How long is parental leave?")
    assert last(again, "done")["cache"]["status"] == "hit"
    services.answers.lanes.flush_writes()

    m = dashboard(services.db, TENANT)
    assert m["answers"] == 2
    (today,) = m["by_day"]
    assert today["answers"] == 2 and today["cache_hit_rate"] == 0.5
    assert today["grounding_pass_rate"] == 1.0 and today["errors"] == 0
    assert {"provider": "flaky", "kind": "server", "count": 2} in m["provider_failures"]
    steps = {s["step"]: s for s in m["steps"]}
    assert {"retrieve", "first_token", "total"} <= steps.keys()
    assert all(s["median_ms"] >= 0 and s["p90_ms"] >= s["median_ms"] for s in m["steps"])
    assert m["time_to_first_token_ms"]["n"] == 1, "a cached answer is not a model's first token"
    assert dashboard(services.db, "another-tenant")["answers"] == 0


def test_the_dashboard_page_and_its_charts(services: Services) -> None:
    ask(with_providers(services, ScriptedProvider("a")), "How long is parental leave?")
    services.answers.lanes.flush_writes()
    with TestClient(create_app(services.settings, services)) as client:
        page = client.get("/console")
        assert page.status_code == 200 and page.text.count('<img src="/console/charts/') == 6
        for name in ("steps", "ttft", "cost", "cache", "grounding", "failures"):
            chart = client.get(f"/console/charts/{name}")
            assert chart.status_code == 200, name
            assert chart.headers["content-type"].startswith("image/svg+xml")
            assert b"<svg" in chart.content[:500] and b"<script" not in chart.content
            assert "default-src 'none'" in chart.headers["content-security-policy"]
        assert client.get("/console/charts/nope").status_code == 404
        figures = client.get("/api/metrics?days=7").json()
        assert figures["answers"] == 1 and figures["days"] == 7
