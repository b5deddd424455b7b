"""What an operator can set on `bicross serve`: models, limits, timeouts, keys, CORS (no web framework imported)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bicross.errors import InvalidInput

if TYPE_CHECKING:
    from bicross.encoders.bi_encoder import BiEncoder
    from bicross.rerankers.cross_encoder import CrossEncoder
    from bicross.search import SearchConfig
    from bicross.service.shadow import ShadowPipeline

__all__ = ["ModelLoader", "ServiceSettings", "settings_from_json", "settings_to_json"]

DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L-12-v2"  # same as bicross.rerankers (not imported: torch)


@dataclass(frozen=True)
class ServiceSettings:
    """Server-wide settings; every limit is refused with a 4xx naming it when a request crosses it.

    `max_queue` counts model requests admitted at once (running plus waiting): one more gets 429 at once
    with `Retry-After`; so does one that the work queued ahead would keep past its timeout (expected from
    measured run times, admission.py). `timeout_seconds` is the default per-request deadline (a request may ask for less
    or more, up to `max_timeout_seconds`); work still waiting when its deadline passes never reaches a model.
    `batch_wait_ms` / `max_batch_tokens` shape the micro-batches of embedding requests.

    Shadow A/B (shadow.py): with a `shadow_pipeline`, the `shadow_share` (0..1) of /search queries picked by
    a hash of their text and `shadow_seed` also run it in the background; at most `shadow_max_queued` wait
    (more are skipped and counted); each pair goes to the JSONL `shadow_log` and to /metrics.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    search_config: SearchConfig | None = None  # None: bicross's measured default pipeline (SearchConfig())
    reranker: str | None = DEFAULT_CROSS_ENCODER  # None: no cross-encoder (searches return first-stage order)
    rerank_max_length: int = 256  # bicross.search.DEFAULT_RERANK_MAX_LENGTH, the measured default
    api_key_file: Path | None = None
    api_keys_env: str = "BICROSS_API_KEYS"  # comma-separated `key` or `key:read` entries
    allow_anonymous_writes: bool = False
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 2_000_000
    max_items: int = 256  # documents, queries or input texts per request
    max_query_chars: int = 2_000
    max_top_k: int = 1_000  # top_k and rerank_depth per request
    max_queue: int = 64
    timeout_seconds: float = 30.0
    max_timeout_seconds: float = 300.0
    retry_after_seconds: int = 1
    batch_wait_ms: float = 2.0
    max_batch_tokens: int = 8_192
    score_cache_entries: int = 100_000
    snippet_chars: int = 300
    shadow_pipeline: ShadowPipeline | None = None
    shadow_share: float = 0.0
    shadow_seed: int = 0
    shadow_log: Path | None = None
    shadow_max_queued: int = 8

    def __post_init__(self) -> None:
        positive = {"max_body_bytes": self.max_body_bytes, "max_items": self.max_items,
                    "max_query_chars": self.max_query_chars, "max_top_k": self.max_top_k, "max_queue": self.max_queue,
                    "timeout_seconds": self.timeout_seconds, "max_batch_tokens": self.max_batch_tokens,
                    "max_timeout_seconds": self.max_timeout_seconds}
        wrong = {name: value for name, value in positive.items() if value <= 0}
        if wrong:
            raise InvalidInput("service settings must be positive: " + ", ".join(f"{k}={v}" for k, v in wrong.items()))
        if self.batch_wait_ms < 0:
            raise InvalidInput(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if not 0.0 <= self.shadow_share <= 1.0:
            raise InvalidInput(f"shadow_share is the share of queries shadowed, within [0, 1]; got {self.shadow_share}")
        if self.shadow_share > 0 and self.shadow_pipeline is None:
            raise InvalidInput("shadow_share > 0 needs a shadow pipeline to run: give --shadow-config FILE")
        if self.shadow_max_queued < 1:
            raise InvalidInput(f"shadow_max_queued must be >= 1, got {self.shadow_max_queued}")


@dataclass(frozen=True)
class ModelLoader:
    """How the service gets its models (tests hand in wrapped or tiny ones); called once, at startup.

    `encoder(name)` gets the model name a collection's manifest records; `reranker(name, max_length)` the
    settings' cross-encoder.
    """

    encoder: Callable[[str], BiEncoder] = field(default_factory=lambda: _load_encoder)
    reranker: Callable[[str, int], CrossEncoder] = field(default_factory=lambda: _load_reranker)


def _load_encoder(name: str) -> BiEncoder:
    from bicross.encoders.bi_encoder import BiEncoder

    return BiEncoder.load(name)


def _load_reranker(name: str, max_length: int) -> CrossEncoder:
    from bicross.rerankers.cross_encoder import CrossEncoder

    return CrossEncoder.load(name, max_length=max_length)


def settings_to_json(settings: ServiceSettings) -> dict[str, Any]:
    """The settings as JSON values (paths as strings, the pipelines as objects), as `bicross serve --workers N`
    hands them to each worker process; `settings_from_json` reads them back.

    >>> settings = ServiceSettings(port=9000, cors_origins=("http://x.test",), api_key_file=Path("keys.txt"))
    >>> settings_from_json(json.loads(json.dumps(settings_to_json(settings)))) == settings
    True
    """
    return json.loads(json.dumps(asdict(settings), default=str))


def settings_from_json(values: Mapping[str, Any]) -> ServiceSettings:
    """ServiceSettings from `settings_to_json`'s values (checked as any settings are)."""
    values = dict(values)
    for name in ("api_key_file", "shadow_log"):
        if values.get(name) is not None:
            values[name] = Path(values[name])
    values["cors_origins"] = tuple(values.get("cors_origins", ()))
    if values.get("search_config") is not None:
        values["search_config"] = _search_config(values["search_config"])
    if values.get("shadow_pipeline") is not None:
        from bicross.service.shadow import ShadowPipeline

        pipeline = values["shadow_pipeline"]
        values["shadow_pipeline"] = ShadowPipeline(_search_config(pipeline["config"]), pipeline["rerank"])
    return ServiceSettings(**values)


def _search_config(values: Mapping[str, Any]) -> SearchConfig:
    from bicross.retrieval import FirstStageConfig
    from bicross.search import SearchConfig

    return SearchConfig(**{**values, "first_stage": FirstStageConfig(**values["first_stage"])})
