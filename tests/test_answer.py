"""The answer path end to end in-process: risk tiers, reset, validation, review queue, cache,
conversations and audit, with scripted providers through the Provider seam."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.answer.answer import REFUSED, SAFE_ANSWER, AnswerDeps, answer
from app.answer.conversation import add_turn
from app.answer.delivery import ground_offline
from app.answer.grounding_pool import GroundingPool
from app.db.tables import AnswerRecord, CacheEntry, Message, ReviewItem
from app.embeddings import HashEmbedder
from app.models import ChatRequest
from app.providers.fallback import Deadlines, FallbackChain
from app.services import Services
from tests.conftest import make_settings
from tests.fakes.scripted import Say, ScriptedProvider, fail

TENANT = "default"
LEAVE = (
    "Parental leave lasts sixteen weeks at full pay. "
    "Either parent may take it within the first year after the birth."
)
DOSE = (
    "The maximum dose of ibuprofen for adults is 1200 mg a day without a prescription. "
    "Children must not take it under three months of age."
)
TRAVEL = (
    "Employees book flights through the travel desk two weeks before departure. "
    "Economy class is the default for flights shorter than six hours."
)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.build(make_settings(tmp_path / "data"), embedder=HashEmbedder())
    for name, text in (("leave.txt", LEAVE), ("dose.txt", DOSE), ("travel.txt", TRAVEL)):
        s.ingestor.receive(TENANT, "default", name, text.encode())
    s.ingestor.run_pending()
    yield s
    s.close()


def with_providers(s: Services, *providers: ScriptedProvider, fast: bool = True) -> AnswerDeps:
    chain = FallbackChain(providers)
    deps = dataclasses.replace(
        s.answers, chain=chain, tiers={"small": list(providers), "large": list(providers)}
    )
    if fast:
        d = Deadlines(first_token_s=0.5, stall_s=0.5, total_s=5)
        deps.config = dataclasses.replace(deps.config, low=d, high=d)
    return deps


def ask(deps: AnswerDeps, question: str, **kw: Any) -> list[tuple[str, dict[str, Any]]]:
    async def run() -> list[tuple[str, dict[str, Any]]]:
        return [
            (e.event, e.data)
            async for e in answer(deps, TENANT, ChatRequest(question=question, **kw))
        ]

    return asyncio.run(run())


def names(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [n for n, _ in events]


def text_of(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(d["text"] for n, d in events if n == "delta")


def last(events: list[tuple[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    return [d for n, d in events if n == name][-1]


def audit(s: Services, answer_id: str) -> AnswerRecord:
    s.answers.lanes.flush_writes()  # the row is written off the event loop
    with s.db.session() as db:
        row = db.get(AnswerRecord, answer_id)
        assert row is not None
        return row


def test_low_risk_streams_and_is_audited(services: Services) -> None:
    a = ScriptedProvider("a")
    events = ask(with_providers(services, a), "How long is parental leave?")
    assert names(events)[:2] == ["meta", "sources"]
    assert names(events)[-3:] == ["citations", "grounding", "done"]
    assert names(events).count("delta") > 3, "streamed in several pieces"
    meta, done = last(events, "meta"), last(events, "done")
    assert meta["risk"] == "low" and meta["cache"] == "miss"
    assert "sixteen weeks" in done["text"] and done["provider"] == "a"
    assert last(events, "citations")["citations"][0]["title"] == "leave"
    grounding = last(events, "grounding")
    assert grounding["pass_rate"] == 1.0
    assert grounding["sentences"][0]["verdict"] == "supported"
    row = audit(services, meta["answer_id"])
    assert row.outcome == "answered" and row.provider == "a" and row.risk == "low"
    assert row.prompt_version == "answer-v1" and len(row.prompt_hash) == 64
    assert json.loads(row.chunk_ids) and json.loads(row.provider_path)[0]["outcome"] == "ok"
    assert json.loads(row.grounding)[0]["verdict"] == "supported"
    timings = json.loads(row.timings)
    assert {"retrieve_ms", "first_token_ms", "total_ms"} <= set(timings)
    # The prompt carries the sources as delimited data.
    assert '<source id="1"' in a.requests[0].prompt and a.requests[0].system


def test_questions_asked_together_each_get_their_own_sources(services: Services) -> None:
    """They are embedded as one batch (the query lane); each answer is still its own."""
    deps = with_providers(services, ScriptedProvider("a"))
    assert deps.query_lane is not None
    asked = {
        "How long is parental leave?": "leave",
        "Who books flights for employees?": "travel",
        "What is the maximum dose of ibuprofen?": "dose",
    }
    questions = list(asked) * 3

    async def one(question: str) -> list[tuple[str, dict[str, Any]]]:
        request = ChatRequest(question=question)
        return [(e.event, e.data) async for e in answer(deps, TENANT, request)]

    async def together() -> list[list[tuple[str, dict[str, Any]]]]:
        return await asyncio.gather(*(one(q) for q in questions))

    for question, events in zip(questions, asyncio.run(together()), strict=True):
        assert last(events, "sources")["sources"][0]["title"] == asked[question], question
        assert names(events)[-1] == "done"


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[tuple[Services, AnswerDeps, GroundingPool]]:
    """Services with one grounding worker process and the leave policy indexed."""
    s = Services.build(
        make_settings(tmp_path / "data", grounding_workers=1), embedder=HashEmbedder()
    )
    try:
        s.ingestor.receive(TENANT, "default", "leave.txt", LEAVE.encode())
        s.ingestor.run_pending()
        deps = with_providers(s, ScriptedProvider("a"))
        assert deps.grounding_pool is not None
        yield s, deps, deps.grounding_pool
    finally:
        s.close()


def test_low_risk_grounding_runs_in_a_worker_process_and_survives_its_death(
    one_worker: tuple[Services, AnswerDeps, GroundingPool], caplog: pytest.LogCaptureFixture
) -> None:
    s, deps, pool = one_worker

    def grounded() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        events = ask(deps, "How long is parental leave?", use_cache=False)
        text = last(events, "done")["text"]
        hits = s.retriever.search(TENANT, "How long is parental leave?", 5, None)
        again = ground_offline(deps, text, hits)  # the same check, in this process
        return last(events, "grounding"), [v.to_event() for v in again]

    in_worker, here = grounded()
    first = pool.pids()
    assert len(first) == 1, "the worker process did the grounding"
    assert in_worker["sentences"] == here and here[0]["verdict"] == "supported"
    # A worker that dies: that answer is grounded in a thread, the next in a new worker.
    # Killed, not waited for: its request then goes to a dead socket or one that closes
    # unread, and either way fails to a thread.
    os.kill(first[0], signal.SIGKILL)
    in_thread, here = grounded()
    assert in_thread["sentences"] == here
    assert "grounding in a thread" in caplog.text
    in_new_worker, here = grounded()
    assert in_new_worker["sentences"] == here
    assert len(pool.pids()) == 1 and pool.pids() != first
    with pytest.raises(ChildProcessError):  # already reaped by the pool
        os.waitpid(first[0], os.WNOHANG)


def test_a_grounding_worker_that_stops_answering_is_replaced_and_the_answer_ends(
    one_worker: tuple[Services, AnswerDeps, GroundingPool], caplog: pytest.LogCaptureFixture
) -> None:
    """A hung worker (here: stopped) must not hold an answer's stream open: after the pool's
    deadline the answer is grounded in a thread and the worker is killed and replaced."""
    _, deps, pool = one_worker
    question = "How long is parental leave?"
    assert last(ask(deps, question, use_cache=False), "grounding")["sentences"]
    (hung,) = pool.pids()
    pool.deadline_s = 1.0
    os.kill(hung, signal.SIGSTOP)
    started = time.monotonic()
    events = ask(deps, question, use_cache=False)
    took = time.monotonic() - started
    assert names(events)[-1] == "done" and last(events, "grounding")["sentences"]
    assert took < 10, f"the answer waited {took:.1f} s for a hung worker"
    assert "did not answer within 1 s" in caplog.text
    with pytest.raises(ChildProcessError):  # killed and reaped by the pool
        os.waitpid(hung, os.WNOHANG)
    assert last(ask(deps, question, use_cache=False), "grounding")["sentences"]
    assert len(pool.pids()) == 1 and pool.pids() != [hung]


ORPHAN = """
import asyncio, sys, time
from pathlib import Path
from app.answer.grounding_pool import GroundingPool
from app.models import ChunkHit
from tests.conftest import make_settings

pool = GroundingPool(make_settings(Path(sys.argv[1])), 1)
hit = ChunkHit(chunk_id="c", document_id="d", title="leave", collection="", version=1,
               page=None, start=0, end=40, text="Parental leave lasts sixteen weeks.", score=1.0)
asyncio.run(pool.ground("Parental leave lasts sixteen weeks [1].", [hit], None))
print(*pool.pids(), flush=True)
time.sleep(120)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent that is gone (Linux /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux /proc")
def test_a_grounding_worker_leaves_when_its_server_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the server no chance to stop its pool; the worker must notice alone
    (it used to wait on its task queue for ever, holding a model's memory)."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, str(tmp_path / "data")],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        workers = [int(p) for p in server.stdout.readline().split()]
        assert workers and all(_running(p) for p in workers)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        deadline = time.monotonic() + 10
        while any(_running(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(p) for p in workers), "the worker outlived its server"
    finally:
        server.kill()


def test_low_risk_failure_mid_answer_resets_and_replaces(services: Services) -> None:
    a = ScriptedProvider("a", [Say("Parental leave lasts sixteen weeks [1].", stall_after=3)])
    b = ScriptedProvider("b")
    events = ask(with_providers(services, a, b), "How long is parental leave?")
    seq = names(events)
    assert "reset" in seq and seq.index("reset") > seq.index("delta")
    after = events[seq.index("reset") + 1 :]
    assert last(events, "done")["provider"] == "b"
    assert "sixteen weeks" in "".join(d["text"] for n, d in after if n == "delta")
    assert a.closed == 1


def test_low_risk_failure_mid_answer_without_a_replacement_is_a_clear_error(
    services: Services,
) -> None:
    a = ScriptedProvider("a", [Say("Parental leave lasts sixteen weeks [1].", stall_after=3)])
    events = ask(with_providers(services, a), "How long is parental leave?")
    assert names(events)[-1] == "error"
    error = last(events, "error")
    assert error["code"] == "interrupted" and error["retryable"] and error["partial"]
    assert "incomplete" in error["message"]
    with services.db.session() as db:
        assert db.scalar(select(CacheEntry)) is None, "a truncated answer is never cached"


def test_high_risk_is_held_until_validated(services: Services) -> None:
    a = ScriptedProvider("a")
    events = ask(with_providers(services, a), "What is the maximum dose of ibuprofen?")
    meta = last(events, "meta")
    assert meta["risk"] == "high" and "medical" in meta["risk_reasons"][0]
    seq = names(events)
    assert seq.index("status") < seq.index("delta")
    assert last(events, "status")["state"] == "validating"
    assert "1200 mg" in text_of(events)
    row = audit(services, meta["answer_id"])
    assert row.outcome == "answered" and json.loads(row.validation)["passed"]


def test_high_risk_unsupported_answer_retries_strictly_then_queues_for_review(
    services: Services,
) -> None:
    wrong = Say("The maximum dose of ibuprofen for adults is 2400 mg a day [1].")
    a = ScriptedProvider("a", [wrong, wrong])
    events = ask(with_providers(services, a), "What is the maximum dose of ibuprofen?")
    assert a.calls == 2 and a.requests[1].strict
    assert "second attempt" in a.requests[1].system
    assert "2400" not in text_of(events), "an unvalidated high-risk answer is never shown"
    assert text_of(events) == SAFE_ANSWER
    done = last(events, "done")
    assert done["outcome"] == "queued" and "2400" in " ".join(done["review"]["reasons"])
    with services.db.session() as db:
        item = db.scalar(select(ReviewItem))
        assert item is not None and "2400 mg" in item.draft and item.status == "pending"


def test_high_risk_strict_retry_that_passes_is_released(services: Services) -> None:
    wrong = Say("The maximum dose of ibuprofen for adults is 2400 mg a day [1].")
    a = ScriptedProvider("a", [wrong])
    events = ask(with_providers(services, a), "What is the maximum dose of ibuprofen?")
    assert "1200 mg" in text_of(events) and last(events, "done")["outcome"] == "answered"
    assert [d["reason"] for n, d in events if n == "status" and d["state"] == "retrying"] == [
        "validation"
    ]


def test_forged_citations_are_removed_from_high_risk_answers(services: Services) -> None:
    a = ScriptedProvider(
        "a",
        [Say(lambda r: r.sources[0].text.split(". ")[0] + ". [1] [7]")],
    )
    events = ask(with_providers(services, a), "What is the maximum dose of ibuprofen?")
    assert "[7]" not in text_of(events) and "[1]" in text_of(events)
    assert last(events, "citations")["dangling"] == 1


def test_validated_answers_are_cached_and_die_with_their_document(services: Services) -> None:
    a = ScriptedProvider("a")
    deps = with_providers(services, a)
    first = ask(deps, "How long is parental leave?")
    assert last(first, "meta")["cache"] == "miss"
    again = ask(deps, "how long is parental leave")
    assert last(again, "meta")["cache"] == "hit" and a.calls == 1
    cache = last(again, "done")["cache"]
    assert cache["status"] == "hit" and cache["match"] == "exact" and cache["age_s"] >= 0
    assert text_of(again) == last(first, "done")["text"]
    # A new version of the cited document kills the entry.
    services.ingestor.receive(TENANT, "default", "leave.txt", (LEAVE + " It is paid.").encode())
    services.ingestor.run_pending()
    third = ask(deps, "How long is parental leave?")
    assert last(third, "meta")["cache"] == "miss" and a.calls == 2


def test_all_providers_down_serves_a_labelled_cached_answer(services: Services) -> None:
    healthy = ScriptedProvider("a")
    ask(with_providers(services, healthy), "How long is parental leave?")
    down = ScriptedProvider("a", [fail("server", True), fail("server", True)])
    events = ask(with_providers(services, down), "How long is parental leave?", use_cache=False)
    # use_cache=False skips ordinary hits; the fallback still saves the answer.
    done = last(events, "done")
    assert done["cache"]["status"] == "fallback" and "created_at" in done["cache"]
    assert any(d.get("state") == "cache" for n, d in events if n == "status")
    assert "sixteen weeks" in text_of(events)


def test_all_providers_down_and_no_cache_is_a_clear_error(services: Services) -> None:
    a = ScriptedProvider("a", [fail("auth", False)])
    b = ScriptedProvider("b", [fail("server", True), fail("server", True)])
    events = ask(with_providers(services, a, b), "How long is parental leave?")
    assert names(events)[-1] == "error"
    error = last(events, "error")
    assert error["code"] == "all_providers_unavailable" and error["retryable"]
    assert "Try again" in error["message"] and error["request_id"]
    statuses = [d["state"] for n, d in events if n == "status"]
    assert statuses == ["fallback", "retrying"]
    assert audit(services, error["request_id"]).outcome == "error"


def test_refusal_is_reported_without_falling_back(services: Services) -> None:
    a = ScriptedProvider("a", [Say("", stop="refused")])
    b = ScriptedProvider("b")
    events = ask(with_providers(services, a, b), "How long is parental leave?")
    assert REFUSED in text_of(events) and b.calls == 0
    assert last(events, "done")["outcome"] == "refused"


def test_truncated_answers_are_marked_and_not_cached(services: Services) -> None:
    a = ScriptedProvider("a", [Say("Parental leave lasts sixteen weeks [1].", stop="length")])
    events = ask(with_providers(services, a), "How long is parental leave?")
    assert last(events, "done")["truncated"] is True
    with services.db.session() as db:
        assert db.scalar(select(CacheEntry)) is None


def test_follow_ups_are_condensed_and_conversations_stored(services: Services) -> None:
    a = ScriptedProvider("a")
    deps = with_providers(services, a)
    first = ask(deps, "How long is parental leave?")
    conversation = last(first, "meta")["conversation_id"]
    follow = ask(deps, "And can either parent take it?", conversation_id=conversation)
    meta = last(follow, "meta")
    assert meta["conversation_id"] == conversation
    assert meta["question"].startswith("How long is parental leave?")
    with services.db.session() as db:
        roles = [m.role for m in db.scalars(select(Message).order_by(Message.created_at))]
    assert roles == ["user", "assistant", "user", "assistant"]
    # Another tenant's conversation is as unknown as a made-up id.
    with services.db.session() as db:
        add_turn(db, "other", "11111111-1111-1111-1111-111111111111", "q", "a", "x")
    foreign = ask(deps, "Hello?", conversation_id="11111111-1111-1111-1111-111111111111")
    assert last(foreign, "error")["code"] == "not_found"
    assert last(ask(deps, "Hello?", conversation_id="not-an-id"), "error")["code"] == "not_found"


def test_the_turn_and_the_audit_row_are_committed_when_the_stream_ends(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One transaction writes both; the stream's last event comes after the commit, and a
    turn that cannot be written does not cost the audit row."""
    deps = with_providers(services, ScriptedProvider("a"))
    events = ask(deps, "How long is parental leave?")
    answer_id, conversation = (
        last(events, "meta")["answer_id"],
        last(events, "meta")["conversation_id"],
    )
    with services.db.session() as db:  # no flush_writes: the stream waited for the commit
        assert db.get(AnswerRecord, answer_id) is not None
        turn = list(db.scalars(select(Message).where(Message.conversation_id == conversation)))
        assert sorted(m.role for m in turn) == ["assistant", "user"]

    import app.answer.audit as audit_module

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit_module, "add_turn", broken)
    events = ask(deps, "Can either parent take it?")
    assert names(events)[-1] == "done"
    row = audit(services, last(events, "meta")["answer_id"])
    assert row.outcome == "answered"
    assert "could not add answer" in caplog.text


def test_a_conversation_whose_first_answer_failed_can_go_on(services: Services) -> None:
    """Its id came in the meta event but no turn was stored: asking again continues it."""
    a = ScriptedProvider("a", [fail("server", True), fail("server", True)])
    deps = with_providers(services, a)
    failed = ask(deps, "How long is parental leave?")
    assert names(failed)[-1] == "error"
    conversation = last(failed, "meta")["conversation_id"]
    again = ask(deps, "How long is parental leave?", conversation_id=conversation)
    assert names(again)[-1] == "done" and last(again, "meta")["conversation_id"] == conversation
    with services.db.session() as db:
        assert [m.role for m in db.scalars(select(Message))] == ["user", "assistant"]


def test_a_client_that_leaves_closes_the_upstream_and_is_audited(services: Services) -> None:
    a = ScriptedProvider("a", [Say("Parental leave lasts sixteen weeks [1].", stall_after=2)])
    deps = with_providers(services, a, fast=False)

    async def leave_early() -> str:
        stream = answer(deps, TENANT, ChatRequest(question="How long is parental leave?"))
        answer_id = ""
        async for event in stream:
            if event.event == "meta":
                answer_id = event.data["answer_id"]
            if event.event == "delta":
                break
        await stream.aclose()
        return answer_id

    answer_id = asyncio.run(leave_early())
    assert a.closed == 1
    assert audit(services, answer_id).outcome == "abandoned"


def test_no_sources_says_so_without_calling_a_model(tmp_path: Path) -> None:
    s = Services.build(make_settings(tmp_path / "empty"), embedder=HashEmbedder())
    try:
        a = ScriptedProvider("a")
        events = ask(with_providers(s, a), "How long is parental leave?")
        assert "no documents" in text_of(events).lower() and a.calls == 0
    finally:
        s.close()


def judge_says(*verdicts: str) -> Say:
    body = {"sentences": [{"sentence": i + 1, "verdict": v} for i, v in enumerate(verdicts)]}
    return Say("Here is my judgement: " + json.dumps(body))


def test_judge_can_only_make_grounding_stricter(services: Services) -> None:
    a = ScriptedProvider("a")
    judge = ScriptedProvider("judge", [judge_says("unsupported")])
    deps = dataclasses.replace(with_providers(services, a), judge=[judge])
    events = ask(deps, "How long is parental leave?")
    grounding = last(events, "grounding")
    assert grounding["method"] == "offline+judge"
    assert grounding["sentences"][0]["verdict"] == "unsupported"
    assert "judge: unsupported" in grounding["sentences"][0]["reasons"]
    assert "<source" in judge.requests[0].prompt and "1. " in judge.requests[0].prompt
    with services.db.session() as db:
        assert db.scalar(select(CacheEntry)) is None, "an unsupported answer is not cached"
    lenient = ScriptedProvider("judge", [judge_says("supported")])
    wrong = ScriptedProvider("a", [Say("Parental leave lasts 40 weeks at full pay [1].")])
    deps = dataclasses.replace(with_providers(services, wrong), judge=[lenient])
    events = ask(deps, "How long is parental leave?")
    assert last(events, "grounding")["sentences"][0]["verdict"] == "unsupported"


def test_high_risk_fails_closed_when_the_judge_is_down(services: Services) -> None:
    a = ScriptedProvider("a")
    judge = ScriptedProvider("judge", [fail("server", True), fail("server", True)] * 2)
    deps = dataclasses.replace(with_providers(services, a), judge=[judge])
    events = ask(deps, "What is the maximum dose of ibuprofen?")
    assert text_of(events) == SAFE_ANSWER
    assert "judge" in " ".join(last(events, "done")["review"]["reasons"])
    healthy = ScriptedProvider("judge", [judge_says("supported")])
    deps = dataclasses.replace(with_providers(services, a), judge=[healthy])
    events = ask(deps, "What is the maximum dose of ibuprofen?")
    assert "1200 mg" in text_of(events)
    assert last(events, "grounding")["method"] == "offline+judge"


def test_unreadable_judgements_are_ignored() -> None:
    from app.answer.judge import parse_judgement

    assert parse_judgement("no json here", 1) is None
    assert parse_judgement('{"sentences": [{"sentence": 2, "verdict": "supported"}]}', 1) is None
    assert parse_judgement('{"sentences": [{"sentence": 1, "verdict": "maybe"}]}', 1) is None
    ok = parse_judgement('x {"sentences": [{"sentence": 1, "verdict": "partial"}]} y', 1)
    assert ok is not None and ok[0].verdict == "partial"


class BrokenEmbedder(HashEmbedder):
    def embed_query(self, text: str) -> list[float]:
        raise RuntimeError("embedding service down")


def test_retrieval_down_serves_the_exact_cache_or_says_what_to_do(services: Services) -> None:
    a = ScriptedProvider("a")
    ask(with_providers(services, a), "How long is parental leave?")
    deps = dataclasses.replace(with_providers(services, a), embedder=BrokenEmbedder())
    events = ask(deps, "How long is parental leave?")
    assert last(events, "done")["cache"]["status"] == "fallback" and a.calls == 1
    assert "sixteen weeks" in text_of(events)
    events = ask(deps, "Who books flights?")
    error = last(events, "error")
    assert error["code"] == "unavailable" and "cannot search" in error["message"]
    assert a.calls == 1


def test_deleting_a_document_drops_the_answers_that_cite_it(services: Services) -> None:
    a = ScriptedProvider("a")
    events = ask(with_providers(services, a), "How long is parental leave?")
    cited = last(events, "citations")["citations"][0]["document_id"]
    with services.db.session() as db:
        assert db.scalar(select(CacheEntry)) is not None
    services.delete_document(TENANT, cited)
    with services.db.session() as db:
        assert db.scalar(select(CacheEntry)) is None
    assert services.cache_index is not None
    assert services.cache_index.count(scope_of(TENANT)) == 0


def scope_of(tenant: str) -> Any:
    from app.index import scope

    return scope(tenant)


def test_sources_with_equal_scores_come_in_document_order(services: Services) -> None:
    """Fused scores tie often; the order of ties must not depend on random point ids."""
    retriever = services.answers.retriever
    found = retriever.search(TENANT, "weeks", 3, mode="sparse")
    assert found, "the test documents mention weeks"

    class Shuffled:
        """The real index, but every hit scores the same and comes back reversed."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def search(self, *args: Any, **kwargs: Any) -> Any:
            raw = self.inner.search(*args, **kwargs)
            return [dataclasses.replace(h, score=0.5) for h in reversed(raw)]

    tied = dataclasses.replace(retriever, index=Shuffled(retriever.index))
    hits = tied.search(TENANT, "How long is parental leave?", 3)
    assert len(hits) == 3
    assert [(h.title, h.start) for h in hits] == sorted((h.title, h.start) for h in hits)
