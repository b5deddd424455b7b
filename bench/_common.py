"""Shared helpers for the bench/ scripts: subprocess workers, peak memory, hardware peaks, tables, data.

Every configuration runs in a fresh Python process (`run_worker`), so its peak RSS is its own and one
configuration's threads, caches or allocator state cannot leak into the next. A worker reports its peak
RSS (`resource.getrusage().ru_maxrss`) and the growth over the RSS it had after the framework imports
(`import_frameworks`) and input loading (`mark_baseline`), i.e. roughly what the model and the work cost.

Shortcut: FLOP counts for transformers are estimates from the real token lengths (no padding), so the
GFLOP/s columns show useful work per second; padding and tokenization show up as a lower fraction of peak.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DATA = BENCH_DIR.parent.parent / "shared" / "data" / "scifact"
BI_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
CROSS_ENCODER_ID = "cross-encoder/ms-marco-MiniLM-L-12-v2"
_RESULT_MARKER = "BENCH_RESULT "
_LOAD_AT_START = os.getloadavg()  # the parent imports this module first thing, before any worker runs
_VERSIONED = ("bicross", "torch", "transformers", "sentence-transformers", "tokenizers", "onnxruntime",
              "faiss-cpu", "numpy", "optimum", "optimum-onnx")

# --------------------------------------------------------------------------------------------------------
# Arguments, data and models


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --threads, --quick, shared by every script."""
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="BEIR SciFact folder (corpus.jsonl, queries.jsonl, qrels/test.tsv); default %(default)s")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for torch, BLAS, onnxruntime and faiss on both sides (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")


def load_corpus(data: Path) -> list[Any]:
    """SciFact documents as bicross Documents (title + text is what both sides encode)."""
    from bicross.corpus import load_documents

    corpus = Path(data) / "corpus.jsonl"
    if not corpus.is_file():
        sys.exit(f"no corpus.jsonl in {data}: pass --data pointing at a BEIR folder such as ../shared/data/scifact")
    return load_documents(corpus)


def load_test_split(data: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Test queries (id -> text, only judged ones, file order) and their qrels."""
    from bicross.evaluation.beir import load_beir_split

    return load_beir_split(data, "test")


def packaged_model_folder(hub_id: str) -> Path:
    """The folder of a packaged offline copy (bicross[offline-models]); both sides load exactly this."""
    from bicross.models.catalog import find_packaged_copy

    found = find_packaged_copy(hub_id)
    if found is None:
        sys.exit(f"packaged copy of {hub_id} not installed: pip install -e '.[offline-models]'")
    return found[1]


def transformer_flops(lengths: Sequence[int], layers: int, hidden: int, intermediate: int) -> float:
    """Forward FLOPs of a BERT encoder over texts of these token lengths (dense layers + attention, no padding).

    Per layer and token: 2 * (4 h^2 + 2 h f) for the projections and feed-forward; per layer and text:
    4 L^2 h for the two attention products (scores and weighted sum).
    """
    dense = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)
    return float(sum(layers * (length * dense + 4 * length * length * hidden) for length in lengths))


def model_shape(folder: Path) -> tuple[int, int, int]:
    """(layers, hidden, intermediate) from a folder's config.json."""
    config = json.loads((Path(folder) / "config.json").read_text())
    return config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]


# --------------------------------------------------------------------------------------------------------
# Workers: one configuration per fresh process

_baseline_rss_kib: int | None = None


def _current_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mark_baseline() -> None:
    """Record the RSS after imports and data loading; the worker's peak is reported relative to it too."""
    global _baseline_rss_kib
    _baseline_rss_kib = _current_rss_kib()


def import_frameworks() -> None:
    """Import torch, transformers' BERT classes and onnxruntime before `mark_baseline`, on both sides alike.

    sentence-transformers imports most of these when it is imported; bicross imports them lazily while
    loading a model. Importing them first makes the RSS growth columns compare model and work, not imports.
    """
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, BertModel  # noqa: F401
    from transformers.models.bert import modeling_bert  # noqa: F401


def worker_requested() -> bool:
    """True when this process was started by `run_worker` (argv: --worker NAME OPTIONS_JSON)."""
    return len(sys.argv) == 4 and sys.argv[1] == "--worker"


def serve_worker(workers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Run the requested worker, add its memory figures and print its result as one marked JSON line."""
    name, options = sys.argv[2], json.loads(sys.argv[3])
    mark_baseline()  # overwritten by the worker once its inputs are loaded
    result = workers[name](options)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result["peak_rss_mib"] = peak / 1024
    result["peak_delta_mib"] = (peak - (_baseline_rss_kib or 0)) / 1024
    sys.stdout.write(_RESULT_MARKER + json.dumps(result) + "\n")


def worker_environment(threads: int) -> dict[str, str]:
    """The parent's environment with thread counts pinned and the hub switched off."""
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[variable] = str(threads)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return env


def run_worker(script: str | Path, name: str, options: dict[str, Any], threads: int,
               timeout: float | None = None) -> dict[str, Any]:
    """Run worker `name` of `script` in a fresh interpreter and return its result dict."""
    command = [sys.executable, str(script), "--worker", name, json.dumps({**options, "threads": threads})]
    if name != "peak":
        shown = ", ".join(f"{key}={value}" for key, value in options.items() if "/" not in str(value))
        progress(f"{Path(script).name}: {name} ({shown})")
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=worker_environment(threads),
                               timeout=timeout, check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(_RESULT_MARKER)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"worker {name} of {Path(script).name} failed (exit {completed.returncode}):\n"
                           + completed.stderr[-4000:])
    result = json.loads(lines[-1][len(_RESULT_MARKER):])
    result["process_seconds"] = time.perf_counter() - started
    return result


def set_torch_threads(threads: int) -> None:
    """Pin torch's intra-op threads (the same count on both sides of a comparison)."""
    import torch

    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------------
# Hardware ceilings


def _peak_worker(options: dict[str, Any]) -> dict[str, Any]:
    import torch

    set_torch_threads(options["threads"])
    size, repeats = options["size"], options["repeats"]
    torch.manual_seed(0)
    a, b = torch.randn(size, size), torch.randn(size, size)
    flops = 2.0 * size**3
    peaks: dict[str, Any] = {}
    for label, x, y, matmul in (
        ("fp32", a, b, torch.matmul),
        ("bf16", a.bfloat16(), b.bfloat16(), torch.matmul),
        ("int8", (a * 20).to(torch.int8), (b * 20).to(torch.int8), getattr(torch, "_int_mm", None)),
    ):
        try:
            matmul(x, y)  # warm up (and fail early where the kernel does not exist)
            best = min(_timed(lambda x=x, y=y, matmul=matmul: matmul(x, y)) for _ in range(repeats))
            peaks[label] = flops / best / 1e9
        except Exception:  # noqa: BLE001 - a missing kernel just means no figure for that type
            peaks[label] = None
    return peaks


def _timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure_peaks(threads: int, quick: bool = False,
                  earlier: dict[str, float | None] | None = None) -> dict[str, float | None]:
    """Best-of-N GFLOP/s of a square 2048 torch matmul: fp32, bf16 and int8 (`torch._int_mm`, GOP/s).

    Scripts measure before and after their runs and keep the better figure per type (pass the first as
    `earlier`): a neighbour's job during one measurement should not make every ratio to peak look high.
    """
    progress("measuring matmul peaks")
    result = run_worker(__file__, "peak", {"size": 2048, "repeats": 3 if quick else 8}, threads)
    peaks = {key: result.get(key) for key in ("fp32", "bf16", "int8")}
    for key, value in (earlier or {}).items():
        if value is not None and (peaks.get(key) is None or value > peaks[key]):  # type: ignore[operator]
            peaks[key] = value
    return peaks


def progress(message: str) -> None:
    """A progress line on stderr, so stdout stays the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------------
# Report


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    return " ".join(flag for flag in wanted if flag in flags)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def print_header(title: str, command: str, args: argparse.Namespace, peaks: dict[str, float | None]) -> None:
    """Date, machine, versions, load and hardware ceilings: what a reader needs to trust the table."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{name} {version}" for name in _VERSIONED if (version := _version(name)))
    load = ", ".join(f"{value:.2f}" for value in _LOAD_AT_START)
    print(f"## {title}\n")
    print(f"- command: `{command}`" + ("  (--quick: smoke run, not a measurement)" if args.quick else ""))
    print(f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} logical cores ({usable} usable), flags: {_cpu_flags()}; "
          f"{_memory_gib():.0f} GiB RAM; load average at start {load}")
    print(f"- python {platform.python_version()}; {versions}")
    print(f"- threads per configuration: {args.threads}; each configuration ran in a fresh process")
    if _LOAD_AT_START[0] > 0.5:
        print(f"- WARNING: 1-minute load average {_LOAD_AT_START[0]:.2f} at start: other processes were running. "
              "Multi-threaded torch/onnxruntime/faiss slow down badly when any core is taken (seen on a busy "
              "2-core machine: one query encoded in ~800 ms with 2 threads vs ~15 ms with 1); rerun when idle.")
    print("- matmul peak (square 2048, torch, best of several, before and after the runs): "
          + ", ".join(f"{key} {_format_peak(value)}" for key, value in peaks.items()) + "\n")


def _format_peak(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} GFLOP/s"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


def print_footer() -> None:
    """Load average at the end: a busy machine makes every number lower, both sides alike or not."""
    print("\n- load average at end: " + ", ".join(f"{value:.2f}" for value in os.getloadavg()))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; cells are printed as given (format numbers before)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def percent_of(value: float, peak: float | None) -> str:
    """`value` as a percentage of a hardware peak ('n/a' when the peak is unknown)."""
    return "n/a" if not peak else f"{100 * value / peak:.0f}%"


def mib(value: float) -> str:
    """Megabytes, no decimals."""
    return f"{value:,.0f}"


# --------------------------------------------------------------------------------------------------------
# The sentence-transformers reference for the packaged ONNX reranker


def st_onnx_cross_encoder(folder: Path, max_length: int, threads: int, loader: str = "auto") -> tuple[Any, str]:
    """sentence-transformers `CrossEncoder(..., backend="onnx")` on the packaged int8 ms-marco model.

    The packaged folder has no config.json, so a copy with a BertConfig-derived one and links to the
    tokenizer files and model.onnx is built in `folder`. ST's ONNX backend loads through optimum
    (`sentence-transformers[onnx]` = optimum-onnx, which pins transformers < 4.58 while ST 6 needs >= 5, so
    it cannot be installed beside ST 6). Where optimum is missing (`loader="auto"` or `"shim"`) ST's ONNX
    loader is replaced by a minimal onnxruntime module that does what optimum's ORTModelForSequenceClassification
    does (int64 inputs in, logits out); tokenization, length sorting, batching and the rest of `predict`
    stay ST's own. Returns the model and the loader used.
    """
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig

    source = packaged_model_folder(CROSS_ENCODER_ID)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        link = folder / name
        if (source / name).is_file() and not link.exists():
            link.symlink_to(source / name)
    BertConfig(num_hidden_layers=12, hidden_size=384, num_attention_heads=12, intermediate_size=1536,
               vocab_size=30522, num_labels=1, architectures=["BertForSequenceClassification"]).save_pretrained(folder)
    if loader == "auto":
        loader = "optimum" if _optimum_works() else "shim"
    model_kwargs: dict[str, Any] = {"file_name": "model.onnx"}
    if loader == "shim":
        _install_onnx_shim(threads)
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        model_kwargs.update(provider="CPUExecutionProvider", session_options=options)
    model = CrossEncoder(str(folder), backend="onnx", max_length=max_length, model_kwargs=model_kwargs,
                         activation_fn=torch.nn.Identity(), device="cpu")
    return model, loader


def _optimum_works() -> bool:
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification  # noqa: F401
    except Exception:  # noqa: BLE001 - missing or incompatible (optimum-onnx with transformers 5) alike
        return False
    return True


def _install_onnx_shim(threads: int) -> None:
    import numpy as np
    import onnxruntime as ort
    import sentence_transformers.base.modules.transformer as st_transformer
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class OnnxSequenceClassifier(torch.nn.Module):
        """An onnxruntime session with the call signature of a transformers classifier."""

        def __init__(self, config: Any, model_file: Path) -> None:
            super().__init__()
            self.config = config
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
            self.input_names = {node.name for node in self.session.get_inputs()}

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor | None = None, **_: Any) -> SequenceClassifierOutput:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            feed = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            feed = {k: v.cpu().numpy().astype(np.int64) for k, v in feed.items() if k in self.input_names}
            (logits, *_) = self.session.run(None, feed)
            return SequenceClassifierOutput(logits=torch.from_numpy(logits))

    def load_onnx_model(model_name_or_path: str, config: Any, task_name: str, **model_kwargs: Any) -> Any:
        return OnnxSequenceClassifier(config, Path(model_name_or_path) / model_kwargs.get("file_name", "model.onnx"))

    st_transformer.load_onnx_model = load_onnx_model  # type: ignore[attr-defined]


if __name__ == "__main__" and worker_requested():
    serve_worker({"peak": _peak_worker})
