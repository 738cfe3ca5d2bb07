"""Figures of an evaluation run: the summary of each set, the comparison with a stored
baseline, and a readable report (Markdown with plots) beside the JSON.

Headline measures are the ones the gate watches. A headline measure has regressed when it
moved the wrong way by more than ``tolerance`` (2%) of its baseline value, or by more than
half a percentage point where 2% of the baseline is less than that (a measure at 0, such as
false cache hits, would otherwise fail on any change). Latency and cost are reported, not
gated: on a shared machine they move more than 2% between identical runs.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.evaluation import metrics as m
from app.evaluation.runner import QuestionResult, RunData

# name -> True when higher is better.
HEADLINE: dict[str, dict[str, bool]] = {
    "docent": {
        "hit_at_5": True,
        "mrr_at_10": True,
        "ndcg_at_10": True,
        "citation_precision": True,
        "citation_recall": True,
        "answered_when_answerable": True,
        "declined_when_unanswerable": True,
        "grounding_pass_rate": True,
        "risk_accuracy": True,
    },
    "scifact": {
        "hit_at_10": True,
        "mrr_at_10": True,
        "ndcg_at_10": True,
        "evidence_cited": True,
        "citation_precision": True,
    },
    "cache": {
        "hit_rate": True,
        "false_hit_rate": False,
        "fallback_hit_rate": True,
        "fallback_false_hit_rate": False,
    },
}
ABSOLUTE_FLOOR = 0.005
ANSWER_MEASURES = (
    "citation_precision",
    "citation_recall",
    "answered_when_answerable",
    "declined_when_unanswerable",
    "grounding_pass_rate",
    "fully_grounded",
    "risk_accuracy",
    "tokens_in_mean",
    "tokens_out_mean",
    "cost_usd_total",
)


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _step_times(results: list[QuestionResult]) -> dict[str, dict[str, float | None]]:
    steps: dict[str, list[float]] = {"search_ms": [r.search_ms for r in results]}
    for r in results:
        for name, ms in r.timings.items():
            steps.setdefault(name, []).append(ms)
    return {
        name: {
            "p50": _r(m.percentile(values, 50), 1),
            "p95": _r(m.percentile(values, 95), 1),
            "n": len(values),
        }
        for name, values in steps.items()
    }


def summarise(run: RunData) -> dict[str, Any]:
    """The figures of one golden-set run (not the cache pairs: ``summarise_cache``)."""
    results = run.results
    judged = [r for r in results if r.hit_1 is not None]
    answerable = [r for r in results if r.kind == "answerable" and r.outcome]
    unanswerable = [r for r in results if r.kind == "unanswerable" and r.outcome]
    answered = [r for r in answerable if not r.declined]
    with_risk = [r for r in results if r.risk_expected and r.risk]
    summary: dict[str, Any] = {
        "questions": len(results),
        "answerable": sum(r.kind == "answerable" for r in results),
        "unanswerable": sum(r.kind == "unanswerable" for r in results),
        "hit_at_1": _r(m.mean(r.hit_1 for r in judged)),
        "hit_at_3": _r(m.mean(r.hit_3 for r in judged)),
        "hit_at_5": _r(m.mean(r.hit_5 for r in judged)),
        "hit_at_10": _r(m.mean(r.hit_10 for r in judged)),
        "mrr_at_10": _r(m.mean(r.reciprocal_rank for r in judged)),
        "ndcg_at_10": _r(m.mean(r.ndcg_10 for r in judged)),
        "citation_precision": _r(m.mean(r.citation_precision for r in answered)),
        "citation_recall": _r(m.mean(r.citation_recall for r in answered)),
        "answered_when_answerable": _r(len(answered) / len(answerable)) if answerable else None,
        "declined_when_unanswerable": (
            _r(sum(r.declined for r in unanswerable) / len(unanswerable)) if unanswerable else None
        ),
        "grounding_pass_rate": _r(m.mean(r.grounding_pass_rate for r in answered)),
        "fully_grounded": _r(m.mean(float(bool(r.grounded)) for r in answered)),
        "risk_accuracy": (
            _r(sum(r.risk == r.risk_expected for r in with_risk) / len(with_risk))
            if with_risk
            else None
        ),
        "errors": sum(r.outcome == "error" for r in results),
        "steps_ms": _step_times(results),
        "tokens_in_mean": _r(m.mean(float(r.input_tokens) for r in results if r.outcome), 1),
        "tokens_out_mean": _r(m.mean(float(r.output_tokens) for r in results if r.outcome), 1),
        "cost_usd_total": round(sum(r.cost_usd for r in results), 6),
        "documents": run.documents,
        "chunks": run.chunks,
        "ingest_s": round(run.ingest_s, 1),
        "settings": run.settings,
    }
    if not any(r.outcome for r in results):  # --retrieval-only: answers were not measured
        for key in ANSWER_MEASURES:
            summary.pop(key, None)
    if run.set_name == "scifact" and "citation_recall" in summary:
        # An answer about a claim should cite its evidence abstract.
        summary["evidence_cited"] = summary["citation_recall"]
    extra: dict[str, list[float | None]] = {}
    for r in results:
        for name, value in r.extra.items():
            extra.setdefault(name, []).append(value)
    for name, values in sorted(extra.items()):
        summary[name] = _r(m.mean(values))
    return summary


@dataclass
class Regression:
    set_name: str
    metric: str
    baseline: float
    current: float | None

    def describe(self) -> str:
        now = "missing" if self.current is None else f"{self.current:.4f}"
        return f"{self.set_name}.{self.metric}: {self.baseline:.4f} -> {now}"


def compare(
    current: dict[str, dict[str, Any]],
    baseline: dict[str, dict[str, Any]],
    tolerance: float = 0.02,
) -> list[Regression]:
    """Headline measures of the sets run now that are worse than the baseline's. A measure
    this run did not take (answers with --retrieval-only) is not judged; one it took and
    could not compute (None) counts as worse."""
    regressions = []
    for set_name, figures in current.items():
        base = baseline.get(set_name)
        if base is None:
            continue
        for metric, higher in HEADLINE.get(set_name, {}).items():
            was = base.get(metric)
            if was is None or metric not in figures:  # not measured by the baseline or now
                continue
            now = figures.get(metric)
            allowed = max(abs(was) * tolerance, ABSOLUTE_FLOOR)
            worse = now is None or (was - now > allowed if higher else now - was > allowed)
            if worse:
                regressions.append(Regression(set_name, metric, float(was), now))
    return regressions


def headline_only(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a baseline file keeps: the headline measures of each set."""
    return {
        name: {k: figures.get(k) for k in HEADLINE.get(name, {}) if k in figures}
        for name, figures in summaries.items()
    }


def write_report(
    out: Path,
    summaries: dict[str, dict[str, Any]],
    runs: dict[str, RunData],
    baseline: dict[str, dict[str, Any]] | None,
    regressions: list[Regression],
    command: str,
    details: dict[str, Any] | None = None,
) -> Path:
    """``results.json`` (every figure and every question), ``report.md`` and its plots in
    ``out``; the path of the report."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "summaries": summaries,
        "baseline": baseline,
        "regressions": [r.describe() for r in regressions],
        "runs": {name: run.as_json() for name, run in runs.items()} | (details or {}),
    }
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    plots = _plots(out, summaries, runs, baseline)
    lines = [f"# Docent evaluation\n\n`{command}`\n"]
    if baseline is not None:
        verdict = (
            "**No headline measure regressed**"
            if not regressions
            else "**Regressed:** " + "; ".join(r.describe() for r in regressions)
        )
        lines.append(verdict + " (more than 2% worse than the baseline).\n")
    for name, figures in summaries.items():
        lines.append(f"## {name}\n")
        lines.append("| measure | now | baseline |\n|---|---|---|")
        base = (baseline or {}).get(name, {})
        for key, value in figures.items():
            if isinstance(value, dict | list):
                continue
            mark = " (headline)" if key in HEADLINE.get(name, {}) else ""
            lines.append(f"| {key}{mark} | {_fmt(value)} | {_fmt(base.get(key))} |")
        steps = figures.get("steps_ms")
        if steps:
            lines.append("\n| step | p50 ms | p95 ms |\n|---|---|---|")
            for step, t in steps.items():
                lines.append(f"| {step} | {_fmt(t['p50'])} | {_fmt(t['p95'])} |")
        lines.append("")
    for title, file in plots:
        lines.append(f"![{title}]({file})\n")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _save(fig: Any, path: Path, title: str) -> tuple[str, str]:
    """Write a figure beside the report and free it; (title, file name) for the report."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return title, path.name


def _plots(
    out: Path,
    summaries: dict[str, dict[str, Any]],
    runs: dict[str, RunData],
    baseline: dict[str, dict[str, Any]] | None,
) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []
    names = [n for n in summaries if HEADLINE.get(n)]
    if names:
        fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            keys = [k for k in HEADLINE[name] if summaries[name].get(k) is not None]
            now = [float(summaries[name][k]) for k in keys]
            ax.barh(keys, now, color="#3b6ea8", label="now")
            base = (baseline or {}).get(name, {})
            marks = [(k, base[k]) for k in keys if base.get(k) is not None]
            if marks:
                ax.scatter([v for _, v in marks], [k for k, _ in marks], color="#d95f02",
                           zorder=3, label="baseline")  # fmt: skip
            ax.set_xlim(0, 1)
            ax.set_title(name)
            ax.legend(loc="lower right", fontsize=7)
            ax.tick_params(labelsize=7)
        made.append(_save(fig, out / "headline.png", "headline measures against the baseline"))
    timed = {n: r for n, r in runs.items() if any(q.timings for q in r.results)}
    if timed:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        data, labels = [], []
        for name, run in timed.items():
            for step in ("retrieve_ms", "first_token_ms", "total_ms"):
                values = [q.timings[step] for q in run.results if step in q.timings]
                if values:
                    data.append(values)
                    labels.append(f"{name}\n{step.removesuffix('_ms')}")
        ax.boxplot(data, tick_labels=labels, showfliers=False)
        ax.set_ylabel("ms")
        ax.tick_params(labelsize=7)
        ax.set_title("time per step (audit rows)")
        made.append(_save(fig, out / "steps.png", "time per step"))
    ranked = {n: r for n, r in runs.items() if any(q.relevant for q in r.results)}
    if ranked:
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for name, run in ranked.items():
            judged = [q for q in run.results if q.relevant]
            curve = [
                statistics.fmean(m.hit_at(q.retrieved, set(q.relevant), k) for q in judged)
                for k in range(1, 11)
            ]
            ax.plot(range(1, 11), curve, marker="o", label=name)
        ax.set_xlabel("k")
        ax.set_ylabel("hit@k")
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title("retrieval: a gold chunk in the top k")
        made.append(_save(fig, out / "hit_at_k.png", "hit@k"))
    return made
