"""Questions embedded with 8-bit weights (DOCENT_QUERY_PRECISION=int8) against float32.

    python -m evals.bench_query_precision [--data /work/shared/data/scifact] [--queries 400]
                                          [--others 1500] [--out evals/results/query_precision.json]

On SciFact (train claims as questions; their gold abstracts plus ``--others`` random abstracts
as passages, embedded once in float32): CPU time per question for both models, measured in
alternating rounds in one process; the cosine between the two vectors of each question; and
dense nDCG@10 with each. Passages are always float32 in Docent, so only the questions change.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path("/work/shared/data/scifact")
DEFAULT_OUT = ROOT / "evals" / "results" / "query_precision.json"


def main(argv: list[str] | None = None) -> None:
    from app import minilm

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--model-cache", type=Path, default=ROOT / ".cache" / "models")
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--others", type=int, default=1500)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    queries = {q["_id"]: q["text"] for q in map(json.loads, (args.data / "queries.jsonl").open())}
    qrels: dict[str, set[str]] = {}
    for line in (args.data / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        q, d, _ = line.split("\t")
        qrels.setdefault(q, set()).add(d)
    corpus = {
        d["_id"]: (d.get("title", "") + " " + d["text"]).strip()
        for d in map(json.loads, (args.data / "corpus.jsonl").open())
    }
    gold = {d for ds in qrels.values() for d in ds} & set(corpus)
    others = random.Random(0).sample(sorted(set(corpus) - gold), args.others)
    doc_ids = sorted(gold) + others
    asked = [q for q in qrels if q in queries][: args.queries]

    full = minilm.load("onnx", args.model_cache, threads=1)
    small = minilm.load("onnx", args.model_cache, threads=1, query_precision="int8")
    started = time.perf_counter()
    passages = np.asarray(full.embed_documents([corpus[d] for d in doc_ids]), dtype=np.float32)
    print(f"{len(doc_ids)} passages embedded in {time.perf_counter() - started:.0f} s")

    def run(model: Any) -> tuple[np.ndarray[Any, Any], float]:
        started = time.process_time()
        vectors = np.asarray([model.embed_query(queries[q]) for q in asked], dtype=np.float32)
        return vectors, (time.process_time() - started) * 1000 / len(asked)

    cpu: dict[str, list[float]] = {"float32": [], "int8": []}
    for _ in range(3):  # alternating rounds, side by side
        q32, ms32 = run(full)
        q8, ms8 = run(small)
        cpu["float32"].append(ms32)
        cpu["int8"].append(ms8)

    def ndcg(vectors: np.ndarray[Any, Any]) -> float:
        scores = vectors @ passages.T
        total = 0.0
        for i, q in enumerate(asked):
            top = np.argsort(-scores[i])[:10]
            dcg = sum(1 / math.log2(r + 2) for r, j in enumerate(top) if doc_ids[j] in qrels[q])
            ideal = sum(1 / math.log2(r + 2) for r in range(min(10, len(qrels[q]))))
            total += dcg / ideal
        return total / len(asked)

    cosine = np.sum(q32 * q8, axis=1) / (np.linalg.norm(q32, axis=1) * np.linalg.norm(q8, axis=1))
    results = {
        "command": "python -m evals.bench_query_precision",
        "passages": len(doc_ids),
        "questions": len(asked),
        "cpu_ms_per_question": {k: round(statistics.median(v), 2) for k, v in cpu.items()},
        "cpu_ratio": round(statistics.median(cpu["float32"]) / statistics.median(cpu["int8"]), 2),
        "cosine_median": round(float(np.median(cosine)), 4),
        "cosine_min": round(float(cosine.min()), 4),
        "ndcg_at_10": {"float32": round(ndcg(q32), 4), "int8": round(ndcg(q8), 4)},
    }
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
