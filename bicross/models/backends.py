"""PyTorch (transformers) and ONNX Runtime sessions behind one small interface.

A backend takes a padded token batch and returns a torch tensor: token states `(batch, seq, hidden)` for
an encoder, logits `(batch, labels)` for a classifier. Everything above it is backend-agnostic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from bicross.errors import InvalidInput, MissingExtra, ModelNotFound

__all__ = ["DEFAULT_BATCH_SIZE", "Backend", "BackendName", "DType", "OnnxBackend", "OpenVinoBackend", "TorchBackend",
           "batch_size_for", "load_backend", "resolve_dtype"]

BackendName = Literal["auto", "torch", "onnx", "openvino"]
DType = Literal["auto", "float32", "bfloat16"]
Task = Literal["encoder", "classifier"]

_TORCH_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
DEFAULT_BATCH_SIZE = 32


class Backend(Protocol):
    """What encoders and rerankers need from a model runtime."""

    name: str
    dtype: str
    batch_invariant: bool  # False when a text's output depends on the other texts in its batch

    def forward(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """Run one padded batch (int64 arrays) and return float32 outputs."""
        ...


def batch_size_for(backend: Backend, requested: int | None) -> int:
    """`requested`, or a default: 32 texts per pass, or 1 where batching would change the outputs.

    Dynamically quantized ONNX models pick one int8 scale per activation tensor, i.e. per batch, so a pair
    scored beside others gets a different score (up to 0.6 logit measured) than scored alone. One text per
    pass makes results reproducible and independent of the batch; on 2 cores it costs no throughput.
    """
    if requested is not None:
        if requested < 1:
            raise InvalidInput(f"batch_size must be positive, got {requested}")
        return requested
    return DEFAULT_BATCH_SIZE if backend.batch_invariant else 1


def resolve_dtype(dtype: DType) -> Literal["float32", "bfloat16"]:
    """`auto` picks bfloat16 on CPUs with native bf16 matmul (AVX512-BF16/AMX), float32 otherwise.

    bf16 autocast keeps cosine >= 0.9999 against fp32 for MiniLM-class models and runs ~2x faster there.
    """
    if dtype != "auto":
        return dtype
    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if _cpu_has_native_bf16() else "float32"


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class TorchBackend:
    """A transformers model run under `torch.inference_mode`, optionally with bf16 autocast."""

    name = "torch"
    batch_invariant = True

    def __init__(self, model: torch.nn.Module, dtype: Literal["float32", "bfloat16"] = "float32",
                 device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.dtype = dtype
        self.device = device
        self._accepts_token_types = "token_type_ids" in _forward_params(self.model)

    def forward(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """Return last hidden states (encoders) or logits (classifiers) as float32."""
        inputs = {k: torch.from_numpy(v).to(self.device) for k, v in batch.items()
                  if k != "token_type_ids" or self._accepts_token_types}
        with torch.inference_mode(), torch.autocast(
            device_type=torch.device(self.device).type, dtype=torch.bfloat16,
            enabled=self.dtype == "bfloat16",
        ):
            output = self.model(**inputs)
        tensor = output.logits if hasattr(output, "logits") else output.last_hidden_state
        return tensor.float().cpu()


def _forward_params(model: torch.nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


class OnnxBackend:
    """An ONNX Runtime session; the fastest CPU path for the packaged int8 models."""

    name = "onnx"

    def __init__(self, model_file: Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise MissingExtra("onnxruntime", "onnx") from error
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.dtype = "int8" if "quant" in model_file.name or _is_quantized(self.session) else "float32"
        self.batch_invariant = not _quantizes_activations_per_batch(model_file)

    def forward(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """Run the session on the inputs it declares; return its first output."""
        feed = {k: v for k, v in batch.items() if k in self.input_names}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(batch["input_ids"])
        (first, *_) = self.session.run(None, feed)
        return torch.from_numpy(np.asarray(first, dtype=np.float32))


class OpenVinoBackend:
    """An OpenVINO IR model (`bicross export --format openvino`) compiled for the CPU.

    The inference precision is the export's hint (bf16 or f32), passed explicitly; bf16 runs only where the
    CPU has native bf16 (fp32 elsewhere), and `dtype` says which.
    """

    name = "openvino"
    batch_invariant = True

    def __init__(self, model_file: Path, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as error:
            raise MissingExtra("openvino", "openvino") from error
        core = ov.Core()
        model = core.read_model(str(model_file))
        # the export's precision, passed explicitly: OpenVINO's own default is bf16 on some bf16-capable CPUs
        hint = _exported_precision(model)
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.input_names = {port.get_any_name() for port in self.compiled.inputs}
        # bf16 runs only where the CPU has it (OpenVINO falls back to f32 elsewhere)
        self.dtype = "bfloat16" if hint == "bf16" and _cpu_has_native_bf16() else "float32"
        self.request = self.compiled.create_infer_request()

    def forward(self, batch: dict[str, np.ndarray]) -> torch.Tensor:
        """Run one batch on the inputs the model declares; return its first output."""
        feed = {k: v for k, v in batch.items() if k in self.input_names}
        if "token_type_ids" in self.input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(batch["input_ids"])
        result = self.request.infer(feed)
        return torch.from_numpy(np.array(result[self.compiled.output(0)], dtype=np.float32))


def _exported_precision(model: object) -> str:
    """The inference precision `bicross export` wrote into the IR's runtime options (f32 if none)."""
    try:
        value = model.get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"])  # type: ignore[attr-defined]
        return str(value.astype(str) if hasattr(value, "astype") else value)  # an OVAny in the Python API
    except RuntimeError:
        return "f32"


def _is_quantized(session: object) -> bool:
    meta = session.get_modelmeta()  # type: ignore[attr-defined]
    return "quant" in (meta.description or "").lower() or "quant" in (meta.producer_name or "").lower()


def _quantizes_activations_per_batch(model_file: Path) -> bool:
    """Whether the graph has DynamicQuantizeLinear nodes (op type names are plain strings in the protobuf)."""
    import mmap

    with model_file.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(b"DynamicQuantizeLinear") >= 0


def load_backend(path: Path, task: Task, backend: BackendName = "auto", dtype: DType = "auto",
                 threads: int | None = None, device: str = "cpu") -> Backend:
    """Open the weights in `path` with the requested runtime.

    `backend` and `dtype` both "auto" on a CPU, with more than one path in the folder: the one a calibration
    run measured fastest here among those that agree with the reference (calibration.py; cached per machine
    and model). Otherwise auto means PyTorch if present, else OpenVINO if it is the only export, else ONNX.
    """
    onnx_file = _find_onnx(path)
    has_torch_weights = any((path / f).exists() for f in _TORCH_WEIGHTS)
    openvino_file = path / "openvino_model.xml"
    if backend == "auto":
        from bicross.models import calibration

        offered = calibration.candidates(has_torch_weights, onnx_file is not None, openvino_file.is_file())
        if dtype == "auto" and device == "cpu" and len(offered) > 1 and calibration.calibration_enabled():
            choice = _calibrated(path, task, threads, offered)
            backend, dtype = choice.backend, choice.dtype
        else:
            backend = "torch" if has_torch_weights else "openvino" if openvino_file.is_file() and onnx_file is None \
                else "onnx"
    return _open_backend(path, task, backend, dtype, threads, device)


def _calibrated(path: Path, task: Task, threads: int | None, offered: list) -> object:
    import sys

    from bicross.models import calibration
    from bicross.models.resolve import bicross_cache_dir, model_fingerprint

    return calibration.calibrated_choice(
        path, task, model_fingerprint(path), threads, offered,
        lambda candidate: _open_backend(path, task, candidate.backend, candidate.dtype, threads, "cpu"),
        bicross_cache_dir(), report=lambda line: print(line, file=sys.stderr))


def _open_backend(path: Path, task: Task, backend: str, dtype: DType, threads: int | None, device: str) -> Backend:
    onnx_file = _find_onnx(path)
    has_torch_weights = any((path / f).exists() for f in _TORCH_WEIGHTS)
    openvino_file = path / "openvino_model.xml"
    if backend == "openvino":
        if not openvino_file.is_file():
            raise ModelNotFound(f"no openvino_model.xml in {path}; make one with bicross export --format openvino")
        return OpenVinoBackend(openvino_file, threads)
    if backend == "onnx":
        if onnx_file is None:
            raise ModelNotFound(f"no model.onnx in {path}; use backend='torch' or export the model to ONNX")
        return OnnxBackend(onnx_file, threads)
    if backend != "torch":
        raise InvalidInput(f"unknown backend {backend!r}; choose 'auto', 'torch', 'onnx' or 'openvino'")
    if not has_torch_weights:
        raise ModelNotFound(f"no PyTorch weights (model.safetensors / pytorch_model.bin) in {path}; "
                            "use backend='onnx' for ONNX-only models")
    if threads:
        torch.set_num_threads(threads)
    return TorchBackend(_load_transformers_model(path, task), resolve_dtype(dtype), device)


def _find_onnx(path: Path) -> Path | None:
    for candidate in (path / "model.onnx", path / "onnx" / "model.onnx"):
        if candidate.is_file():
            return candidate
    return None


def _load_transformers_model(path: Path, task: Task) -> torch.nn.Module:
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    loader = AutoModelForSequenceClassification if task == "classifier" else AutoModel
    # transformers draws a "Loading weights" bar on every load: noise in a CLI that loads two models per
    # command. Silenced for this call only, and put back as the caller had it.
    bar_was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(str(path))
    finally:
        if bar_was_enabled:
            transformers_logging.enable_progress_bar()
