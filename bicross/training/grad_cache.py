"""GradCache (Gao et al. 2021): the exact gradient of a contrastive loss over a batch too big to encode at once.

A contrastive loss couples every row of the batch, so the batch cannot simply be split into micro-batches
whose gradients are summed. GradCache splits the work instead:

1. encode every chunk of `chunk_size` rows without a graph (no activation memory), keeping the embeddings;
2. compute the loss on those embeddings as leaf tensors and backpropagate only to them: d loss / d embedding;
3. re-encode each chunk with a graph and backpropagate the cached embedding gradient through the encoder.

Peak memory is one chunk's activations plus the batch's embeddings, at the price of a second forward pass.
Dropout stays exact: the random state before each chunk's first forward is saved and restored for its
replay (like sentence-transformers' CachedMultipleNegativesRankingLoss), so both passes draw the same masks.
The result equals encoding the same chunks with a graph and calling `loss.backward()` once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from bicross.errors import InvalidInput

__all__ = ["cached_contrastive_backward"]


def cached_contrastive_backward(
    encode: Callable[[dict[str, Tensor]], Tensor],
    batches: Sequence[Mapping[str, Tensor]],
    loss_fn: Callable[[list[Tensor]], Tensor],
    chunk_size: int,
) -> float:
    """Backpropagate `loss_fn` over the embeddings of `batches`, encoding at most `chunk_size` rows at a time.

    Parameter `.grad`s accumulate exactly as after one `loss.backward()` on the whole batch (zero them
    before, as usual); the function returns the loss value. Call it inside `torch.autocast` for mixed precision.

    Args:
        encode: tokenized rows -> `(rows, dim)` embeddings, with gradients (the model in train mode).
        batches: one tokenized input per column, e.g. `[queries, positives, negatives]`, each a dict of
            tensors whose first dimension is the row (`input_ids`, `attention_mask`, ...).
        loss_fn: the embeddings of every column, in the order of `batches` -> scalar loss, e.g.
            `lambda e: info_nce(e[0], e[1], e[2].view(len(e[0]), -1, e[0].shape[1]))`.
        chunk_size: rows per forward pass, >= 1; the larger, the faster and the more memory.

    >>> weight = torch.nn.Parameter(torch.tensor([[2.0]]))
    >>> rows = {"x": torch.tensor([[1.0], [3.0]])}
    >>> cached_contrastive_backward(lambda b: b["x"] @ weight, [rows], lambda e: e[0].square().sum(), chunk_size=1)
    40.0
    >>> weight.grad.item()  # d/dw (1w)^2 + (3w)^2 = 2w(1 + 9)
    40.0
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInput(f"chunk_size must be an integer >= 1 (rows per forward pass), got {chunk_size!r}")
    if len(batches) == 0:
        raise InvalidInput("batches is empty: pass one tokenized input per column, e.g. [queries, positives]")
    chunked = [_split_rows(f"batches[{index}]", batch, chunk_size) for index, batch in enumerate(batches)]

    # Step 1: embeddings without a graph, remembering the random state each chunk started from.
    states: list[list[_RandomState]] = []
    embeddings: list[Tensor] = []
    with torch.no_grad():
        for index, chunks in enumerate(chunked):
            states.append([])
            parts = []
            for chunk in chunks:
                states[-1].append(_RandomState.capture())
                parts.append(_check_embeddings(f"encode(batches[{index}])", encode(chunk), chunk))
            # A fresh leaf: the loss's backward stops here and leaves d loss / d embedding in .grad.
            embeddings.append(torch.cat(parts).requires_grad_(True))  # (rows, dim)

    # Step 2: the loss over the full batch, backpropagated to the embeddings only.
    loss = loss_fn(embeddings)
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise InvalidInput("loss_fn must return a scalar tensor computed from the embeddings it is given")
    loss.backward()
    value = float(loss.detach())
    del loss  # its graph holds nothing the replay needs

    # Step 3: replay each chunk with a graph and push the cached gradient through the encoder.
    for chunks, chunk_states, full in zip(chunked, states, embeddings, strict=True):
        if full.grad is None:  # the loss ignored this column: no gradient to pass on
            continue
        offset = 0
        for chunk, state in zip(chunks, chunk_states, strict=True):
            with state.replay():
                chunk_embeddings = encode(chunk)  # (chunk rows, dim), same dropout masks as in step 1
            rows = chunk_embeddings.shape[0]
            chunk_embeddings.backward(gradient=full.grad[offset : offset + rows])
            offset += rows
    return value


@dataclass(frozen=True)
class _RandomState:
    """The CPU and CUDA generator states at one moment, to replay a forward pass with the same dropout masks."""

    cpu: Tensor
    cuda_devices: tuple[int, ...]
    cuda: tuple[Tensor, ...]

    @classmethod
    def capture(cls) -> _RandomState:
        # An uninitialised CUDA has drawn no random numbers yet; touching it would initialise it for nothing.
        devices = tuple(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else ()
        return cls(torch.get_rng_state(), devices, tuple(torch.cuda.get_rng_state(device) for device in devices))

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from this state, then put the generators back as they were (the replay draws twice)."""
        with torch.random.fork_rng(devices=list(self.cuda_devices)):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.cuda_devices, self.cuda, strict=True):
                torch.cuda.set_rng_state(state, device)
            yield


def _split_rows(name: str, batch: Mapping[str, Tensor], chunk_size: int) -> list[dict[str, Tensor]]:
    """One tokenized input as consecutive chunks of at most `chunk_size` rows."""
    if not isinstance(batch, Mapping) or len(batch) == 0:
        raise InvalidInput(f"{name} must be a non-empty dict of tensors (a tokenizer's output), got {type(batch).__name__}")
    rows = {key: value.shape[0] if isinstance(value, Tensor) and value.ndim > 0 else None for key, value in batch.items()}
    if None in rows.values() or len(set(rows.values())) != 1 or 0 in rows.values():
        shapes = {key: tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__ for key, value in batch.items()}
        raise InvalidInput(f"{name} must hold tensors with the same number of rows (first dimension >= 1), got {shapes}")
    total = next(iter(rows.values()))
    return [{key: value[start : start + chunk_size] for key, value in batch.items()} for start in range(0, total, chunk_size)]


def _check_embeddings(name: str, embeddings: object, chunk: dict[str, Tensor]) -> Tensor:
    rows = next(iter(chunk.values())).shape[0]
    if not isinstance(embeddings, Tensor) or embeddings.ndim < 1 or embeddings.shape[0] != rows:
        shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings).__name__
        raise InvalidInput(f"{name} must return one embedding per input row ({rows}, dim), got {shape}")
    return embeddings
