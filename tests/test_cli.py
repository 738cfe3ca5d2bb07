"""The CLI on its own data directory (no server): it takes the lock and works locally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.ownership import DataDirLock


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("DOCENT_DATA_DIR", str(data))
    monkeypatch.setenv("DOCENT_EMBEDDER", "hash")
    monkeypatch.setenv("DOCENT_ANSWER_MIN_SIMILARITY", "0.2")
    monkeypatch.setenv("DOCENT_INGEST_OWN_DOCS", "false")
    monkeypatch.setenv("DOCENT_OFFLINE_PACE_MS", "0")
    return data


def test_ingest_search_ask_list_delete(env: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "garden.md").write_text("Tomatoes need six hours of sun every day to ripen well.")
    (folder / "sub" / "bees.txt").write_text("Bees visit the lavender beds from June to August.")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")

    result = runner.invoke(cli, ["ingest", str(folder)])
    assert result.exit_code == 0, result.output
    assert "2 of 2 files indexed" in result.output

    result = runner.invoke(cli, ["search", "lavender bees", "-k", "1"])
    assert result.exit_code == 0 and "bees" in result.output

    result = runner.invoke(cli, ["ask", "When do bees visit the lavender?"])
    assert result.exit_code == 0, result.output
    assert "June to August" in result.output and "[1]" in result.output

    result = runner.invoke(cli, ["documents", "list"])
    assert result.exit_code == 0 and "title" in result.output
    listed = json.loads(runner.invoke(cli, ["documents", "list", "--json"]).output)
    assert {d["status"] for d in listed} == {"indexed"}
    doc_id = next(d["id"] for d in listed if d["title"] == "garden")
    assert runner.invoke(cli, ["documents", "delete", doc_id]).exit_code == 0
    remaining = json.loads(runner.invoke(cli, ["documents", "list", "--json"]).output)
    assert [d["title"] for d in remaining] == ["bees"]
    # Every command released the data directory.
    lock = DataDirLock(env)
    assert lock.try_acquire()
    lock.release()


def test_rejected_file_is_reported(env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "fake.pdf"
    bad.write_text("not a pdf")
    result = CliRunner().invoke(cli, ["ingest", str(bad)])
    assert result.exit_code == 1
    assert "not a PDF" in result.output


def test_busy_data_directory_without_server_is_explained(env: Path) -> None:
    lock = DataDirLock(env)
    assert lock.try_acquire()
    try:
        result = CliRunner().invoke(cli, ["search", "anything"])
        assert result.exit_code == 1
        assert "busy" in result.output
    finally:
        lock.release()
