"""GradCache: with dropout on, the cached backward gives the same loss and parameter gradients as a plain one.

The plain reference encodes the same chunks in the same order with a graph: dropout draws one mask per
forward call, so only chunk-for-chunk forwards from the same seed see the same masks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from bicross.errors import InvalidInput
from bicross.training.grad_cache import cached_contrastive_backward
from bicross.training.losses import info_nce

BATCH, NEGATIVES = 8, 2


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-core machine shared with other test runs
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    bert = BertModel(config, add_pooling_layer=False)  # no pooler: every parameter gets a gradient
    bert.train()  # dropout on: the replay must reproduce its masks
    return bert


def _tokens(rows: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (rows, length), generator=generator)
    lengths = torch.randint(2, length + 1, (rows,), generator=generator)
    attention_mask = (torch.arange(length)[None, :] < lengths[:, None]).long()  # (rows, length), padded at the end
    return {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask}


@pytest.fixture(scope="module")
def batches() -> list[dict[str, torch.Tensor]]:
    return [_tokens(BATCH, 6, seed=1), _tokens(BATCH, 10, seed=2), _tokens(BATCH * NEGATIVES, 10, seed=3)]


def _encoder(model: torch.nn.Module):
    def encode(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state  # (rows, L, 32)
        mask = batch["attention_mask"][..., None].to(hidden.dtype)  # (rows, L, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # mean over real tokens: (rows, 32)

    return encode


def _loss(embeddings: list[torch.Tensor]) -> torch.Tensor:
    query, positive, negatives = embeddings
    return info_nce(query, positive, negatives.view(BATCH, NEGATIVES, -1), temperature=0.05)


def _plain_backward(model, batches, chunk_size: int, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    encode = _encoder(model)
    embeddings = [torch.cat([encode({key: value[start : start + chunk_size] for key, value in batch.items()})
                             for start in range(0, len(batch["input_ids"]), chunk_size)]) for batch in batches]
    loss = _loss(embeddings)
    loss.backward()
    return loss.item(), {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


def _cached_backward(model, batches, chunk_size: int, seed: int) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    value = cached_contrastive_backward(_encoder(model), batches, _loss, chunk_size=chunk_size)
    return value, {name: parameter.grad.clone() for name, parameter in model.named_parameters()}


def _assert_same_gradients(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == reference.keys()
    for name, gradient in ours.items():
        torch.testing.assert_close(gradient, reference[name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("chunk_size", [3, 100])
def test_cached_backward_equals_the_plain_backward_with_dropout_on(model, batches, chunk_size) -> None:
    plain_loss, plain_gradients = _plain_backward(model, batches, chunk_size, seed=7)
    after_plain = torch.rand(1)  # where the random stream stands after a plain step
    cached_loss, cached_gradients = _cached_backward(model, batches, chunk_size, seed=7)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-6)
    _assert_same_gradients(cached_gradients, plain_gradients)
    assert any(gradient.abs().sum() > 0 for gradient in cached_gradients.values())
    # The replays leave the random stream where a plain step leaves it: the next batch draws the same masks.
    assert torch.equal(torch.rand(1), after_plain)


def test_dropout_is_really_on_so_the_replay_matters(model, batches) -> None:
    _, seed_seven = _plain_backward(model, batches, 3, seed=7)
    _, seed_eight = _plain_backward(model, batches, 3, seed=8)
    largest_gap = max((seed_seven[name] - seed_eight[name]).abs().max().item() for name in seed_seven)
    assert largest_gap > 1e-3  # other masks, other gradients: equality above is not a given


def test_gradients_accumulate_like_backward(model, batches) -> None:
    _, once = _cached_backward(model, batches, 3, seed=7)
    torch.manual_seed(7)
    cached_contrastive_backward(_encoder(model), batches, _loss, chunk_size=3)  # on top of the first step's .grad
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, 2 * once[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5])
def test_chunk_size_below_one_is_rejected(model, batches, chunk_size) -> None:
    with pytest.raises(InvalidInput, match="chunk_size must be an integer >= 1"):
        cached_contrastive_backward(_encoder(model), batches, _loss, chunk_size=chunk_size)


def test_inputs_and_outputs_are_checked(model, batches) -> None:
    ragged = {"input_ids": torch.zeros(3, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long)}
    with pytest.raises(InvalidInput, match=r"batches\[1\] must hold tensors with the same number of rows"):
        cached_contrastive_backward(_encoder(model), [batches[0], ragged], _loss, chunk_size=3)
    with pytest.raises(InvalidInput, match=r"one embedding per input row \(3, dim\), got \(1, 32\)"):
        cached_contrastive_backward(lambda batch: _encoder(model)(batch)[:1], batches, _loss, chunk_size=3)
    with pytest.raises(InvalidInput, match="scalar tensor computed from the embeddings"):
        cached_contrastive_backward(_encoder(model), batches, lambda embeddings: torch.tensor(1.0), chunk_size=3)
