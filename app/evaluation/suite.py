"""``docent eval``: golden sets through the real answer path, compared with a baseline.

Sets: ``docent`` (Docent's own documentation), ``scifact`` (needs ``data``), ``cache`` (the
question pairs, through the semantic cache). Each set runs in a working directory of its own
with this installation's settings; the figures, the baseline's and every regression go to
``out`` as ``results.json`` and ``report.md`` with plots.

The baseline file holds the headline measures per configuration (embedder, provider chain and
the family of CPU kernels the model runs on): a run is only compared with a baseline made the
same way, and ``update_baseline`` stores the current figures as that configuration's baseline.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import InvalidRequest
from app.evaluation import cache_pairs, golden, ragas_measures, runner
from app.evaluation.report import Regression, compare, headline_only, summarise, write_report
from app.settings import Settings

SETS = ("docent", "scifact", "cache")


@dataclass
class Options:
    sets: list[str] = field(default_factory=lambda: ["docent", "cache"])
    scifact: Path | None = None
    limit: int | None = None
    scifact_others: int = 1000
    workdir: Path | None = None
    out: Path = Path("evals/results/eval")
    baseline: Path | None = None
    update_baseline: bool = False
    tolerance: float = 0.02
    answers: bool = True
    judge: str | None = None
    """A model for ragas's judged measures ('openai:gpt-4o-mini'); None: they are skipped."""
    command: str = "docent eval"


@dataclass
class Outcome:
    summaries: dict[str, dict[str, Any]]
    regressions: list[Regression]
    report: Path
    compared: bool
    baseline_key: str
    notes: list[str] = field(default_factory=list)


def configuration(settings: Settings) -> str:
    """The baseline's key: embedder, provider chain and the CPU kernels the model runs on."""
    return f"{settings.embedder}|{' '.join(settings.chain.split())}|{cpu_kernels()}"


def cpu_kernels(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Which family of ONNX Runtime's CPU kernels this machine gets. The same model files give
    slightly different vectors on each (8-bit products are summed differently with and without
    VNNI, float sums in a different order with AVX-512), and that moves a few answers of the
    golden sets near a threshold: with the same code and model files, the cache pairs' hit rate
    was 0.170 on one shared machine and 0.141 on one with AVX-512 VNNI. So figures are only
    compared with a baseline measured on the same family."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return machine or "unknown"
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "x86_64"
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    if "avx512_vnni" in flags:
        return "x86_64-avx512vnni"
    if "avx512f" in flags:
        return "x86_64-avx512"
    if "avx_vnni" in flags:
        return "x86_64-avxvnni"
    if "avx2" in flags:
        return "x86_64-avx2"
    return "x86_64"


def default_baseline() -> Path:
    return golden.data_dir() / "baseline.json"


def run(
    options: Options,
    settings: Settings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Outcome:
    unknown = [s for s in options.sets if s not in SETS]
    if unknown or not options.sets:
        raise InvalidRequest(f"Unknown golden set(s) {unknown}; choose from {', '.join(SETS)}.")
    if "scifact" in options.sets and options.scifact is None:
        raise InvalidRequest("The scifact set needs its data: --scifact PATH (BEIR layout).")
    base = settings or Settings()
    key = configuration(base)
    baseline_path = options.baseline or default_baseline()
    stored: dict[str, Any] = {}
    if baseline_path.is_file():
        stored = json.loads(baseline_path.read_text(encoding="utf-8"))
    baseline, compared_with, tolerance = _pick_baseline(stored, key, options.tolerance)

    temporary = options.workdir is None
    root = options.workdir or Path(tempfile.mkdtemp(prefix="docent-eval-"))
    summaries: dict[str, dict[str, Any]] = {}
    runs: dict[str, runner.RunData] = {}
    details: dict[str, Any] = {}
    notes: list[str] = []
    judge = ragas_measures.Judge.from_spec(options.judge, base) if options.judge else None
    try:
        for name in options.sets:
            tick = (lambda d, t, n=name: progress(n, d, t)) if progress else None
            if name == "cache":
                pairs = cache_pairs.load_pairs()
                results = cache_pairs.run_pairs(
                    runner.workdir_settings(base, root / "cache"), pairs
                )
                summaries[name] = cache_pairs.summarise_cache(results, base)
                details[name] = cache_pairs.pairs_json(results)
                continue
            if name == "docent":
                gset = golden.load_docent()
            else:
                assert options.scifact is not None
                gset = golden.load_scifact(options.scifact, options.limit, options.scifact_others)
            if options.limit and name == "docent":
                gset.questions = gset.questions[: options.limit]
            data = runner.run_set(
                gset, runner.workdir_settings(base, root / name), options.answers, tick
            )
            if options.answers:
                notes += ragas_measures.score(data.results, judge)
            runs[name] = data
            summaries[name] = summarise(data)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)

    regressions = compare(summaries, baseline, tolerance) if baseline else []
    if options.update_baseline:
        own = stored.get(key) or {}
        stored[key] = {**own, **headline_only(summaries)}
        baseline_path.parent.mkdir(parents=True, exist_ok=True)
        baseline_path.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    report = write_report(
        options.out, summaries, runs, baseline, regressions, options.command, details
    )
    compared = baseline is not None and any(name in baseline for name in summaries)
    if compared and compared_with != key:
        notes.append(
            f"No baseline for this machine's CPU kernels ({key}): compared with "
            f"{compared_with}'s, allowing {tolerance:.0%} instead of {options.tolerance:.0%} "
            "(8-bit question vectors differ between CPUs). --update-baseline stores this "
            "machine's."
        )
    return Outcome(summaries, regressions, report, compared, key, notes)


# How much worse a measure may be against a baseline from another family of CPU kernels: the
# largest difference seen between two machines with the same code was 17% (the cache pairs'
# hit rate, 0.170 against 0.141).
OTHER_CPU_TOLERANCE = 0.25


def _pick_baseline(
    stored: dict[str, Any], key: str, tolerance: float
) -> tuple[dict[str, Any] | None, str, float]:
    """This configuration's baseline, its key and the tolerance to judge it with. Without one
    for this machine's CPU kernels, the same configuration's from another family, judged
    with OTHER_CPU_TOLERANCE."""
    if key in stored:
        return stored[key], key, tolerance
    config = key.rsplit("|", 1)[0]
    others = sorted(k for k in stored if k.rsplit("|", 1)[0] == config)
    if not others:
        return None, key, tolerance
    return stored[others[0]], others[0], max(tolerance, OTHER_CPU_TOLERANCE)
