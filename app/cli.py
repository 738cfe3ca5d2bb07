"""The ``docent`` command line."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from app.backends import Docent, connect
from app.db import Database
from app.errors import DocentError
from app.settings import Settings

# LlamaIndex and tokenizers read these at import time; keep everything offline and quiet.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

cli = typer.Typer(
    help="Docent: ask questions about your documents and get cited answers.",
    no_args_is_help=True,
    add_completion=False,
)
documents_cli = typer.Typer(help="List or delete documents.", no_args_is_help=True)
cli.add_typer(documents_cli, name="documents")
console = Console()
err = Console(stderr=True)

SUPPORTED = {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt", ".text"}


@contextmanager
def _docent() -> Iterator[Docent]:
    client = None
    try:
        client = connect(Settings())
        yield client
    except DocentError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
    finally:
        if client is not None:
            client.close()


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the web chat and API on this machine (the embedded default)."""
    import uvicorn

    from app.ownership import DataDirLock
    from app.services import Services
    from app.web.app import create_app

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The SDKs' HTTP clients log every model request at INFO: one line per answer that the
    # audit row already holds, and each costs the event loop a hand-over to the log thread.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire()
    except DocentError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
    try:
        console.print("Loading the embedding model and opening the index…")
        services = Services.build(settings)
        url = f"http://{settings.host}:{settings.port}"
        local_token = secrets.token_urlsafe(32)
        lock.advertise(url, local_token)
        console.print(f"Docent is running at [bold]{url}[/bold] (data in {settings.data_dir})")
        app = create_app(settings, services, local_token=local_token)
        quiet_garbage_collector()
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            timeout_graceful_shutdown=5,
        )
        services.close()
    finally:
        lock.release()


def quiet_garbage_collector() -> None:
    """Keep the cyclic garbage collector from pausing every stream of the server.

    Measured (evals/bench_answer.py, 50 streams): with the defaults a full collection walked
    the whole heap (models, libraries, index) every few seconds and held the event loop for
    about 200 ms each time, which was the whole tail of the added time to first byte. So:
    what exists once the service is built lives as long as the process and is frozen out of
    collections; and young collections run every 50,000 allocations instead of 700, so the
    short-lived cycles of one answer die before they are promoted to the older generations."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


@cli.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to add.")],
    collection: Annotated[str | None, typer.Option(help="Collection to add them to.")] = None,
) -> None:
    """Add documents (files, or folders searched recursively) and wait until indexed."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in SUPPORTED))
        elif p.is_file():
            files.append(p)
        else:
            err.print(f"[red]{p} does not exist.[/red]")
            raise typer.Exit(2)
    if not files:
        err.print(f"[yellow]No supported files found. Docent reads {', '.join(sorted(SUPPORTED))}.")
        raise typer.Exit(2)
    target = collection or Settings().default_collection
    with (
        _docent() as client,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
        ) as bar,
    ):
        tasks: dict[str, TaskID] = {}

        def on_progress(name: str, status: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=max(total, 1), status=status)
            bar.update(tasks[name], completed=done, total=max(total, 1), status=status)

        outcome = client.ingest(files, target, on_progress)
    failed = {k: v for k, v in outcome.items() if v.startswith(("rejected", "failed"))}
    for path, reason in failed.items():
        err.print(f"[red]{path}: {reason}[/red]")
    console.print(f"{len(outcome) - len(failed)} of {len(outcome)} files indexed or unchanged.")
    if failed:
        raise typer.Exit(1)


@cli.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many chunks.")] = 5,
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    mode: Annotated[str, typer.Option(help="hybrid, dense or sparse.")] = "hybrid",
) -> None:
    """Show the chunks that best match a query."""
    with _docent() as client:
        hits = client.search(query, top_k, collection, mode)
    if not hits:
        console.print("No matching passages. Add documents with `docent ingest PATH`.")
        return
    for i, h in enumerate(hits, start=1):
        where = f", page {h.page}" if h.page else ""
        console.print(f"[bold]{i}. {h.title}[/bold]{where}  [dim]score {h.score:.4f}[/dim]")
        console.print("   " + " ".join(h.text.split())[:400], highlight=False, markup=False)


@cli.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
) -> None:
    """Ask a question; the answer streams to the terminal with its sources."""
    sources: list[dict[str, object]] = []
    with _docent() as client:
        for event, data in client.ask(question, collection):
            if event == "sources":
                sources = list(data["sources"])
            elif event == "delta":
                sys.stdout.write(str(data["text"]))
                sys.stdout.flush()
            elif event == "citations":
                cited = {c["n"] for c in data["citations"]}
                sys.stdout.write("\n\n")
                for s in sources:
                    if s["n"] in cited:
                        page = f", page {s['page']}" if s.get("page") else ""
                        console.print(f"[{s['n']}] {s['title']}{page}", markup=False)
            elif event == "error":
                err.print(f"\n[red]{data['message']}[/red]")
                raise typer.Exit(1)


@cli.command("eval")
def evaluate(
    sets: Annotated[
        str, typer.Option(help="Golden sets, comma-separated: docent, scifact, cache.")
    ] = "docent,cache",
    scifact: Annotated[
        Path | None,
        typer.Option(help="SciFact in the BEIR layout (corpus.jsonl, queries.jsonl, qrels/)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Ask only the first N questions.")] = None,
    scifact_others: Annotated[
        int, typer.Option(help="Abstracts indexed beside the judged ones (SciFact).")
    ] = 1000,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep the indexed sets here between runs.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where results.json and report.md go.")] = Path(
        "evals/results/eval"
    ),
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline file (default: the one shipped with Docent).")
    ] = None,
    update_baseline: Annotated[
        bool, typer.Option(help="Store these figures as this configuration's baseline.")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(help="How much worse than the baseline a measure may get.")
    ] = 0.02,
    no_answers: Annotated[
        bool, typer.Option("--retrieval-only", help="Judge retrieval only; ask no model.")
    ] = False,
    judge: Annotated[
        str | None,
        typer.Option(help="A model for ragas's judged measures, e.g. openai:gpt-4o-mini."),
    ] = None,
) -> None:
    """Run golden sets through the real answer path and compare with the baseline.

    Exits 1 when a headline measure is more than --tolerance worse than the baseline."""
    from app.evaluation import suite

    options = suite.Options(
        sets=[s.strip() for s in sets.split(",") if s.strip()],
        scifact=scifact,
        limit=limit,
        scifact_others=scifact_others,
        workdir=workdir,
        out=out,
        baseline=baseline,
        update_baseline=update_baseline,
        tolerance=tolerance,
        answers=not no_answers,
        judge=judge,
        command="docent eval " + " ".join(sys.argv[2:]),
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        try:
            outcome = suite.run(options, progress=on_progress)
        except DocentError as exc:
            err.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(2) from exc
    for name, figures in outcome.summaries.items():
        table = Table(title=name)
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key, value in figures.items():
            if not isinstance(value, dict | list):
                table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(table)
    for note in outcome.notes:
        err.print(note)
    console.print(f"report: {outcome.report}")
    if update_baseline:
        console.print(f"Stored as the baseline of {outcome.baseline_key}.")
    elif not outcome.compared:
        console.print(
            f"There was no baseline for this configuration ({outcome.baseline_key}) to "
            "compare with; --update-baseline stores one."
        )
    elif outcome.regressions:
        for r in outcome.regressions:
            err.print(f"[red]regressed: {r.describe()}[/red]")
        raise typer.Exit(1)
    else:
        console.print("No headline measure regressed against the baseline.")


@documents_cli.command("list")
def documents_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List documents with their status."""
    with _docent() as client:
        docs = client.documents()
    if as_json:
        sys.stdout.write(json.dumps([d.model_dump(mode="json") for d in docs], indent=2) + "\n")
        return
    table = Table("title", "collection", "status", "chunks", "version")
    table.add_column("id", no_wrap=True, min_width=36)
    for d in docs:
        status = d.status.value + (f" ({d.error})" if d.error else "")
        table.add_row(d.title, d.collection, status, str(d.chunk_count), str(d.version), d.id)
    console.print(table)


@documents_cli.command("delete")
def documents_delete(document_id: Annotated[str, typer.Argument(help="Document id.")]) -> None:
    """Delete a document and its chunks."""
    with _docent() as client:
        client.delete(document_id)
    console.print(f"Deleted {document_id}.")


@contextmanager
def _database() -> Iterator[Database]:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.sqlalchemy_url)
    try:
        db.migrate()
        yield db
    except DocentError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
    finally:
        db.close()


def _new_user(username: str, role: str, password: str | None) -> None:
    from app import accounts

    if password is None:
        password = typer.prompt(
            f"Password for {username} (10 characters or more)",
            hide_input=True,
            confirmation_prompt=True,
        )
    with _database() as db:
        accounts.create_user(db, username, password, "admin" if role == "admin" else "user")
    console.print(
        f"Created {role} [bold]{username}[/bold]. Sign-in is required from now on; sign in "
        "at /login."
    )


_PASSWORD = typer.Option(
    help="The password (prompted for, hidden, when left out; avoid putting it in shell history)."
)


@cli.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Argument(help="The admin's username.")],
    password: Annotated[str | None, _PASSWORD] = None,
) -> None:
    """Create an admin of the web pages (chat and console). Until the first admin exists,
    Docent is open to anyone who can reach it; after that, everyone signs in."""
    _new_user(username, "admin", password)


@cli.command("create-user")
def create_user(
    username: Annotated[str, typer.Argument(help="The user's username.")],
    password: Annotated[str | None, _PASSWORD] = None,
) -> None:
    """Create a user of the chat (not the console)."""
    _new_user(username, "user", password)


@cli.command("create-api-key")
def create_api_key(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'intranet-bot'.")],
    role: Annotated[str, typer.Option(help="'user' (search and chat) or 'admin'.")] = "user",
) -> None:
    """Create a key for API clients (Authorization: Bearer KEY). It is shown once."""
    from app import accounts

    if role not in ("user", "admin"):
        err.print("[red]--role is 'user' or 'admin'.[/red]")
        raise typer.Exit(2)
    with _database() as db:
        key = accounts.create_api_key(db, name, "admin" if role == "admin" else "user")
    console.print(f"API key for {name} ({role}); it is not shown again:")
    sys.stdout.write(key + "\n")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
