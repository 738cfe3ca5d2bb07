"""The review queue (app/answer/review.py and /api/review): approve, edit, reject, and
promotion into the answer cache as a curated answer that the next asker gets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import select

from app.answer import review
from app.db.tables import CacheEntry
from app.embeddings import HashEmbedder
from app.errors import InvalidRequest
from app.services import Services
from app.web.app import create_app
from tests.conftest import make_settings
from tests.fakes.scripted import Say, ScriptedProvider
from tests.test_answer import DOSE, LEAVE, TENANT, ask, last, text_of, with_providers

QUESTION = "What is the maximum dose of ibuprofen?"
WRONG = Say("The maximum dose of ibuprofen for adults is 2400 mg a day [1].")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.build(make_settings(tmp_path / "data"), embedder=HashEmbedder())
    for name, text in (("leave.txt", LEAVE), ("dose.txt", DOSE)):
        s.ingestor.receive(TENANT, "default", name, text.encode())
    s.ingestor.run_pending()
    yield s
    s.close()


def held(services: Services) -> str:
    """A high-risk answer that failed validation twice: its review item's id."""
    events = ask(with_providers(services, ScriptedProvider("a", [WRONG, WRONG])), QUESTION)
    done = last(events, "done")
    assert done["outcome"] == "queued"
    services.answers.lanes.flush_writes()
    return str(done["review"]["id"])


def test_a_held_answer_waits_with_its_draft_sources_and_verdicts(services: Services) -> None:
    item_id = held(services)
    pending = review.list_items(services.db, TENANT)
    assert [i["id"] for i in pending] == [item_id]
    item = review.get_item(services.db, TENANT, item_id)
    assert "2400 mg" in item["draft"] and item["status"] == "pending"
    assert item["sources"][0]["title"] == "dose"
    assert any(g["verdict"] == "unsupported" for g in item["grounding"])
    with pytest.raises(Exception, match="No such"):
        review.get_item(services.db, "another-tenant", item_id)


def test_an_edit_keeps_before_and_after_and_becomes_the_curated_answer(
    services: Services,
) -> None:
    item_id = held(services)
    fixed = "The maximum dose of ibuprofen for adults is 1200 mg a day without a prescription [1]."
    with pytest.raises(InvalidRequest, match="needs the corrected"):
        review.decide(services.db, services.answers.cache, TENANT, item_id, "edit", "ada", "")
    with pytest.raises(InvalidRequest, match="cite at least one source"):
        review.decide(
            services.db, services.answers.cache, TENANT, item_id, "edit", "ada",
            "1200 mg a day.", promote=True,
        )  # fmt: skip
    decided = review.decide(
        services.db, services.answers.cache, TENANT, item_id, "edit", "ada", fixed, promote=True
    )
    assert decided["status"] == "edited" and decided["reviewer"] == "ada"
    assert "2400 mg" in decided["draft"] and decided["final_text"] == fixed, "before and after"
    assert decided["curated_cache_entry"]
    with pytest.raises(InvalidRequest, match="already decided"):
        review.decide(services.db, services.answers.cache, TENANT, item_id, "reject", "bob")
    with services.db.session() as db:
        entry = db.scalar(select(CacheEntry).where(CacheEntry.curated.is_(True)))
        assert entry is not None and entry.text == fixed and entry.risk == "high"

    # The next person who asks gets the curated answer, labelled, without a model call.
    model = ScriptedProvider("b", [WRONG])
    events = ask(with_providers(services, model), QUESTION)
    assert model.calls == 0
    assert text_of(events) == fixed
    cache = last(events, "done")["cache"]
    assert cache["status"] == "hit" and cache["curated"] is True


def test_a_rejected_answer_is_not_cached(services: Services) -> None:
    item_id = held(services)
    decided = review.decide(
        services.db, services.answers.cache, TENANT, item_id, "reject", "ada", promote=True
    )
    assert decided["status"] == "rejected" and decided["final_text"] is None
    assert decided["curated_cache_entry"] is None
    assert review.list_items(services.db, TENANT) == []
    assert [i["status"] for i in review.list_items(services.db, TENANT, None)] == ["rejected"]


def test_the_review_api_is_for_admins_and_renders_the_draft_safely(services: Services) -> None:
    from app import accounts

    item_id = held(services)
    with TestClient(create_app(services.settings, services)) as client:
        listed = client.get("/api/review/").json()
        assert [i["id"] for i in listed] == [item_id]
        item = client.get(f"/api/review/{item_id}").json()
        assert "mark-unsupported" in item["draft_html"] and 'class="cite"' in item["draft_html"]
        assert client.get("/console/review").status_code == 200
        approved = client.post(
            f"/api/review/{item_id}/decision", json={"action": "approve", "promote": False}
        )
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        bad = client.post(f"/api/review/{item_id}/decision", json={"action": "maybe"})
        assert bad.status_code == 400

        accounts.create_user(services.db, "ada", "correct horse battery", "admin")
        user_key = accounts.create_api_key(services.db, "bot", "user")
        headers: dict[str, Any] = {"Authorization": f"Bearer {user_key}"}
        assert client.get("/api/review/", headers=headers).status_code == 403
        assert client.get("/api/review/").status_code == 401
