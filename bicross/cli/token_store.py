"""`bicross token-store`: encode a collection's documents once into a ColBERT / Poly-encoder token store.

A late-interaction reranker (`--reranker colbert:DIR` or `poly:DIR` on `search` and `eval`, with
`--token-store OUT`) finds a candidate's vectors in the store by its text (`Document.full_text`, what the
Searcher reranks), so reranking costs a query encoding plus MaxSim. Without a store, the candidates are encoded
as they come (and their scores cached like a cross-encoder's).

Run it again after `bicross add`: documents already in the store are skipped and the new ones appended. A
store is append-only: a document whose text changed keeps its old vectors, which no longer match its text,
so the reranker encodes it afresh; delete OUT and rerun to store the new text.

`--index-tokens` (ColBERT only) also builds the store's token index in OUT/token-index (k-means centroids and
per-centroid document lists, bicross.late_interaction.token_index), which `search` / `eval` read for
`--first-stage colbert --colbert-model colbert:DIR --token-store OUT`. A rerun after `bicross add` extends it to
the new documents with the same centroids; `--centroids N` retrains it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from bicross.late_interaction.token_store import TokenStore

__all__ = ["build_token_store", "describe_token_store"]


def build_token_store(index_dir: Path, reranker: str, out: Path, dtype: str | None, batch_size: int | None,
                      console: Console, index_tokens: bool = False, centroids: int | None = None) -> TokenStore:
    """Encode the collection's documents that `out` does not hold yet with the reranker `reranker` names
    (and, with `index_tokens`, build or extend the store's token index)."""
    from bicross.errors import InvalidInput
    from bicross.index.collection import Collection
    from bicross.late_interaction.rerankers import load_reranker
    from bicross.late_interaction.token_store import TokenStore, is_token_store
    from bicross.rerankers.protocol import is_late_interaction_spec

    if not is_late_interaction_spec(reranker):
        raise InvalidInput(f"--reranker {reranker!r} is not a late-interaction model: a token store holds ColBERT or "
                           "Poly-encoder document vectors; pass colbert:DIR or poly:DIR (a folder or hub id)")
    if (index_tokens or centroids is not None) and not reranker.startswith("colbert:"):
        raise InvalidInput(f"--index-tokens indexes ColBERT token vectors for --first-stage colbert, and {reranker!r} "
                           "is not a colbert:DIR model: drop --index-tokens, or store a ColBERT's vectors")
    if centroids is not None and not index_tokens:
        raise InvalidInput("--centroids sets the token index's k-means centroids: add --index-tokens")
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
        if index_tokens:
            _index_tokens(existing, centroids, console)
        describe_token_store(existing, console)
        return existing
    console.print(f"encoding {len(new):,} documents of {index_dir} with {reranker} into {out}")
    store = model.build_store(out, [document.id for document in new], [document.full_text for document in new],
                              dtype=dtype or (existing.dtype if existing is not None else "float16"),  # type: ignore[arg-type]
                              show_progress=True)
    if index_tokens:
        _index_tokens(store, centroids, console)
    describe_token_store(store, console)
    return store


def _index_tokens(store: TokenStore, centroids: int | None, console: Console) -> None:
    """Build (or extend) the token index and say what it cost: seconds and the process's peak RSS."""
    from bicross.late_interaction.token_index import TokenIndexConfig, index_store

    console.print(f"indexing the token vectors of {store.folder} (k-means, then every token's centroid)")
    built = index_store(store, TokenIndexConfig(centroids=centroids), retrain=centroids is not None)
    build = built.manifest["build"]
    console.print(f"token index {'extended' if build['extended'] else 'built'} in {build['seconds']:.1f} s; peak RSS "
                  f"of this process {build['peak_rss_bytes'] / 2**20:,.0f} MiB (the model included)")


def describe_token_store(store: TokenStore, console: Console) -> None:
    """What `bicross info` prints for a token store: size, what made it, bytes per document."""
    from rich.markup import escape

    stats = store.stats()
    console.print(f"[bold]{escape(str(store.folder))}[/]: token store of {stats.documents:,} documents, "
                  f"{stats.tokens:,} vectors ({stats.tokens_per_document:,.1f} per document), {store.dim}-d "
                  f"{store.dtype}; model {escape(store.model)}")
    parts = "vectors + scales + offsets" if store.dtype == "int8" else "vectors + offsets"
    console.print(f"bytes per document: {stats.bytes_per_document:,.0f} ({parts}; ids and text hashes not counted)")
    _describe_token_index(store, console)


def _describe_token_index(store: TokenStore, console: Console) -> None:
    """The token index's size (per document, and with the store's), its build cost, or why there is none."""
    from bicross.errors import BicrossError
    from bicross.late_interaction.token_index import TokenIndex, index_folder

    if not index_folder(store.folder).is_dir():
        console.print("no token index (`bicross token-store ... --index-tokens` builds one for --first-stage colbert)")
        return
    try:
        index = TokenIndex.open(store)
    except BicrossError as error:
        console.print(f"[yellow]token index unusable:[/] {error}")
        return
    stats, manifest = index.stats(), index.manifest
    store_bytes = store.stats().bytes
    console.print(f"token index: {stats.centroids:,} centroids (k-means on {manifest['trained_on']:,} vectors), "
                  f"{len(index.list_documents):,} (centroid, document) entries; bytes per document "
                  f"{stats.bytes_per_document:,.0f} (centroids + codes + lists); store + index "
                  f"{(store_bytes + stats.bytes) / max(1, stats.documents):,.0f}")
    build = manifest["build"]
    console.print(f"last {'extended' if build['extended'] else 'built'} in {build['seconds']:.1f} s, peak RSS "
                  f"{build['peak_rss_bytes'] / 2**20:,.0f} MiB (the building process's, ru_maxrss)")
