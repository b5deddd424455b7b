"""Students: a cross-encoder with some of its teacher's layers, and distillation steps that move students toward the teacher."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bicross.errors import InvalidInput
from bicross.training.data import ContrastiveExample
from bicross.training.distill_steps import (
    DistillLoss,
    bi_encoder_distill_step,
    bi_encoder_scores,
    cross_encoder_distill_step,
    cross_encoder_scores,
    distillation_loss,
)
from bicross.training.models import TrainableBiEncoder, TrainableCrossEncoder
from bicross.training.students import shrink_cross_encoder
from bicross.training.trainer import TrainConfig, Trainer

PAIRS = [("berlin city", "berlin is a city in germany"), ("vitamin d", "vitamin d and cancer risk"),
         ("fox", "the quick brown fox jumps"), ("paris", "paris capital france museum art")]
TOPICS = ["berlin city germany", "paris capital france", "vitamin d cancer risk", "heart blood patients",
          "museum art paris", "dog fox jumps", "river population million", "gene protein cell"]


@pytest.fixture()
def four_layer_teacher(tiny_cross_encoder_path: Path, tmp_path: Path) -> Path:
    """A random 4-layer BERT cross-encoder with the tiny models' vocabulary."""
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path / "teacher"
    shutil.copytree(tiny_cross_encoder_path, folder)
    config = BertConfig.from_pretrained(str(folder))
    config.num_hidden_layers = 4
    torch.manual_seed(5)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return _spread(folder)


def _spread(folder: Path) -> Path:
    """Redraw the weight matrices larger so the teacher's logits differ by a few units, as a trained one's do
    (a freshly initialised BERT gives every pair about the same logit: nothing to distil)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2 and "embeddings" not in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
        model.classifier.weight.mul_(3.0)
    model.save_pretrained(str(folder))
    return folder


def _logits(model: TrainableCrossEncoder, pairs=PAIRS) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(model.tokenize([q for q, _ in pairs], [d for _, d in pairs])).numpy()


def test_a_shrunk_student_copies_the_chosen_layers_embeddings_and_head(four_layer_teacher: Path) -> None:
    teacher = TrainableCrossEncoder.from_pretrained(str(four_layer_teacher), max_length=64)
    student = shrink_cross_encoder(teacher, 2)
    assert student.model.config.num_hidden_layers == 2 and teacher.model.config.num_hidden_layers == 4
    t, s = teacher.model.state_dict(), student.model.state_dict()
    for new, old in ((0, 1), (1, 3)):  # evenly spaced, ending with the last layer
        for name in ("attention.self.query.weight", "output.dense.weight"):
            assert torch.equal(s[f"bert.encoder.layer.{new}.{name}"], t[f"bert.encoder.layer.{old}.{name}"])
    for name in ("bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight", "classifier.weight"):
        assert torch.equal(s[name], t[name])
    student.model.classifier.weight.data.add_(1.0)  # its own weights: training the student leaves the teacher alone
    assert not torch.equal(student.model.classifier.weight, teacher.model.classifier.weight)
    assert np.array_equal(_logits(shrink_cross_encoder(teacher, 4)), _logits(teacher))  # all layers: the teacher


def test_a_shrunk_student_is_saved_in_the_format_bicross_and_sentence_transformers_read(four_layer_teacher: Path,
                                                                                         tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder as StCrossEncoder

    from bicross.rerankers import CrossEncoder

    student = shrink_cross_encoder(TrainableCrossEncoder.from_pretrained(str(four_layer_teacher), max_length=64), [0, 2])
    folder = student.save(tmp_path / "student")
    ours = _logits(student)
    assert np.allclose(CrossEncoder.load(str(folder), dtype="float32").score(PAIRS), ours, atol=1e-5)
    theirs = StCrossEncoder(str(folder), device="cpu", max_length=64).predict(PAIRS, activation_fn=torch.nn.Identity())
    assert np.allclose(theirs, ours, atol=1e-5)
    assert TrainableCrossEncoder.from_pretrained(str(folder)).model.config.num_hidden_layers == 2


def test_a_student_cannot_keep_more_layers_than_its_teacher(four_layer_teacher: Path) -> None:
    teacher = TrainableCrossEncoder.from_pretrained(str(four_layer_teacher))
    with pytest.raises(InvalidInput, match="between 1 and the teacher's 4 layers"):
        shrink_cross_encoder(teacher, 6)
    with pytest.raises(InvalidInput, match="not \\[7\\]"):
        shrink_cross_encoder(teacher, [0, 7])


def _labelled(teacher_path: Path) -> list[ContrastiveExample]:
    """16 examples: a query, its topic as positive, 3 other topics as negatives, scored by the tiny teacher."""
    from bicross.rerankers import CrossEncoder

    teacher = CrossEncoder.load(str(teacher_path), max_length=32, dtype="float32")
    rows = []
    for i in range(16):
        topic = TOPICS[i % len(TOPICS)]
        query = topic.split()[i // len(TOPICS)]
        negatives = tuple(TOPICS[(i + k) % len(TOPICS)] for k in (1, 3, 5))
        scores = teacher.score([(query, text) for text in (topic, *negatives)])
        assert np.ptp(scores) > 0.5  # a teacher worth copying
        rows.append(ContrastiveExample(query, topic, negatives, f"q{i}", f"d{i % 8}",
                                       tuple(f"d{(i + k) % 8}" for k in (1, 3, 5)), tuple(scores.tolist())))
    return rows


def _gap(scores_of, examples, loss: DistillLoss) -> float:
    from bicross.training.distill_steps import teacher_scores

    with torch.no_grad():
        return float(distillation_loss(scores_of(examples), teacher_scores(examples, 3), loss))


@pytest.mark.parametrize("loss", [DistillLoss("margin_mse"), DistillLoss("listwise_kl", temperature=2.0),
                                  DistillLoss("margin_mse", label_weight=0.5)])
def test_distilling_a_bi_encoder_moves_its_scores_toward_the_teachers(loss: DistillLoss, tiny_encoder_path: Path,
                                                                     tiny_model_factory, tmp_path: Path) -> None:
    examples = _labelled(_spread(tiny_model_factory("teacher", classifier=True, seed=7)))
    model = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path), max_length=32)
    measure = DistillLoss(loss.kind, loss.temperature)  # the distillation term alone
    model.eval()
    before = _gap(lambda rows: bi_encoder_scores(model, rows, loss), examples, measure)
    trainer = Trainer(model, TrainConfig(epochs=8, batch_size=8, learning_rate=3e-3, warmup_ratio=0.0, dtype="float32"),
                      tmp_path / "run", bi_encoder_distill_step(model, loss), show_progress=False)
    trainer.fit(examples)
    model.eval()
    after = _gap(lambda rows: bi_encoder_scores(model, rows, loss), examples, measure)
    assert after < 0.7 * before, (before, after)


@pytest.mark.parametrize("kind", ["mse", "margin_mse"])
def test_distilling_a_shrunk_cross_encoder_moves_its_scores_toward_the_teachers(kind: str, four_layer_teacher: Path,
                                                                              tmp_path: Path) -> None:
    examples = _labelled(four_layer_teacher)
    student = shrink_cross_encoder(TrainableCrossEncoder.from_pretrained(str(four_layer_teacher), max_length=32), 1)
    loss = DistillLoss(kind)  # type: ignore[arg-type]
    before = _gap(lambda rows: cross_encoder_scores(student, rows), examples, loss)
    trainer = Trainer(student, TrainConfig(epochs=8, batch_size=8, learning_rate=3e-3, warmup_ratio=0.0,
                                           dtype="float32"), tmp_path / "run", cross_encoder_distill_step(student, loss),
                      show_progress=False)
    trainer.fit(examples)
    student.eval()
    after = _gap(lambda rows: cross_encoder_scores(student, rows), examples, loss)
    assert after < 0.7 * before, (before, after)


def test_a_step_refuses_examples_without_teacher_scores(tiny_encoder_path: Path) -> None:
    model = TrainableBiEncoder.from_pretrained(str(tiny_encoder_path), max_length=32)
    with pytest.raises(InvalidInput, match="have no teacher scores: label them first"):
        bi_encoder_distill_step(model, DistillLoss())([ContrastiveExample("q", "p", ("n",))])


def test_score_mse_matches_torch_and_leaves_the_teacher_without_gradient() -> None:
    from bicross.training.losses import score_mse

    student = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    teacher = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
    value = score_mse(student, teacher)
    assert torch.allclose(value, torch.nn.functional.mse_loss(student, teacher))
    value.backward()
    assert teacher.grad is None and student.grad is not None
    with pytest.raises(InvalidInput, match="same shape"):
        score_mse(student, teacher[:, :2])
