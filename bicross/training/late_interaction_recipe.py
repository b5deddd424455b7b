"""`bicross train colbert|poly`: a ColBERT or a Poly-encoder reranker fine-tuned by the bi-encoder recipe's steps.

train split -> a dev part held out (`split_dev`, seeded) -> the first-stage collection (`first_stage_model`
over DATA, built once in `OUT/base-index`, or the user's `--index`) -> hard negatives mined once from its
hybrid first stage, guarded by the packaged cross-encoder (`mine_once`: the same `OUT/negatives.jsonl` as the
bi-encoder recipe) -> InfoNCE over in-batch and mined negatives on MaxSim or poly scores (`colbert_step`,
`poly_step`), or with `distill = true` the teacher's scores of [positive, *negatives] (labelled once into
`OUT/labels.jsonl` through the same score cache as the guard, so the pairs the guard scored cost nothing) copied
through listwise KL (`colbert_distill_step`, `poly_distill_step`) -> dev nDCG@10 after each epoch by reranking
the dev queries' first-stage top `dev_depth` with the live model (`ColBERTReranker.from_model`,
`PolyReranker.from_model` through `recipes.dev_rerank`) -> the best evaluation saved by the model's own
atomic `save`, with a model card -> `OUT/model`, which `--reranker colbert:OUT/model` / `poly:OUT/model` loads.

Defaults (`late_interaction_recipe`), not measured on SciFact yet: ColBERT starts from the PyTorch copy of
answerai-colbert-small-v1 with no projection (`dim` None: MaxSim over its normalised 384-d hidden states, the
setting whose zero-shot reranking was measured), so its dev score before training is the zero-shot one;
`[model] dim = N` adds a new, random projection (training then starts from scratch on that side). The
Poly-encoder starts from all-MiniLM-L6-v2 with m = 16 random codes and the bi-encoder recipe's measured
schedule (5 epochs, batch 32, 2e-5; the codes train at `pooling_learning_rate`, see the Trainer). ColBERT
fine-tunes a model that already ranks well: 2 epochs at 1e-5. Both use one mined negative per example plus
the batch's other positives, as the bi-encoder recipe does.

Shortcuts: the negatives are never refreshed (the first stage is fixed, as for cross-encoders), and there is
no GradCache (see `late_interaction_steps`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from bicross.errors import InvalidInput
from bicross.late_interaction.config import ColBERTConfig, PolyConfig
from bicross.late_interaction.onnx_backbone import ANSWERAI_COLBERT_PYTORCH, ANSWERAI_CONFIG
from bicross.rerankers.cross_encoder import DEFAULT_CROSS_ENCODER
from bicross.training.data import ContrastiveExample, load_beir_training, read_contrastive_jsonl, split_dev
from bicross.training.distill_steps import DistillLoss
from bicross.training.mining import MiningConfig, mine_once
from bicross.training.recipes import (
    CachedTeacher,
    RecipeResult,
    cached_json,
    dev_pool,
    dev_rerank,
    evaluate_in_eval_mode,
    first_stage_collection,
    with_negatives,
)
from bicross.training.trainer import RESULT, TrainConfig, Trainer

__all__ = ["DEFAULT_BASES", "LateInteractionRecipe", "late_interaction_recipe", "live_reranker",
           "train_late_interaction"]

LateKind = Literal["colbert", "poly"]
DEFAULT_BASES = {"colbert": ANSWERAI_COLBERT_PYTORCH, "poly": "sentence-transformers/all-MiniLM-L6-v2"}


@dataclass(frozen=True)
class LateInteractionRecipe:
    """Everything a ColBERT or Poly-encoder run depends on besides the data; `late_interaction_recipe(kind)`
    gives each kind's defaults (`model` is a ColBERTConfig for ColBERT, a PolyConfig for a Poly-encoder)."""

    model: ColBERTConfig | PolyConfig = ANSWERAI_CONFIG
    train: TrainConfig = TrainConfig(epochs=2, batch_size=32, learning_rate=1e-5)
    mining: MiningConfig = MiningConfig(count=1, guard_pool=8)  # the bi-encoder recipe's: the same negatives file
    loss: DistillLoss = DistillLoss("listwise_kl")  # with distill = true
    distill: bool = False  # train on the teacher's scores of [positive, *negatives] instead of the labels
    guard: bool = True  # drop mined candidates the teacher judges about as relevant as a positive
    teacher: str = DEFAULT_CROSS_ENCODER
    teacher_max_length: int = 256
    first_stage_model: str = "sentence-transformers/all-MiniLM-L6-v2"  # mines negatives, picks the dev pool
    split: str = "train"
    dev_fraction: float = 0.1
    dev_depth: int = 20
    negatives_per_example: int = 1
    temperature: float = 1.0  # InfoNCE over MaxSim / poly scores (see late_interaction_steps on the scale)
    in_batch: bool = True  # the batch's other positives are negatives too

    def __post_init__(self) -> None:
        if isinstance(self.negatives_per_example, bool) or not isinstance(self.negatives_per_example, int) \
                or not 0 <= self.negatives_per_example <= self.mining.count:
            raise InvalidInput(f"negatives_per_example must be between 0 and the mined count ({self.mining.count}), "
                               f"got {self.negatives_per_example!r}: raise [mining] count to use more")
        if self.distill and self.negatives_per_example < 1:
            raise InvalidInput("distill = true compares a positive with its mined negatives: set "
                               "negatives_per_example >= 1")
        if not self.in_batch and self.negatives_per_example < 1 and not self.distill:
            raise InvalidInput("in_batch = false leaves only the mined negatives: set negatives_per_example >= 1")


def late_interaction_recipe(kind: LateKind) -> LateInteractionRecipe:
    """The defaults for `kind` (see the module notes: not measured yet)."""
    if kind == "colbert":
        return LateInteractionRecipe()
    if kind == "poly":
        return LateInteractionRecipe(model=PolyConfig(), train=TrainConfig(epochs=5, batch_size=32, learning_rate=2e-5))
    raise InvalidInput(f"late interaction is 'colbert' or 'poly', got {kind!r}")


def train_late_interaction(kind: LateKind, data: str | Path, base: str | None, out: str | Path,
                           recipe: LateInteractionRecipe | None = None, index: str | Path | None = None,
                           command: str = "", show_progress: bool = True, *, teacher: Any = None,
                           stop_after: int | None = None) -> RecipeResult:
    """Run the recipe (None: `late_interaction_recipe(kind)`; `base` None: `DEFAULT_BASES[kind]`); a rerun with
    the same `out` resumes where the last one stopped.

    Args:
        teacher: an object with `score(pairs)` and `identity` (a CrossEncoder) used instead of loading
            `recipe.teacher`, for the guard and distillation.
        stop_after: end after training step N as a kill would (the Trainer's, for tests of resuming);
            `OUT/model` is written only by a run that finished.
    """
    from bicross.encoders import BiEncoder
    from bicross.index.collection import Collection

    recipe = late_interaction_recipe(kind) if recipe is None else recipe
    _check(kind, recipe)
    base = base or DEFAULT_BASES[kind]
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    queries, documents = load_beir_training(data, recipe.split)
    train_queries, dev_queries = split_dev(queries, recipe.dev_fraction, recipe.train.seed)
    if index is not None:
        collection = Collection.open(index)
        first_encoder = BiEncoder.load(collection.manifest["model"]["name"])
    else:
        first_encoder = BiEncoder.load(recipe.first_stage_model)
        collection = first_stage_collection(out / "base-index", documents, first_encoder, show_progress)
    cached = _teacher(recipe, teacher, out / "teacher-scores.json") if recipe.guard or recipe.distill else None
    report = mine_once(collection, first_encoder, train_queries, out / "negatives.jsonl", recipe.mining,
                       cached if recipe.guard else None, show_progress)
    examples = with_negatives(read_contrastive_jsonl(out / "negatives.jsonl"), recipe.negatives_per_example)
    if recipe.distill:
        examples = _labelled(examples, cached, out / "labels.jsonl", show_progress)
    pool = dev_pool(collection, first_encoder, dev_queries, recipe.dev_depth)

    model = build_model(kind, base, recipe.model, recipe.train.seed)
    step = _step(kind, model, recipe)
    evaluate = lambda: dev_rerank(live_reranker(model), dev_queries, pool, documents)  # noqa: E731
    card = _card(kind, base, data, recipe, command, len(examples), len(dev_queries))
    trainer = Trainer(model, recipe.train, out / "run", step, evaluate,
                      save_best=lambda folder: model.save(folder, card), show_progress=show_progress)
    dev_before = cached_json(out / "dev_before.json", lambda: evaluate_in_eval_mode(model, evaluate))
    result = trainer.fit(examples, stop_after=stop_after)
    final = out / "model"
    if (out / "run" / "best").is_dir() and (out / "run" / RESULT).is_file():
        best_card = card + (f"\n## Dev results\n\nbefore training: {dev_before}\nbest: {result.best_metric:.4f} "
                            f"({recipe.train.metric}, step {result.best_step})\n")
        (out / "run" / "best" / "README.md").write_text(best_card, encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(out / "run" / "best", final)
    return RecipeResult(final, result, report, dev_before, result.best_metric,
                        {"train_queries": len(train_queries), "dev_queries": len(dev_queries),
                         "examples": len(examples), "dev_pool": len(pool),
                         "index": Path(index) if index is not None else out / "base-index"})


def build_model(kind: LateKind, base: str, config: ColBERTConfig | PolyConfig, seed: int) -> torch.nn.Module:
    """A new ColBERT or Poly-encoder on `base`; its random part (projection, codes) drawn from `seed`, so every
    run, a resumed one included, starts from the same weights."""
    from bicross.late_interaction.colbert import ColBERT
    from bicross.late_interaction.poly import PolyEncoder

    rng = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        if kind == "colbert":
            return ColBERT.from_backbone(base, config)  # type: ignore[arg-type]
        return PolyEncoder.from_backbone(base, config)  # type: ignore[arg-type]
    finally:
        torch.set_rng_state(rng)


def live_reranker(model: torch.nn.Module):
    """A `ColBERTReranker` or `PolyReranker` running the model being trained (its current weights)."""
    from bicross.late_interaction.colbert import ColBERT
    from bicross.late_interaction.rerankers import ColBERTReranker, PolyReranker

    if isinstance(model, ColBERT):
        return ColBERTReranker.from_model(model)
    return PolyReranker.from_model(model)  # type: ignore[arg-type]


def _check(kind: str, recipe: LateInteractionRecipe) -> None:
    if kind not in DEFAULT_BASES:
        raise InvalidInput(f"late interaction is 'colbert' or 'poly', got {kind!r}")
    expected = ColBERTConfig if kind == "colbert" else PolyConfig
    if not isinstance(recipe.model, expected):
        raise InvalidInput(f"a {kind} recipe needs {expected.__name__} model settings, got "
                           f"{type(recipe.model).__name__}: start from late_interaction_recipe({kind!r})")
    if recipe.train.refresh_every:
        raise InvalidInput(f"refresh_every re-mines negatives with the bi-encoder being trained; a {kind}'s "
                           "candidates come from a fixed first stage, so set it to 0")


def _teacher(recipe: LateInteractionRecipe, teacher: Any, path: Path) -> CachedTeacher:
    from bicross.rerankers import CrossEncoder

    model = teacher if teacher is not None else CrossEncoder.load(recipe.teacher, max_length=recipe.teacher_max_length)
    return CachedTeacher(model, path)


def _labelled(examples: list[ContrastiveExample], teacher: CachedTeacher | None, path: Path,
              show_progress: bool) -> list[ContrastiveExample]:
    """The examples with the teacher's scores of [positive, *negatives], labelled once (`path` present = done)."""
    from bicross.training.labels import label_examples

    if not path.is_file():
        assert teacher is not None  # distill = true always loads one
        label_examples(examples, teacher, path, show_progress=show_progress)
    labelled = read_contrastive_jsonl(path)
    if [(e.query_id, e.positive_id, e.negative_ids) for e in labelled] != \
            [(e.query_id, e.positive_id, e.negative_ids) for e in examples]:
        raise InvalidInput(f"{path} labels other examples than {path.parent / 'negatives.jsonl'} now gives (another "
                           "negatives_per_example?); delete it to label them again")
    return labelled


def _step(kind: str, model: Any, recipe: LateInteractionRecipe):
    from bicross.training.late_interaction_steps import (
        LateInteractionLoss,
        colbert_distill_step,
        colbert_step,
        poly_distill_step,
        poly_step,
    )

    if recipe.distill:
        return (colbert_distill_step if kind == "colbert" else poly_distill_step)(model, recipe.loss)
    loss = LateInteractionLoss(recipe.temperature, recipe.in_batch)
    return (colbert_step if kind == "colbert" else poly_step)(model, loss)


def _card(kind: str, base: str, data: Path, recipe: LateInteractionRecipe, command: str, examples: int,
          dev: int) -> str:
    settings = json.dumps(asdict(recipe), indent=2, default=str)
    if recipe.distill:
        loss = f"{recipe.loss.kind} from `{recipe.teacher}`'s scores of [positive, {recipe.negatives_per_example} " \
               "mined negatives]" + (f" + {recipe.loss.label_weight} x listwise CE on the labels"
                                     if recipe.loss.label_weight else "")
    else:
        loss = f"InfoNCE ({'in-batch + ' if recipe.in_batch else ''}{recipe.negatives_per_example} mined hard " \
               f"negatives), temperature {recipe.temperature}"
    if kind == "colbert":
        dim = recipe.model.dim  # type: ignore[union-attr]
        what = f"ColBERT (MaxSim over {'the backbone hidden states' if dim is None else f'{dim}-d projections'})"
    else:
        what = f"Poly-encoder ({recipe.model.codes} codes)"  # type: ignore[union-attr]
    return (f"# bicross {kind}\n\nA {what} fine-tuned from `{base}` with bicross; rerank with `--reranker "
            f"{kind}:DIR`.\n\n- training data: `{data}` split `{recipe.split}` ({examples} examples; {dev} queries "
            "held out as dev; the test split was not used). Check the collection's licence before you publish this "
            f"model (SciFact: CC BY-NC 2.0).\n- loss: {loss}\n- command: `{command or 'bicross train ...'}`\n\n"
            f"## Settings\n\n```json\n{settings}\n```\n")
