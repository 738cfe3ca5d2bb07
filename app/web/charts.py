"""The dashboard's charts, drawn by matplotlib as SVG on the server (no script on the page).

Each chart is a function of the figures in app/answer/metrics.py. The object-oriented API is
used (no pyplot state), so charts can be drawn from several threads at once.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: no display here

from matplotlib.figure import Figure

ACCENT = "#2458c6"
MUTED = "#5b6673"


def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(6.4, 3.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(colors=MUTED, labelsize=9)
    return fig, ax


def _svg(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def _empty(ax: Any, message: str = "No answers yet") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", color=MUTED, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def steps(m: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    rows = m["steps"]
    if not rows:
        _empty(ax)
    else:
        names = [r["name"] for r in rows][::-1]
        ax.barh(names, [r["p90_ms"] for r in rows][::-1], color="#c9d6f2", label="90th percentile")
        ax.barh(names, [r["median_ms"] for r in rows][::-1], color=ACCENT, label="median")
        ax.set_xlabel("milliseconds", color=MUTED, fontsize=9)
        ax.legend(frameon=False, fontsize=8)
    return _svg(fig)


def ttft(m: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    values = m["time_to_first_token_ms"]["values"]
    if not values:
        _empty(ax)
    else:
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color=ACCENT)
        median = m["time_to_first_token_ms"]["median"]
        ax.axvline(median, color="#a12828", linewidth=1)
        ax.annotate(
            f"median {median:.0f} ms",
            (median, 0),
            xytext=(4, 4),
            textcoords="offset points",
            color="#a12828",
            fontsize=8,
        )
        ax.set_xlabel("time to first token, ms", color=MUTED, fontsize=9)
        ax.set_ylabel("answers", color=MUTED, fontsize=9)
    return _svg(fig)


def _per_day(
    key: str, label: str, percent: bool = False, bar: bool = False
) -> Callable[..., bytes]:
    def draw(m: dict[str, Any]) -> bytes:
        fig, ax = _figure()
        days = [d for d in m["by_day"] if d[key] is not None]
        if not days:
            _empty(ax)
        else:
            xs = [d["day"][5:] for d in days]
            ys = [d[key] * (100 if percent else 1) for d in days]
            if bar:
                ax.bar(xs, ys, color=ACCENT)
            else:
                ax.plot(xs, ys, marker="o", color=ACCENT)
            if percent:
                ax.set_ylim(0, 105)
            else:
                ax.set_ylim(0, max(ys) * 1.15 or 1)
            ax.set_ylabel(label, color=MUTED, fontsize=9)
            ax.tick_params(axis="x", labelrotation=45)
        return _svg(fig)

    return draw


def provider_failures(m: dict[str, Any]) -> bytes:
    fig, ax = _figure()
    rows = m["provider_failures"]
    if not rows:
        _empty(ax, "No provider failures")
    else:
        providers = sorted({r["provider"] for r in rows})
        kinds = sorted({r["kind"] for r in rows})
        left = [0] * len(providers)
        for kind in kinds:
            counts = [
                sum(r["count"] for r in rows if r["provider"] == p and r["kind"] == kind)
                for p in providers
            ]
            ax.barh(providers, counts, left=left, label=kind)
            left = [a + b for a, b in zip(left, counts, strict=True)]
        ax.set_xlabel("failed attempts", color=MUTED, fontsize=9)
        ax.legend(frameon=False, fontsize=8)
    return _svg(fig)


CHARTS: dict[str, tuple[str, Callable[[dict[str, Any]], bytes]]] = {
    "steps": ("Time per pipeline step", steps),
    "ttft": ("Time to first token", ttft),
    "cost": ("Cost per day (USD)", _per_day("cost_usd", "USD", bar=True)),
    "cache": ("Cache hit rate per day", _per_day("cache_hit_rate", "% of answers", True)),
    "grounding": (
        "Grounding pass rate per day",
        _per_day("grounding_pass_rate", "% of sentences supported", True),
    ),
    "failures": ("Provider errors by provider", provider_failures),
}
