"""Settings whose defaults depend on each other."""

from __future__ import annotations

import pytest

from app.settings import Settings


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DOCENT_EMBEDDER",
        "DOCENT_EMBEDDING_RUNTIME",
        "DOCENT_QUERY_PRECISION",
        "DOCENT_CACHE_THRESHOLD",
        "DOCENT_CACHE_FALLBACK_THRESHOLD",
    ):
        monkeypatch.delenv(name, raising=False)


def thresholds(**values: object) -> tuple[float, float]:
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return settings.cache_threshold, settings.cache_fallback_threshold


def test_cache_thresholds_follow_how_questions_are_embedded() -> None:
    # The default: MiniLM on ONNX Runtime with 8-bit questions.
    assert Settings(_env_file=None).query_precision == "int8"  # type: ignore[call-arg]
    assert thresholds() == (0.945, 0.935)
    # float32 questions, or any embedder that has no 8-bit copy, keep float32's thresholds.
    assert thresholds(query_precision="float32") == (0.95, 0.94)
    assert thresholds(embedder="hash") == (0.95, 0.94)
    assert thresholds(embedding_runtime="torch") == (0.95, 0.94)


def test_a_threshold_that_was_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert thresholds(cache_threshold=0.97) == (0.97, 0.935)
    assert thresholds(query_precision="float32", cache_fallback_threshold=0.93) == (0.95, 0.93)
    monkeypatch.setenv("DOCENT_CACHE_THRESHOLD", "0.96")
    monkeypatch.setenv("DOCENT_QUERY_PRECISION", "float32")
    assert thresholds() == (0.96, 0.94)


def test_the_relay_interval_must_leave_room_under_the_stall_deadline() -> None:
    fits = Settings(_env_file=None, stall_s=1.0, relay_interval_ms=500)  # type: ignore[call-arg]
    assert fits.relay_interval_ms == 500
    with pytest.raises(ValueError, match=r"RELAY_INTERVAL_MS \(600\) must be under half of"):
        Settings(_env_file=None, stall_s=1.0, relay_interval_ms=600)  # type: ignore[call-arg]
