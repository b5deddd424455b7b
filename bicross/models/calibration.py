"""`backend="auto"`: the fastest runtime for this model on this machine, as a short run measured it.

Which path is fastest is not a property of the CPU's name or flags: measured here, OpenVINO bf16 beats
PyTorch bf16 for the 12-layer reranker on an AMX Xeon while PyTorch bf16 wins for the 6-layer encoder, and
int8 ONNX wins on an AVX-512 EPYC. So when a model folder offers more than one path (PyTorch weights in
fp32 or under bf16 autocast, an ONNX file, an OpenVINO export), the first `auto` load times each on the
same small calibration batch, keeps those whose outputs agree with the reference path (the folder's
PyTorch fp32, else its first path: min cosine >= 0.9999 for an encoder's pooled states, Spearman >= 0.99
and max logit difference <= 0.25 for a classifier's scores) and picks the fastest. The result is cached as
JSON in `$BICROSS_CACHE/calibration/<machine>/`, keyed by the weights' fingerprint, the task and the
thread count, so later loads read it instantly. `BICROSS_CALIBRATE=0` turns measuring off (the rule used
before: PyTorch if present, bf16 where the CPU has native bf16); tests do that so their results never
depend on which path a loaded machine happened to measure fastest.

The machine key hashes the CPU model and flags, the core count and the runtime versions: a copied cache
folder on another kind of machine measures afresh. Shortcut: the calibration texts are a fixed built-in
set (about 100 tokens each), not the user's corpus; speed ratios between paths depend little on content.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["Candidate", "Measurement", "calibrated_choice", "calibration_enabled", "pick_fastest"]

Task = Literal["encoder", "classifier"]

MIN_COSINE = 0.9999
MIN_SPEARMAN = 0.99
MAX_LOGIT_DIFFERENCE = 0.25

_SENTENCES = (
    "Vitamin D supplementation was associated with a lower risk of cancer mortality in older adults.",
    "The city council approved a new budget for public transport and cycling lanes downtown.",
    "Mutations in the BRCA1 gene increase the lifetime risk of breast and ovarian cancer.",
    "The river flooded the valley after three days of heavy rain in early spring.",
    "Researchers trained a neural network to predict protein structures from amino acid sequences.",
    "Paris is the capital of France and is known for its museums and cafes.",
    "Regular exercise improves insulin sensitivity and lowers blood pressure in adults.",
    "The committee postponed the vote on the trade agreement until the next session.",
)


@dataclass(frozen=True)
class Candidate:
    """One way to run a model folder: a runtime and, for PyTorch, a precision."""

    backend: Literal["torch", "onnx", "openvino"]
    dtype: Literal["float32", "bfloat16"] = "float32"


@dataclass(frozen=True)
class Measurement:
    """A candidate's calibration: texts per second and whether its outputs agree with the reference."""

    candidate: Candidate
    texts_per_second: float
    agrees: bool
    detail: str = ""


def pick_fastest(measurements: Sequence[Measurement]) -> Candidate:
    """The fastest candidate whose outputs agree with the reference (the reference itself always agrees).

    >>> slow, fast, wrong = Candidate("torch"), Candidate("torch", "bfloat16"), Candidate("onnx")
    >>> pick_fastest([Measurement(slow, 20.0, True), Measurement(fast, 50.0, True), Measurement(wrong, 90.0, False)])
    Candidate(backend='torch', dtype='bfloat16')
    """
    agreeing = [m for m in measurements if m.agrees]
    if not agreeing:
        raise ValueError("no candidate agrees with the reference")
    return max(agreeing, key=lambda m: m.texts_per_second).candidate


def calibration_enabled() -> bool:
    """False when `BICROSS_CALIBRATE` is 0/false/no/off."""
    return os.environ.get("BICROSS_CALIBRATE", "1").strip().lower() not in {"0", "false", "no", "off"}


def candidates(has_torch: bool, has_onnx: bool, has_openvino: bool) -> list[Candidate]:
    """The paths a folder offers, the reference first (PyTorch fp32 where there are PyTorch weights).

    >>> [(c.backend, c.dtype) for c in candidates(True, True, False)]
    [('torch', 'float32'), ('torch', 'bfloat16'), ('onnx', 'float32')]
    """
    found = [Candidate("torch"), Candidate("torch", "bfloat16")] if has_torch else []
    return found + ([Candidate("onnx")] if has_onnx else []) + ([Candidate("openvino")] if has_openvino else [])


def calibrated_choice(path: Path, task: Task, fingerprint: str, threads: int | None, offered: list[Candidate],
                      open_backend: Callable[[Candidate], object], cache_dir: Path,
                      report: Callable[[str], None] = lambda line: None) -> Candidate:
    """The cached pick for this folder on this machine, or a fresh calibration run (written atomically)."""
    file = cache_dir / "calibration" / machine_key() / f"{fingerprint}-{task}-threads{threads or 0}.json"
    cached = _read_choice(file, offered)
    if cached is not None:
        return cached
    report(f"calibrating {path.name} ({task}): timing {len(offered)} runtimes once on this machine")
    measurements = measure_candidates(path, task, offered, open_backend)
    choice = pick_fastest(measurements)
    _write_choice(file, choice, measurements)
    return choice


def measure_candidates(path: Path, task: Task, offered: list[Candidate],
                       open_backend: Callable[[Candidate], object]) -> list[Measurement]:
    """Time every candidate on the calibration batch and compare its outputs with the first's."""
    from bicross.models.backends import batch_size_for
    from bicross.models.tokenization import Tokenizer

    tokenizer = Tokenizer.load(path)
    if task == "classifier":
        pairs = [(a, b) for a in _SENTENCES[:4] for b in _texts()]
        tokens = tokenizer.pairs([a for a, _ in pairs], [b for _, b in pairs], 128)
    else:
        tokens = tokenizer.single(_texts() * 2, 128)
    reference: np.ndarray | None = None
    measured = []
    for candidate in offered:
        backend = open_backend(candidate)
        seconds, outputs = _time_forward(backend, tokens, tokenizer.pad_id, batch_size_for(backend, None), task)
        if reference is None:
            reference = outputs
        agrees, detail = _agreement(reference, outputs, task)
        measured.append(Measurement(candidate, tokens.lengths.size / seconds, agrees, detail))
    return measured


def _texts() -> list[str]:
    """Eight calibration texts of ~100 tokens: each sentence followed by the next four."""
    return [" ".join(_SENTENCES[(i + k) % len(_SENTENCES)] for k in range(5)) for i in range(len(_SENTENCES))]


def _time_forward(backend: object, tokens: object, pad_id: int, batch_size: int, task: Task) -> tuple[float, np.ndarray]:
    """Best-of-two seconds for the whole batch (after a warm-up pass), and the outputs (pooled for encoders)."""
    import torch

    from bicross.models.tokenization import length_sorted_batches, pad_batch

    def run() -> np.ndarray:
        out = np.empty(tokens.lengths.size, dtype=object)  # type: ignore[attr-defined]
        for rows in length_sorted_batches(tokens.lengths, batch_size):  # type: ignore[attr-defined]
            batch = pad_batch(tokens, rows, pad_id)
            states = backend.forward(batch)  # type: ignore[attr-defined]
            if task == "encoder":  # mean over real tokens: what the cosine check compares
                mask = torch.from_numpy(batch["attention_mask"]).unsqueeze(-1).float()
                states = (states * mask).sum(1) / mask.sum(1)
            for row, value in zip(rows, states.numpy(), strict=True):
                out[row] = value
        return np.stack(list(out))

    run()
    best, outputs = float("inf"), None
    for _ in range(2):
        started = time.perf_counter()
        outputs = run()
        best = min(best, time.perf_counter() - started)
    assert outputs is not None
    return best, outputs


def _agreement(reference: np.ndarray, outputs: np.ndarray, task: Task) -> tuple[bool, str]:
    if task == "encoder":
        a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
        b = outputs / np.linalg.norm(outputs, axis=1, keepdims=True)
        cosine = float((a * b).sum(1).min())
        return cosine >= MIN_COSINE, f"min cosine {cosine:.6f}"
    first, other = reference[:, 0], outputs[:, 0]
    spearman = _spearman(first, other)
    difference = float(np.abs(first - other).max())
    return spearman >= MIN_SPEARMAN and difference <= MAX_LOGIT_DIFFERENCE, \
        f"Spearman {spearman:.4f}, max difference {difference:.3f}"


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (no ties expected among float scores).

    >>> _spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0]))
    0.5
    """
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def machine_key() -> str:
    """A short hash of what decides speed here: CPU model and flags, cores, runtime versions."""
    cpu = ""
    try:
        info = Path("/proc/cpuinfo").read_text(errors="ignore")
        cpu = "\n".join(sorted({line for line in info.splitlines() if line.startswith(("model name", "flags"))}))
    except OSError:
        cpu = platform.processor()
    import torch

    versions = [torch.__version__]
    for module in ("onnxruntime", "openvino"):
        try:
            versions.append(__import__(module).__version__)
        except ImportError:
            versions.append("-")
    text = "|".join([cpu, str(os.cpu_count()), platform.machine(), *versions])
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _read_choice(file: Path, offered: list[Candidate]) -> Candidate | None:
    """The cached choice, if the file is readable and names a path this folder still offers."""
    try:
        data = json.loads(file.read_text())
        choice = Candidate(**data["choice"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return choice if choice in offered else None


def _write_choice(file: Path, choice: Candidate, measurements: list[Measurement]) -> None:
    """Write atomically (temp file + rename); a cache that cannot be written only costs a re-measure."""
    record = {"choice": asdict(choice), "measured": [
        {**asdict(m.candidate), "texts_per_second": round(m.texts_per_second, 2), "agrees": m.agrees,
         "detail": m.detail} for m in measurements]}
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_suffix(f".tmp{os.getpid()}")
        temporary.write_text(json.dumps(record, indent=1))
        os.replace(temporary, file)
    except OSError:
        pass
