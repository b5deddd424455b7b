"""Smaller cross-encoder students, initialised from their teacher by keeping some of its transformer layers.

A student with N of the teacher's L layers starts from the teacher's embeddings, N evenly spaced layers and
its pooler and classification head (the "every other layer" initialisation of DistilBERT and of the
ms-marco MiniLM L-6 from L-12): a far better start than random weights or than the first N layers, because
each kept layer still reads what the layer below it was trained to write, roughly. The spacing always keeps
the last layer: the pooler and classifier were trained on its output.

Shortcut: layers are found by the `encoder.layer.<i>.` naming of BERT-like models (BERT, RoBERTa, XLM-R,
ELECTRA, MiniLM); other families (DistilBERT's `transformer.layer`) are refused with a message rather than
guessed at. The student is saved like any bicross cross-encoder (`TrainableCrossEncoder.save`): a Hugging
Face sequence-classification folder that `CrossEncoder.load` and sentence-transformers' CrossEncoder read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

from bicross.errors import InvalidInput
from bicross.training.models import TrainableCrossEncoder

__all__ = ["evenly_spaced_layers", "keep_layers", "shrink_cross_encoder"]

_LAYER = re.compile(r"^(.*\bencoder\.layer\.)(\d+)(\..*)$")


def evenly_spaced_layers(total: int, keep: int) -> list[int]:
    """Which of `total` layers (0-based) a `keep`-layer student takes: evenly spaced, ending with the last.

    >>> evenly_spaced_layers(12, 6), evenly_spaced_layers(12, 4), evenly_spaced_layers(12, 2)
    ([1, 3, 5, 7, 9, 11], [2, 5, 8, 11], [5, 11])
    >>> evenly_spaced_layers(12, 12) == list(range(12)), evenly_spaced_layers(6, 3)
    (True, [1, 3, 5])
    """
    if not isinstance(keep, int) or not 1 <= keep <= total:
        raise InvalidInput(f"a student keeps between 1 and the teacher's {total} layers, got {keep!r}")
    return [round((i + 1) * total / keep) - 1 for i in range(keep)]


def keep_layers(state: Mapping[str, torch.Tensor], layers: Sequence[int]) -> dict[str, torch.Tensor]:
    """The teacher's weights with only `layers` of its encoder, renumbered 0..N-1; every other weight kept.

    >>> state = {"embeddings.w": 0, "bert.encoder.layer.0.q": 10, "bert.encoder.layer.1.q": 11,
    ...          "bert.encoder.layer.2.q": 12, "classifier.weight": 1}
    >>> keep_layers(state, [0, 2])
    {'embeddings.w': 0, 'bert.encoder.layer.0.q': 10, 'bert.encoder.layer.1.q': 12, 'classifier.weight': 1}
    """
    position = {layer: new for new, layer in enumerate(layers)}
    if len(position) != len(layers):
        raise InvalidInput(f"layers to keep must be distinct, got {list(layers)}")
    kept: dict[str, torch.Tensor] = {}
    found: set[int] = set()
    for name, value in state.items():
        match = _LAYER.match(name)
        if match is None:
            kept[name] = value
            continue
        layer = int(match.group(2))
        found.add(layer)
        if layer in position:
            kept[f"{match.group(1)}{position[layer]}{match.group(3)}"] = value
    if not found:
        raise InvalidInput("the teacher's weights have no 'encoder.layer.<i>' layers (not a BERT-like model): start the "
                           "student from a smaller checkpoint instead of removing layers")
    missing = sorted(set(layers) - found)
    if missing:
        raise InvalidInput(f"the teacher has layers 0..{max(found)}, not {missing}")
    return kept


def shrink_cross_encoder(teacher: TrainableCrossEncoder, layers: int | Sequence[int]) -> TrainableCrossEncoder:
    """A new cross-encoder with `layers` of the teacher's (a count: evenly spaced; or the 0-based indices).

    The teacher is left as it was; the student shares its tokenizer and max_length and has its own weights.
    """
    from transformers import AutoModelForSequenceClassification

    config = teacher.model.config
    total = getattr(config, "num_hidden_layers", None)
    if not isinstance(total, int):
        raise InvalidInput(f"{teacher.base}'s config has no num_hidden_layers: only BERT-like cross-encoders can be "
                           "shrunk by removing layers")
    chosen = evenly_spaced_layers(total, layers) if isinstance(layers, int) else list(layers)
    student_config = config.__class__.from_dict({**config.to_dict(), "num_hidden_layers": len(chosen)})
    student = AutoModelForSequenceClassification.from_config(student_config)
    weights = keep_layers(teacher.model.state_dict(), chosen)
    student.load_state_dict({name: value.detach().clone() for name, value in weights.items()}, strict=True)
    base = f"{teacher.base} (layers {','.join(map(str, chosen))} of {total})"
    return TrainableCrossEncoder(student, teacher.tokenizer, teacher.max_length, base)
