"""Request and response bodies of every route (pydantic), so OpenAPI at /docs describes them exactly.

/rerank follows Cohere's and Jina's shape and /v1/embeddings OpenAI's, so their clients work unchanged;
the other routes are bicross's own. Server-wide limits (items, query length) are checked in the app, not
here, because they are settings and the schema is fixed at import.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CollectionInfo", "CollectionsOut", "DeleteRequest", "DocumentIn", "DocumentOut", "DocumentsRequest",
    "EmbeddingItem", "EmbeddingsOut", "EmbeddingsRequest", "EmbeddingsUsage", "ErrorOut", "HitOut", "ReadyOut",
    "RerankDocument", "RerankOut", "RerankRequest", "RerankResult", "SearchBatchOut", "SearchBatchRequest",
    "SearchOut", "SearchRequest", "WriteOut",
]

Timeout = Field(default=None, gt=0, description="Seconds this request may take (default: the server's --timeout).")
CollectionName = Field(default=None, description="Collection to use (default: the only one served).")


class ErrorOut(BaseModel):
    """Every refusal (4xx) and server-side failure (5xx): what went wrong and how to fix it.

    `detail` is a sentence, or for a body that does not match this schema, pydantic's list of field errors.
    """

    detail: str | list[dict[str, Any]]


class ReadyOut(BaseModel):
    """GET /ready: `ready` (200), or `loading` / `failed` with the load error (503)."""

    status: Literal["ready", "loading", "failed"]
    detail: str | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchOptions(_Strict):
    """Pipeline knobs of one search (None keeps the server's default pipeline)."""

    collection: str | None = CollectionName
    top_k: int | None = Field(default=None, ge=1, description="Candidates from the first stage.")
    top_n: int | None = Field(default=None, ge=1, description="Hits returned.")
    first_stage: Literal["dense", "bm25", "hybrid"] | None = None
    fusion: Literal["zscore", "minmax", "rrf"] | None = None
    rerank: bool = Field(default=True, description="False: return the first-stage order.")
    rerank_depth: int | None = Field(default=None, ge=1, description="How many candidates the cross-encoder reads.")
    # bounded so the fused score stays finite (z-scores are a few units; float32 holds up to ~3e38)
    rerank_weight: float | None = Field(default=None, ge=0, le=1000, description="Final = z(rerank) + "
                                        "w * z(first stage); w = 0 keeps the cross-encoder's order alone.")
    filters: list[str] = Field(default_factory=list, description="Metadata filters as on the command line: "
                               "'year>=2010', 'journal=Nature,Cell', 'lang!=en'.")
    timeout: float | None = Timeout


class SearchRequest(SearchOptions):
    """POST /search."""

    query: str
    query_id: str | None = Field(default=None, max_length=200, pattern=r"^\S+$", description="Your id for this "
                                 "query (no spaces), kept in the shadow A/B log so its TREC runs can be judged on qrels.")


class SearchBatchRequest(SearchOptions):
    """POST /search/batch: several queries with one set of knobs, searched together."""

    queries: list[str] = Field(min_length=1)


class PassageOut(BaseModel):
    """In a collection of passages (long documents): the passage of the hit that scored best."""

    index: int
    start: int
    end: int
    text: str


class HitOut(BaseModel):
    """One hit: final rank and score, where the first stage put it, what the reranker gave it (and, for long
    documents split into passages, which passage matched)."""

    id: str
    title: str
    snippet: str
    rank: int
    score: float
    first_stage_rank: int
    first_stage_score: float
    rerank_score: float | None
    metadata: dict[str, Any]
    passage: PassageOut | None = None


class SearchOut(BaseModel):
    """The hits of one query and the milliseconds each stage took (its share, in a batch)."""

    query: str
    collection: str
    hits: list[HitOut]
    timings_ms: dict[str, float]


class SearchBatchOut(BaseModel):
    """POST /search/batch: one result per query, in order."""

    results: list[SearchOut]
    timings_ms: dict[str, float]


class RerankDocument(BaseModel):
    """A document given as an object (Cohere / Jina clients send either this or a bare string)."""

    model_config = ConfigDict(extra="allow")
    text: str


class RerankRequest(BaseModel):
    """POST /rerank, Cohere / Jina shape."""

    model_config = ConfigDict(extra="ignore")  # their clients send fields we do not use (max_chunks_per_doc)
    query: str
    documents: list[str | RerankDocument] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    model: str | None = Field(default=None, description="The server's cross-encoder name, or omitted.")
    collection: str | None = CollectionName
    timeout: float | None = Timeout


class RerankResult(BaseModel):
    """One reranked document: its position in the request and its score."""

    index: int
    relevance_score: float
    document: dict[str, Any] | None = None


class RerankOut(BaseModel):
    """Results best first."""

    model: str
    results: list[RerankResult]


class EmbeddingsRequest(BaseModel):
    """POST /v1/embeddings, OpenAI shape (plus `input_type` for models with query / document prefixes)."""

    model_config = ConfigDict(extra="ignore")  # e.g. `user`
    input: str | Annotated[list[str], Field(min_length=1)]
    model: str | None = Field(default=None, description="The collection's bi-encoder name, or omitted.")
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["query", "document"] = "document"
    collection: str | None = CollectionName
    timeout: float | None = Timeout


class EmbeddingItem(BaseModel):
    """One vector, in input order (`index`); base64 is little-endian float32, as OpenAI's clients expect."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    """Tokens read (after truncation to the model's max length)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingsOut(BaseModel):
    """OpenAI's list of embeddings."""

    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingsUsage


class DocumentIn(_Strict):
    """A document to add, or to replace the one with the same id."""

    id: str = Field(min_length=1)
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentOut(BaseModel):
    """A stored document."""

    id: str
    text: str
    title: str
    metadata: dict[str, Any]


class DocumentsRequest(_Strict):
    """POST /documents."""

    documents: list[DocumentIn] = Field(min_length=1)
    collection: str | None = CollectionName


class DeleteRequest(_Strict):
    """DELETE /documents (all or nothing: one unknown id deletes none)."""

    ids: list[str] = Field(min_length=1)
    collection: str | None = CollectionName


class WriteOut(BaseModel):
    """What a write committed."""

    collection: str
    added: int
    updated: int
    deleted: int
    count: int
    generation: int


class CollectionInfo(BaseModel):
    """What `bicross info` shows about a collection."""

    name: str
    path: str
    documents: int
    generation: int
    model: str
    fingerprint: str
    dimension: int
    similarity: str
    dense_searcher: str
    bm25: dict[str, Any]
    truncated_documents: int
    reranker: str | None


class CollectionsOut(BaseModel):
    """GET /collections."""

    collections: list[CollectionInfo]
