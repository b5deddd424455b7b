"""`bicross token-store`: encode a collection's documents once into a ColBERT / Poly-encoder token store.

A late-interaction reranker (`--reranker colbert:DIR` or `poly:DIR` on `search` and `eval`, with
`--token-store OUT`) finds a candidate's vectors in the store by its text (`Document.full_text`, what the
Searcher reranks), so reranking costs a query encoding plus MaxSim. Without a store, the candidates are encoded
as they come (and their scores cached like a cross-encoder's).

Run it again after `bicross add`: documents already in the store are skipped and the new ones appended. A
store is append-only: a document whose text changed keeps its old vectors, which no longer match its text,
so the reranker encodes it afresh; delete OUT and rerun to store the new text.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from bicross.late_interaction.token_store import TokenStore

__all__ = ["build_token_store", "describe_token_store"]


def build_token_store(index_dir: Path, reranker: str, out: Path, dtype: str | None, batch_size: int | None,
                      console: Console) -> TokenStore:
    """Encode the collection's documents that `out` does not hold yet with the reranker `reranker` names."""
    from bicross.errors import InvalidInput
    from bicross.index.collection import Collection
    from bicross.late_interaction.rerankers import load_reranker
    from bicross.late_interaction.token_store import TokenStore, is_token_store
    from bicross.rerankers.protocol import is_late_interaction_spec

    if not is_late_interaction_spec(reranker):
        raise InvalidInput(f"--reranker {reranker!r} is not a late-interaction model: a token store holds ColBERT or "
                           "Poly-encoder document vectors; pass colbert:DIR or poly:DIR (a folder or hub id)")
    if dtype not in (None, "float16", "int8"):
        raise InvalidInput(f"--dtype must be float16 or int8 (one scale per vector, half the bytes), got {dtype!r}")
    collection = Collection.open(index_dir)
    model = load_reranker(reranker, batch_size=batch_size)
    existing = TokenStore.open(out, model=model.document_identity) if is_token_store(out) else None
    if existing is not None and dtype is not None and dtype != existing.dtype:
        raise InvalidInput(f"{out} stores {existing.dtype} vectors and --dtype asks for {dtype}; a store has one dtype: "
                           f"drop --dtype to extend it, or write a new store to another folder")
    stored = set(existing.ids) if existing is not None else set()
    new = [document for document in collection.documents if document.id not in stored]
    if existing is not None:
        changed = [document.id for document in collection.documents
                   if document.id in stored and existing.find_text(document.full_text) is None]
        if changed:
            shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
            console.print(f"[yellow]{len(changed):,} stored document(s) changed since ({shown}):[/] the reranker encodes "
                          f"their new text as it meets them; delete {out} and rerun to store it")
    if not new:
        if existing is None:
            raise InvalidInput(f"{index_dir} has no documents to store; add some with `bicross add` first")
        console.print(f"{out} already holds every document of {index_dir}")
        describe_token_store(existing, console)
        return existing
    console.print(f"encoding {len(new):,} documents of {index_dir} with {reranker} into {out}")
    store = model.build_store(out, [document.id for document in new], [document.full_text for document in new],
                              dtype=dtype or (existing.dtype if existing is not None else "float16"),  # type: ignore[arg-type]
                              show_progress=True)
    describe_token_store(store, console)
    return store


def describe_token_store(store: TokenStore, console: Console) -> None:
    """What `bicross info` prints for a token store: size, what made it, bytes per document."""
    from rich.markup import escape

    stats = store.stats()
    console.print(f"[bold]{escape(str(store.folder))}[/]: token store of {stats.documents:,} documents, "
                  f"{stats.tokens:,} vectors ({stats.tokens_per_document:,.1f} per document), {store.dim}-d "
                  f"{store.dtype}; model {escape(store.model)}")
    parts = "vectors + scales + offsets" if store.dtype == "int8" else "vectors + offsets"
    console.print(f"bytes per document: {stats.bytes_per_document:,.0f} ({parts}; ids and text hashes not counted)")
