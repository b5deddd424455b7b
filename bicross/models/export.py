"""Export a bi-encoder or cross-encoder to a folder that bicross, plain onnxruntime or OpenVINO loads.

- `onnx` + `fp32`: the transformers model traced to ONNX (dynamic batch and sequence axes).
- `onnx` + `int8`: that graph with **static** quantization: the linear layers' weights are int8 per output
  channel and their input activations get one fixed scale each, calibrated on texts from the user's corpus.
  Dynamic quantization (how the packaged reranker was made) picks activation scales per batch, so a text's
  output depends on the other texts beside it; with fixed scales it cannot.
- `openvino` + `fp32` / `bf16`: OpenVINO IR; bf16 is an inference-precision hint that the runtime honours on
  CPUs with native bf16 (AMX, AVX512-BF16) and otherwise ignores (it runs fp32: stated in the export manifest).

The folder keeps the source's tokenizer, config and sentence-transformers files (pooling, prompts), so the
same `BiEncoder.load(folder)` / `CrossEncoder.load(folder)` open it; `bicross-export.json` records source,
format, precision and the agreement measured against the source model. It is written to a temporary
folder and renamed into place: an interrupted export leaves no half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bicross.errors import InvalidInput, MissingExtra, ModelNotFound

__all__ = ["EXPORT_MANIFEST", "ExportReport", "export_model", "source_task", "spearman"]

Format = Literal["onnx", "openvino"]
Precision = Literal["fp32", "bf16", "int8"]
Texts = Sequence[str] | Sequence[tuple[str, str]]

EXPORT_MANIFEST = "bicross-export.json"
_WEIGHTS = {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "model.onnx",
            "openvino_model.xml", "openvino_model.bin", EXPORT_MANIFEST}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class ExportReport:
    """Where the export went and how closely it follows the source model on the check texts."""

    folder: Path
    format: str
    precision: str
    task: str
    calibration_texts: int
    check_texts: int
    max_abs_difference: float  # largest |output - source output| (logits, or pooled-embedding entries)
    agreement: float  # cross-encoder: Spearman of scores; bi-encoder: min cosine of pooled mean embeddings


def export_model(source: str | os.PathLike[str], target: str | os.PathLike[str], *, format: Format = "onnx",
                 precision: Precision = "fp32", calibration: Texts = (), max_length: int = 256,
                 overwrite: bool = False) -> ExportReport:
    """Export `source` (hub id, packaged name or folder with PyTorch weights) to `target`.

    `calibration`: texts (bi-encoder) or (query, document) pairs (cross-encoder) from the user's data; int8
    needs them (they set the activation scales) and every export is checked against the source on them.
    """
    from bicross.models.resolve import resolve_model

    _check_choice(format, precision, calibration)
    target = Path(target)
    if target.exists() and not overwrite:
        raise InvalidInput(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    resolved = resolve_model(source)
    folder = _torch_folder(resolved.path, str(source))
    task = _task(folder)
    model = _load_float_model(folder, task)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=_parent(target)))
    try:
        _copy_support_files(folder, partial)
        sample = _encode_inputs(folder, calibration, max_length, task)
        _write_model(model, partial, format, precision, sample)
        report = _check(model, partial, format, precision, task, sample, target)
        manifest = {"source": str(source), "source_folder": str(folder), **asdict(report),
                    "native_bf16": _native_bf16() if precision == "bf16" else None}
        manifest["folder"] = str(target)
        (partial / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _publish(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return report


def source_task(source: str | os.PathLike[str]) -> str:
    """What `source` is: "classifier" (a cross-encoder) or "encoder" (a bi-encoder), from its config."""
    from bicross.models.resolve import resolve_model

    return _task(_torch_folder(resolve_model(source).path, str(source)))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties get their mean rank).

    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 25.0]))
    1.0
    >>> spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]))
    -1.0
    """
    ranks = [_mean_ranks(np.asarray(x, dtype=np.float64)) for x in (a, b)]
    if min(np.ptp(r) for r in ranks) == 0:
        return float("nan")  # a constant side has no order to agree with
    return float(np.corrcoef(ranks[0], ranks[1])[0, 1])


def _mean_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values[np.r_[False, np.diff(values[order]) == 0]] if len(values) else []):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _check_choice(format: str, precision: str, calibration: Texts) -> None:
    allowed = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16")}
    if format not in allowed:
        raise InvalidInput(f"format must be 'onnx' or 'openvino', got {format!r}")
    if precision not in allowed[format]:
        raise InvalidInput(f"{format} exports take precision {' or '.join(allowed[format])}, got {precision!r}")
    if precision == "int8" and len(calibration) == 0:
        raise InvalidInput("int8 export needs calibration texts from your corpus (they fix the activation "
                           "scales); pass --calibration DATA (a BEIR folder or corpus.jsonl)")


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def _torch_folder(path: Path, name: str) -> Path:
    """The folder with PyTorch weights: `path`, or the PyTorch copy bicross builds for an int8-only model."""
    if any((path / f).is_file() for f in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")):
        return path
    from bicross.models.catalog import find_derived_model
    from bicross.models.resolve import resolve_model

    if find_derived_model(f"{name}-pytorch") is not None:
        return resolve_model(f"{name}-pytorch").path
    raise ModelNotFound(f"{name} has no PyTorch weights to export from (only {sorted(p.name for p in path.iterdir())})")


def _task(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelNotFound(f"no readable config.json in {folder}: {error}") from error
    architectures = config.get("architectures") or []
    return "classifier" if any("SequenceClassification" in a for a in architectures) else "encoder"


def _load_float_model(folder: Path, task: str) -> Any:
    from bicross.models.backends import _load_transformers_model

    return _load_transformers_model(folder, task).float().eval()  # type: ignore[arg-type]


def _copy_support_files(source: Path, target: Path) -> None:
    """Tokenizer, config, sentence-transformers modules and prompts: everything but the weights."""
    for item in source.iterdir():
        if item.name in _WEIGHTS or item.name.startswith("."):
            continue
        if item.is_dir():
            if item.name in ("onnx", "openvino", "run"):
                continue
            shutil.copytree(item, target / item.name)
        else:
            shutil.copyfile(item, target / item.name)


def _encode_inputs(folder: Path, texts: Texts, max_length: int, task: str) -> list[dict[str, np.ndarray]]:
    """Tokenized check/calibration batches (8 texts each, padded to the batch's longest)."""
    from bicross.models.tokenization import Tokenizer, pad_batch

    tokenizer = Tokenizer.load(folder)
    if len(texts) == 0:
        texts = [("what is a test?", "A test checks a result.")] if task == "classifier" else ["a test sentence"]
    if task == "classifier":
        pairs = [tuple(t) for t in texts]
        if any(len(p) != 2 for p in pairs):
            raise InvalidInput("a cross-encoder's calibration texts are (query, document) pairs")
        tokens = tokenizer.pairs([p[0] for p in pairs], [p[1] for p in pairs], max_length)
    else:
        if any(not isinstance(t, str) for t in texts):
            raise InvalidInput("a bi-encoder's calibration texts are plain strings")
        tokens = tokenizer.single(list(texts), max_length)  # type: ignore[arg-type]
    rows = np.arange(len(texts))
    return [pad_batch(tokens, rows[i:i + 8], tokenizer.pad_id) for i in range(0, len(texts), 8)]


def _write_model(model: Any, folder: Path, format: str, precision: str, sample: list[dict[str, np.ndarray]]) -> None:
    onnx_file = folder / "model.onnx"
    _to_onnx(model, onnx_file, sample[0])
    if format == "onnx" and precision == "int8":
        _quantize_static(onnx_file, sample)
    elif format == "openvino":
        _to_openvino(onnx_file, folder, precision)
        onnx_file.unlink()


def _to_onnx(model: Any, file: Path, example: dict[str, np.ndarray]) -> None:
    import torch

    inputs = [name for name in _INPUTS if name in example]
    arrays = tuple(torch.from_numpy(example[name]) for name in inputs)
    output = "logits" if hasattr(model, "classifier") else "last_hidden_state"
    axes = {name: {0: "batch", 1: "sequence"} for name in inputs}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}
    with torch.no_grad():
        # the TorchScript exporter: it handles BERT's dynamic shapes in one call, no extra dependency
        torch.onnx.export(_Positional(model, inputs), arrays, str(file), input_names=inputs,
                          output_names=[output], dynamic_axes=axes, opset_version=17, dynamo=False)


class _Positional:
    """Call a transformers model with positional tensors and return its first output (what ONNX traces)."""

    def __new__(cls, model: Any, names: list[str]) -> Any:
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                return self.model(**dict(zip(names, tensors, strict=True)))[0]

        return Wrapper().eval()


def _quantize_static(file: Path, sample: list[dict[str, np.ndarray]]) -> None:
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError as error:
        raise MissingExtra("onnxruntime", "onnx") from error

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(sample)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    float_file = file.with_name("model-fp32.onnx")
    os.replace(file, float_file)
    # The linear layers' MatMuls only (a weight initializer as second input): they hold nearly all the FLOPs;
    # attention's activation x activation MatMuls and softmax/GELU/LayerNorm inputs would cost accuracy for
    # little speed. Per-channel weights, QDQ (the format onnxruntime fuses best).
    quantize_static(str(float_file), str(file), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                    nodes_to_quantize=_weight_matmuls(float_file),
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    float_file.unlink()


def _weight_matmuls(file: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(file), load_external_data=False).graph
    weights = {initializer.name for initializer in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights]


def _to_openvino(onnx_file: Path, folder: Path, precision: str) -> None:
    try:
        import openvino as ov
    except ImportError as error:
        raise MissingExtra("openvino", "openvino") from error
    model = ov.convert_model(str(onnx_file))
    model.set_rt_info("bf16" if precision == "bf16" else "f32", ["runtime_options", "INFERENCE_PRECISION_HINT"])
    ov.save_model(model, str(folder / "openvino_model.xml"), compress_to_fp16=False)


def _check(model: Any, folder: Path, format: str, precision: str, task: str, sample: list[dict[str, np.ndarray]],
           target: Path) -> ExportReport:
    """Run the export and the source side by side on the sample."""
    import torch

    from bicross.models.backends import load_backend

    runtime = load_backend(folder, task, format, "float32")  # type: ignore[arg-type]
    ours, theirs = [], []
    with torch.no_grad():
        for batch in sample:
            feed = {k: torch.from_numpy(v) for k, v in batch.items() if k in _INPUTS}
            reference = model(**feed)[0].float()
            output = runtime.forward(batch)
            if task == "encoder":  # compare mean-pooled vectors: padding positions are not outputs
                mask = feed["attention_mask"].unsqueeze(-1).float()
                reference, output = ((x * mask).sum(1) / mask.sum(1) for x in (reference, output))
            ours.append(output.numpy().reshape(len(batch["input_ids"]), -1))
            theirs.append(reference.numpy().reshape(len(batch["input_ids"]), -1))
    a, b = np.concatenate(ours), np.concatenate(theirs)
    count = len(a)
    if task == "classifier":
        agreement = spearman(a[:, 0], b[:, 0]) if count > 2 else 1.0
    else:
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        agreement = float(cosine.min())
    return ExportReport(target, format, precision, task, count if precision == "int8" else 0, count,
                        float(np.abs(a - b).max()), agreement)


def _native_bf16() -> bool:
    from bicross.models.backends import _cpu_has_native_bf16

    return _cpu_has_native_bf16()


def _publish(partial: Path, target: Path) -> None:
    """Rename the finished export into place; a previous export at `target` is removed only afterwards."""
    retired = None
    if target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.retired-", dir=target.parent))
        os.replace(target, retired / "old")
    os.replace(partial, target)
    target.chmod(0o755)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)

