"""Rebuild a PyTorch BERT (a classifier, or a bare encoder) from an int8 dynamically quantized ONNX export of it.

The packaged ms-marco-MiniLM-L-12-v2 reranker and answerai-colbert-small-v1 backbone ship only as int8 ONNX:
fast in ONNX Runtime, but they cannot be fine-tuned, run under bf16 autocast or on a GPU. Their weights are all
in the file, so a float model can be rebuilt: onnxruntime's dynamic quantizer keeps every BERT tensor name
(`bert.encoder.layer.0.output.dense.bias`, ...) except those of the linear weights, and stores each quantized
tensor as `<base>_quantized` (int8/uint8) beside `<base>_scale` and `<base>_zero_point`.

What is built is read from the names, not guessed: `bert.`-prefixed tensors with a `classifier` are a
`BertForSequenceClassification` (the cross-encoder), unprefixed `embeddings.` / `encoder.` / `pooler.` tensors
a `BertModel` (an encoder exported on its own, like the ColBERT backbone); any other layout is refused.

Shortcuts, on purpose: BERT with absolute positions and exact GELU only (what these checkpoints use);
anything else is refused, not guessed. The rebuilt weights carry the int8 rounding of the file (each within
scale / 2 of the original), so the copy agrees with the ONNX outputs closely but is not the original checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bicross.errors import InvalidInput, MissingExtra, ModelNotFound

if TYPE_CHECKING:
    from transformers import BertForSequenceClassification, BertModel

__all__ = ["bert_from_quantized_onnx", "materialize_pytorch_copy"]

MANIFEST_FILE = "bicross-conversion.json"  # written last: a folder without it was never finished
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_PARTIAL = ".partial-"  # temporary folders are named .<target>.partial-<pid>-<random>

# Agreement measured once per known source file (sha256 of its model.onnx), quoted in the model card.
_MEASURED = {
    "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1": (
        "cross-encoder/ms-marco-MiniLM-L-12-v2",
        "Spearman 0.998 against the ONNX file's logits (onnxruntime, one pair per pass) on 200 SciFact "
        "(query, abstract) pairs (40 test queries x 5 documents, max_length 256, fp32); max |logit difference| "
        "0.72, mean 0.19.",
    ),
    "4980983628c18e4f0a4c756114abd2d7c097c6ccad9cffc70e77302d21e05df0": (
        "answerdotai/answerai-colbert-small-v1",
        "per-token cosine of the hidden states against the ONNX file's (onnxruntime, one text per pass) over "
        "142 token vectors of 2 queries (32 tokens with [MASK] expansion) and 4 short passages (ColBERT "
        "tokenization, fp32): min 0.975, mean 0.997. MaxSim scores of the 8 (query, passage) pairs within 0.19 "
        "of the file's (which range 23 to 29), with the same best passage per query. The file, and so this copy, "
        "has no ColBERT projection: it is the backbone only.",
    ),
}


def bert_from_quantized_onnx(onnx_path: Path) -> BertForSequenceClassification | BertModel:
    """Load the weights of a dynamically quantized BERT ONNX export into a float32 PyTorch model.

    A classifier export (`bert.` prefix and `classifier.*`) gives a BertForSequenceClassification; a bare
    encoder export (`embeddings.*`, `encoder.*`, `pooler.*`) a BertModel.

    How each tensor is found:
    - float initializers named like a BERT parameter (LayerNorm weights/biases, every linear bias) are copied.
    - a quantized initializer `<base>_quantized` is dequantized, `(q - <base>_zero_point) * <base>_scale`
      (per tensor or per output column).
    - if it feeds a MatMulInteger it is a linear weight stored as `(in, out)`: its name is found by following
      the MatMulInteger's output through Cast/Mul to the Add with a named `<module>.bias`, giving
      `<module>.weight`, and it is transposed to PyTorch's `(out, in)`.
    - otherwise (the embedding tables, read by Gather + DequantizeLinear) `<base>` is the parameter name.
    The config comes from shapes (vocab, hidden, ffn, positions, token types, labels, layer count) and the graph
    (heads from the query reshape, LayerNorm epsilon from its constant).

    Raises:
        MissingExtra: the `onnx` package is not installed.
        InvalidInput: the file is not a BERT classifier or encoder in that form; nothing is guessed.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    graph = _load_graph(Path(onnx_path))
    tensors = _bert_tensors(graph)
    prefix, classifier = _architecture(tensors)
    config = BertConfig(**_config_values(graph, tensors, prefix, classifier))
    model = BertForSequenceClassification(config) if classifier else BertModel(config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise InvalidInput(f"{onnx_path} does not hold a {type(model).__name__}: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}; only BERT classifiers and encoders quantized by onnxruntime "
                           "are supported")
    wrong = [f"{name} {tensors[name].shape} vs {tuple(value.shape)}" for name, value in expected.items()
             if tuple(tensors[name].shape) != tuple(value.shape)]
    if wrong:
        raise InvalidInput(f"{onnx_path}: tensor shapes do not match the config read from the graph: {wrong[:5]}")
    model.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in tensors.items()})
    return model.eval()


def materialize_pytorch_copy(source_folder: Path, target_folder: Path) -> Path:
    """Write a Hugging Face folder rebuilt from `source_folder/model.onnx` to `target_folder`, atomically; return it.

    The folder (config.json, model.safetensors, the tokenizer files, README.md) is written into a sibling
    temporary folder, then renamed into place, so an interrupted run leaves no half-written target. A complete
    folder built from the same ONNX file (same sha256) is reused untouched; a damaged or outdated one that
    bicross wrote is rebuilt; a folder bicross did not write is refused. Temporary folders left by killed
    runs are removed.
    """
    source_folder, target_folder = Path(source_folder), Path(target_folder)
    onnx_file = source_folder / "model.onnx"
    if not onnx_file.is_file():
        raise ModelNotFound(f"no model.onnx in {source_folder}; pass the folder of an int8 ONNX export")
    digest = _sha256(onnx_file)
    if _is_complete(target_folder, digest):
        return target_folder
    if target_folder.exists() and not (target_folder / MANIFEST_FILE).is_file():
        raise InvalidInput(f"{target_folder} exists but was not written by bicross's ONNX conversion (no "
                           f"{MANIFEST_FILE}); remove it or pick another target folder")
    target_folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_temporaries(target_folder)
    partial = Path(tempfile.mkdtemp(prefix=f".{target_folder.name}{_PARTIAL}{os.getpid()}-", dir=target_folder.parent))
    try:
        _write_folder(onnx_file, digest, partial)
        _publish(partial, target_folder, digest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target_folder


def _load_graph(onnx_path: Path) -> Any:
    try:
        import onnx
    except ImportError as error:
        raise MissingExtra("onnx", "offline-models") from error
    if not onnx_path.is_file():
        raise ModelNotFound(f"ONNX file {onnx_path} does not exist")
    return onnx.load(str(onnx_path)).graph


def _bert_tensors(graph: Any) -> dict[str, np.ndarray]:
    """Parameter name -> float32 array in PyTorch layout, for every weight in the graph."""
    from onnx import numpy_helper

    stored = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    tensors = {name: value.astype(np.float32) for name, value in stored.items()
               if value.dtype.kind == "f" and _is_parameter_name(name)}
    for name, quantized in stored.items():
        if not name.endswith("_quantized"):
            continue
        base = name[: -len("_quantized")]
        if f"{base}_scale" not in stored or f"{base}_zero_point" not in stored:
            raise InvalidInput(f"quantized tensor {name} has no {base}_scale / {base}_zero_point beside it")
        value = (quantized.astype(np.float32) - stored[f"{base}_zero_point"].astype(np.float32)) * stored[f"{base}_scale"]
        matmuls = [node for node in consumers.get(name, []) if node.op_type == "MatMulInteger" and node.input[1] == name]
        if matmuls:
            tensors[_linear_weight_name(matmuls[0], consumers)] = value.T  # (in, out) -> (out, in)
        else:
            tensors[base] = value
    return tensors


def _is_parameter_name(name: str) -> bool:
    return not name.startswith(("onnx::", "/")) and not name.endswith(("_scale", "_zero_point", "_quantized"))


def _linear_weight_name(matmul: Any, consumers: dict[str, list[Any]]) -> str:
    """`<module>.weight` of a MatMulInteger: its int32 output goes through Cast and Mul to `Add(<module>.bias)`."""
    frontier = [matmul.output[0]]
    for _ in range(4):  # MatMulInteger -> Cast -> Mul -> Add
        following = [node for tensor in frontier for node in consumers.get(tensor, [])]
        for node in following:
            biases = [name for name in node.input if name.endswith(".bias") and _is_parameter_name(name)]
            if node.op_type == "Add" and biases:
                return biases[0][: -len(".bias")] + ".weight"
        frontier = [out for node in following if node.op_type in {"Cast", "Mul"} for out in node.output]
    raise InvalidInput(f"cannot name the weight {matmul.input[1]}: its MatMulInteger does not reach an Add with a "
                       "named bias; only onnxruntime dynamic quantization of a BERT export is supported")


def _architecture(tensors: dict[str, np.ndarray]) -> tuple[str, bool]:
    """The parameter-name prefix ("bert." or "") and whether a classifier head is there, read from the names.

    >>> _architecture({"bert.embeddings.word_embeddings.weight": None, "classifier.bias": None})
    ('bert.', True)
    >>> _architecture({"embeddings.word_embeddings.weight": None})
    ('', False)
    """
    classifier = "classifier.bias" in tensors
    if "bert.embeddings.word_embeddings.weight" in tensors and classifier:
        return "bert.", True
    if "embeddings.word_embeddings.weight" in tensors and not classifier:
        return "", False
    found = sorted(name for name in tensors if name.endswith("word_embeddings.weight") or name.startswith("classifier"))
    raise InvalidInput(f"the ONNX graph is neither a BERT classifier (bert.embeddings.* with classifier.*) nor a bare "
                       f"BERT encoder (embeddings.* without a head); found {found[:5]}")


def _config_values(graph: Any, tensors: dict[str, np.ndarray], prefix: str, classifier: bool) -> dict[str, Any]:
    def shape(name: str) -> tuple[int, ...]:
        if name not in tensors:
            raise InvalidInput(f"no tensor {name} in the ONNX graph; only BERT classifiers and encoders are supported")
        return tuple(tensors[name].shape)

    operators = {node.op_type for node in graph.node}
    if "Erf" not in operators:
        raise InvalidInput("the ONNX graph has no Erf node: only BERT with exact GELU (hidden_act='gelu') is supported")
    vocab_size, hidden_size = shape(f"{prefix}embeddings.word_embeddings.weight")
    layer = re.compile(rf"^{re.escape(prefix)}encoder\.layer\.(\d+)\.")
    layers = {int(match.group(1)) for name in tensors if (match := layer.match(name))}
    values = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": len(layers),
        "num_attention_heads": _attention_heads(graph, hidden_size, prefix),
        "intermediate_size": shape(f"{prefix}encoder.layer.0.intermediate.dense.bias")[0],
        "max_position_embeddings": shape(f"{prefix}embeddings.position_embeddings.weight")[0],
        "type_vocab_size": shape(f"{prefix}embeddings.token_type_embeddings.weight")[0],
        "hidden_act": "gelu",
        "layer_norm_eps": _layer_norm_eps(graph),
        "pad_token_id": 0,
    }
    if classifier:
        values["num_labels"] = shape("classifier.bias")[0]
    return values


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer if len(init.dims) <= 1}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _attention_heads(graph: Any, hidden_size: int, prefix: str) -> int:
    """Heads from the query projection's reshape to `(batch, seq, heads, head_dim)` (or `(batch, seq, -1, head_dim)`),
    built by a Concat of constants."""
    constants = _constants(graph)
    producers = {out: node for node in graph.node for out in node.output}
    query_bias = f"{prefix}encoder.layer.0.attention.self.query.bias"
    query_adds = {node.output[0] for node in graph.node if node.op_type == "Add" and query_bias in node.input}
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] not in query_adds:
            continue
        target = constants.get(node.input[1])
        if target is None and node.input[1] in producers and producers[node.input[1]].op_type == "Concat":
            parts = [constants.get(name) for name in producers[node.input[1]].input]
            target = np.concatenate([p.reshape(-1) for p in parts[-2:]]) if all(p is not None for p in parts[-2:]) else None
        if target is not None and len(target) >= 2 and int(target[-2]) * int(target[-1]) == hidden_size:
            return int(target[-2])
        # newer transformers reshape to (batch, seq, -1, head_dim): the heads are what head_dim leaves of hidden
        if target is not None and len(target) >= 2 and int(target[-2]) == -1 and int(target[-1]) > 0 \
                and hidden_size % int(target[-1]) == 0:
            return hidden_size // int(target[-1])
    raise InvalidInput("cannot read the number of attention heads from the ONNX graph (no reshape of the layer-0 "
                       "query to (batch, seq, heads, head_dim)); only BERT exports are supported")


def _layer_norm_eps(graph: Any) -> float:
    """The epsilon of the decomposed LayerNorms: Sqrt(Add(ReduceMean(...), eps)); 1e-12 (BERT's) if not found."""
    constants = _constants(graph)
    producers = {out: node for node in graph.node for out in node.output}
    found = set()
    for node in graph.node:
        add = producers.get(node.input[0]) if node.op_type == "Sqrt" else None
        if add is None or add.op_type != "Add":
            continue
        if any(producers.get(name) is not None and producers[name].op_type == "ReduceMean" for name in add.input):
            found.update(float(constants[name]) for name in add.input if name in constants and constants[name].size == 1)
    return float(f"{min(found):.6g}") if found else 1e-12  # the float32 constant 9.99999996e-13 is 1e-12


def _write_folder(onnx_file: Path, digest: str, folder: Path) -> None:
    from transformers.utils import logging as transformers_logging

    model = bert_from_quantized_onnx(onnx_file)
    bar_was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a "Writing model shards" bar, put back as the caller had it
    try:
        model.save_pretrained(folder)  # config.json (architectures set) + model.safetensors
    finally:
        if bar_was_enabled:
            transformers_logging.enable_progress_bar()
    for name in _TOKENIZER_FILES:
        if (onnx_file.parent / name).is_file():
            shutil.copyfile(onnx_file.parent / name, folder / name)
    (folder / "README.md").write_text(_model_card(onnx_file, digest))
    # mkdtemp makes the folder private (0700): a cache folder is read like any installed model
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o644)
    files = {file.name: file.stat().st_size for file in sorted(folder.iterdir()) if file.is_file()}
    manifest = {"source": str(onnx_file), "source_sha256": digest, "files": files}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def _model_card(onnx_file: Path, digest: str) -> str:
    base_model, measured = _MEASURED.get(digest, ("", "not measured for this source file."))
    front = f"---\nbase_model: {base_model}\nlibrary_name: transformers\n---\n\n" if base_model else ""
    return (
        f"{front}# PyTorch copy rebuilt from an int8 ONNX file\n\n"
        f"Rebuilt by `bicross.models.onnx_to_torch` from `{onnx_file}` (sha256 `{digest}`)"
        + (f", the packaged int8 export of `{base_model}`" if base_model else "") + ".\n\n"
        "Every int8 weight was dequantized as `(q - zero_point) * scale` and the linear weights transposed to "
        "PyTorch's `(out, in)` layout. The weights keep the int8 rounding of the ONNX file: this is not the "
        "original float checkpoint.\n\n"
        f"Agreement with the ONNX file: {measured}\n"
    )


def _is_complete(folder: Path, digest: str) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if manifest.get("source_sha256") != digest or "model.safetensors" not in files:
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items())


def _publish(partial: Path, target: Path, digest: str) -> None:
    """Rename `partial` to `target`; a damaged or outdated `target` is first moved aside, then removed."""
    retired = None
    if target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}{_PARTIAL}{os.getpid()}-", dir=target.parent))
        os.replace(target, retired)  # retired is an empty folder: rename over it is allowed
    try:
        os.replace(partial, target)
    except OSError:
        if not _is_complete(target, digest):  # another process published first: use its copy
            raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _remove_abandoned_temporaries(target: Path) -> None:
    """Delete `.<target>.partial-<pid>-*` folders whose process is gone (a killed conversion)."""
    for folder in target.parent.glob(f".{target.name}{_PARTIAL}*"):
        pid = folder.name[len(f".{target.name}{_PARTIAL}"):].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
