"""BM25 keyword index over a list of texts: build, search top-k row ids, save to and load from a folder.

Scoring is bm25s' eager sparse BM25 (the score of every (document, term) pair is computed at build time,
so a query is a sum of a few sparse columns). Tokenization is ours, applied identically to documents and
queries: lowercase -> words of 2+ word characters (scikit-learn's pattern, as bm25s.tokenize; runs of Chinese,
Japanese or Korean characters become overlapping character bigrams, `analysis.cjk_terms`) -> drop
stopwords (bm25s' lists) -> Snowball stem (PyStemmer). We build the vocabulary ourselves, in first-seen
order, so the same texts always give byte-identical files (bm25s' own tokenizer orders it by set hashing).

Defaults and why: k1 1.5, b 0.75, Lucene idf; no stopwords and no stemming unless `detect_language`
recognises the corpus as one of the twelve languages with both a bm25s stopword list and a Snowball stemmer
(English, German, French, Spanish, Italian, Portuguese, Dutch, Danish, Norwegian, Swedish, Russian,
Turkish): the language whose stopword list covers the largest share of a sample's words, if that share is
at least 20% (10% for Russian and Turkish), gets its stopwords and stemmer. For English, over the full test
qrels (pytrec_eval, texts = ``Document.full_text``, i.e. title + ". " + text), this gives nDCG@10 /
Recall@100 of 0.686 / 0.913 on SciFact and 0.365 / 0.735 on Cranfield, against 0.662 / 0.876 and 0.337 /
0.704 without stemming; leaving the title out costs another 0.015 to 0.045 nDCG@10. For the other languages
it is the usual choice, not measured here (we have no non-English qrels).

Shortcuts: the index is immutable; adding or deleting documents means rebuilding it (idf depends on every
document), which takes about a second for SciFact's 5,183 abstracts (Collection does it at every commit).
A search returns only documents with a positive score (for "lucene", exactly those sharing a term with
the query), so it may return fewer than top_k; score ties are broken by ascending row id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from bicross.errors import IndexCorrupt, InvalidInput
from bicross.index.analysis import LANGUAGES, STOPWORD_LISTS, Analyzer, detect_language, import_bm25s, import_stemmer
from bicross.scoring.fusion import RankedList

if TYPE_CHECKING:
    import bm25s

__all__ = ["Bm25Config", "Bm25Index", "Bm25Method"]

Bm25Method = Literal["lucene", "robertson", "atire"]
CjkAnalysis = Literal["bigrams", "none"]
_METHODS = ("lucene", "robertson", "atire")
_CJK = ("bigrams", "none")
_FORMAT = "bicross-bm25"
_FORMAT_VERSION = 1
_CONFIG_FILE = "bm25_config.json"
# bm25s writes these through BM25.save(...) under the names we give it.
_BM25S_FILES = {
    "data_name": "bm25_data.npy",
    "indices_name": "bm25_indices.npy",
    "indptr_name": "bm25_indptr.npy",
    "vocab_name": "bm25_vocab.json",
    "params_name": "bm25_params.json",
}


@dataclass(frozen=True)
class Bm25Config:
    """How texts become terms and how terms are scored; saved with the index so queries match the build.

    Args:
        stopwords: a bm25s stopword list ("en", "de", ... or "english", ...); None keeps every word.
        stemmer: a PyStemmer (Snowball) algorithm name such as "english"; None disables stemming.
        k1: term-frequency saturation; higher lets repeated terms count longer.
        b: document-length normalization, 0 (none) to 1 (full).
        method: BM25 variant as bm25s names it; "lucene" never gives a matching term a zero idf.
        lowercase: lowercase texts before splitting (stopword lists are lowercase).
        cjk: "bigrams" cuts runs of Chinese, Japanese and Korean characters into overlapping bigrams
            (`analysis.cjk_terms`); "none" keeps a run as one word, the analysis of folders built before
            bicross recorded this choice (`from_dict` reads a missing value as "none").
    """

    stopwords: str | None = None
    stemmer: str | None = None
    k1: float = 1.5
    b: float = 0.75
    method: Bm25Method = "lucene"
    lowercase: bool = True
    cjk: CjkAnalysis = "bigrams"

    def __post_init__(self) -> None:
        if self.stopwords is not None and self.stopwords not in STOPWORD_LISTS:
            raise InvalidInput(
                f"unknown stopword list {self.stopwords!r}; choose one of {sorted(STOPWORD_LISTS)} "
                "or None to keep every word"
            )
        if self.stemmer is not None and self.stemmer not in import_stemmer().algorithms():
            raise InvalidInput(
                f"unknown stemmer {self.stemmer!r}; choose a PyStemmer algorithm "
                f"({', '.join(import_stemmer().algorithms())}) or None to disable stemming"
            )
        if isinstance(self.k1, bool) or not isinstance(self.k1, int | float) or not 0 <= self.k1 < np.inf:
            raise InvalidInput(f"k1 must be a finite number >= 0 (1.2 to 2.0 is usual), got {self.k1!r}")
        if isinstance(self.b, bool) or not isinstance(self.b, int | float) or not 0 <= self.b <= 1:
            raise InvalidInput(f"b must be a number between 0 and 1 (0.75 is usual), got {self.b!r}")
        if self.method not in _METHODS:
            raise InvalidInput(
                f"method must be one of {_METHODS} ('lucene' is the default), got {self.method!r}"
            )
        if not isinstance(self.lowercase, bool):
            raise InvalidInput(f"lowercase must be True or False, got {self.lowercase!r}")
        if self.cjk not in _CJK:
            raise InvalidInput(f"cjk must be one of {_CJK} ('bigrams' is the default), got {self.cjk!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, for the index's config file."""
        return asdict(self)

    @classmethod
    def for_language(cls, language: str | None) -> Bm25Config:
        """Stopwords and Snowball stemmer of `language` ("en", "de", ...); None gives the neutral config.

        >>> Bm25Config.for_language("en").stemmer, Bm25Config.for_language(None).stopwords is None
        ('english', True)
        """
        if language is None:
            return cls()
        if language not in LANGUAGES:
            raise InvalidInput(f"no stopwords/stemmer for language {language!r}; choose one of "
                               f"{sorted(LANGUAGES)} or none")
        return cls(stopwords=language, stemmer=LANGUAGES[language])

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Bm25Config:
        """Inverse of `to_dict`; unknown keys are an error rather than silently ignored.

        A config saved before the `cjk` field existed analysed CJK runs as single words: it reads as "none".

        >>> Bm25Config.from_dict({"k1": 1.5}).cjk, Bm25Config().cjk
        ('none', 'bigrams')
        """
        unknown = set(values) - {field.name for field in fields(cls)}
        if unknown:
            raise InvalidInput(f"unknown Bm25Config fields {sorted(unknown)}")
        return cls(**{"cjk": "none", **values})


class Bm25Index:
    """An immutable BM25 index whose row ids are positions in the list of texts it was built from.

    Create one with `Bm25Index.build` or `Bm25Index.load`; the constructor takes an indexed bm25s retriever.
    """

    def __init__(self, retriever: bm25s.BM25, config: Bm25Config) -> None:
        self._retriever = retriever
        self._config = config
        self._analyzer = Analyzer(config)

    @classmethod
    def build(cls, texts: Sequence[str], config: Bm25Config | None = None) -> Bm25Index:
        """Index `texts` (row id i = texts[i]); pass title + ". " + text, as `Document.full_text` does."""
        if isinstance(texts, str):
            raise InvalidInput("texts must be a sequence of strings, got a single string; wrap it in a list")
        if len(texts) == 0:
            raise InvalidInput("cannot build a BM25 index over zero texts; add at least one document")
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInput(f"texts[{position}] is a {type(text).__name__}, not a str")
        config = Bm25Config.for_language(detect_language(texts)) if config is None else config
        vocabulary: dict[str, int] = {}
        term_ids = [
            [vocabulary.setdefault(term, len(vocabulary)) for term in terms]
            for terms in Analyzer(config)(texts)
        ]
        retriever = import_bm25s().BM25(k1=config.k1, b=config.b, method=config.method)
        # A corpus whose texts are all stopwords has average length 0: bm25s divides 0 by 0 for no term.
        with np.errstate(divide="ignore", invalid="ignore"):
            retriever.index((term_ids, vocabulary), create_empty_token=False, show_progress=False)
        return cls(retriever, config)

    @property
    def config(self) -> Bm25Config:
        """The analysis and scoring settings the index was built with."""
        return self._config

    @property
    def num_documents(self) -> int:
        """How many texts were indexed (row ids are 0 .. num_documents - 1)."""
        return int(self._retriever.scores["num_docs"])

    def search(self, query: str, top_k: int, allowed: NDArray[np.bool_] | None = None) -> RankedList:
        """Row ids and BM25 scores of the best `top_k` documents, best first; fewer if fewer match.

        A query with no indexable term (empty, only stopwords, or only unknown words) returns empty arrays.
        `allowed` (bool, one per row) keeps only those rows; it is applied before the top-k cut, so up to
        `top_k` allowed matches come back.
        """
        _check_top_k(top_k)
        if not isinstance(query, str):
            raise InvalidInput(f"query must be a str, got {type(query).__name__}")
        return self._search_terms(self._analyzer([query])[0], top_k, self._checked_allowed(allowed))

    def search_many(self, queries: Sequence[str], top_k: int,
                    allowed: NDArray[np.bool_] | None = None) -> list[RankedList]:
        """`search` for each query, in order."""
        _check_top_k(top_k)
        if isinstance(queries, str) or not all(isinstance(query, str) for query in queries):
            raise InvalidInput("queries must be a sequence of strings; for one query use search()")
        allowed = self._checked_allowed(allowed)
        return [self._search_terms(terms, top_k, allowed) for terms in self._analyzer(queries)]

    def files(self) -> list[str]:
        """Names of the files `save` writes, relative to its folder."""
        return sorted([_CONFIG_FILE, *_BM25S_FILES.values()])

    def save(self, folder: Path) -> None:
        """Write the index into `folder` (created if missing); the caller makes the write atomic."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._retriever.save(folder, show_progress=False, **_BM25S_FILES)
        manifest = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "num_documents": self.num_documents,
            "config": self._config.to_dict(),
        }
        (folder / _CONFIG_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, mmap: bool = False) -> Bm25Index:
        """Read an index written by `save`; `mmap=True` maps the score arrays instead of reading them."""
        folder = Path(folder)
        missing = [
            name for name in sorted([_CONFIG_FILE, *_BM25S_FILES.values()]) if not (folder / name).is_file()
        ]
        if missing:
            raise IndexCorrupt(
                f"BM25 index in {folder} is incomplete (missing {', '.join(missing)}); "
                "rebuild it with Bm25Index.build(texts, config).save(folder)"
            )
        try:
            manifest = json.loads((folder / _CONFIG_FILE).read_text(encoding="utf-8"))
            if manifest.get("format") != _FORMAT or manifest.get("format_version") != _FORMAT_VERSION:
                raise IndexCorrupt(
                    f"{folder / _CONFIG_FILE} is not a {_FORMAT} v{_FORMAT_VERSION} index "
                    f"(found {manifest.get('format')!r} v{manifest.get('format_version')!r}); "
                    "rebuild it with this version of bicross"
                )
            config = Bm25Config.from_dict(manifest["config"])
            num_documents = int(manifest["num_documents"])
            retriever = import_bm25s().BM25.load(folder, mmap=mmap, show_progress=False, **_BM25S_FILES)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise IndexCorrupt(
                f"cannot read the BM25 index in {folder} ({type(error).__name__}: {error}); "
                "rebuild it with Bm25Index.build(texts, config).save(folder)"
            ) from error
        _check_consistent(retriever, config, num_documents, folder)
        return cls(retriever, config)

    def _search_terms(self, terms: list[str], top_k: int, allowed: NDArray[np.bool_] | None = None) -> RankedList:
        vocabulary = self._retriever.vocab_dict
        # Repeated query terms count once per occurrence, as in bm25s.retrieve and Lucene.
        term_ids = [vocabulary[term] for term in terms if term in vocabulary]
        if not term_ids:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = self._retriever.get_scores_from_ids(term_ids)  # (num_documents,)
        if allowed is not None:
            scores = np.where(allowed, scores, 0)  # only positive scores are returned
        return _top_k_positive(scores, top_k)

    def _checked_allowed(self, allowed: NDArray[np.bool_] | None) -> NDArray[np.bool_] | None:
        if allowed is None:
            return None
        allowed = np.asarray(allowed)
        if allowed.dtype != np.bool_ or allowed.shape != (self.num_documents,):
            raise InvalidInput(f"allowed must be a boolean array with one entry per document "
                               f"({self.num_documents}), got {allowed.dtype} of shape {allowed.shape}")
        return allowed


def _top_k_positive(scores: NDArray[np.float32], top_k: int) -> RankedList:
    """Best `top_k` entries with a positive score, best first, ties by ascending id: (ids, scores)."""
    candidates = np.flatnonzero(scores > 0)  # (n_matching,)
    candidate_scores = scores[candidates]
    if candidates.size > top_k:
        # Keep everything tied with the k-th best so the id tie-break below sees all of them.
        threshold = np.partition(candidate_scores, candidates.size - top_k)[candidates.size - top_k]
        keep = candidate_scores >= threshold
        candidates, candidate_scores = candidates[keep], candidate_scores[keep]
    order = np.lexsort((candidates, -candidate_scores))[:top_k]
    return candidates[order].astype(np.int64), candidate_scores[order].astype(np.float32)


def _check_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise InvalidInput(f"top_k must be an integer >= 1, got {top_k!r}")


def _check_consistent(retriever: bm25s.BM25, config: Bm25Config, num_documents: int, folder: Path) -> None:
    """Catch a config file and score arrays that do not belong together (e.g. copied from two builds)."""
    indptr, indices = retriever.scores["indptr"], retriever.scores["indices"]
    problems = []
    if (retriever.k1, retriever.b, retriever.method) != (config.k1, config.b, config.method):
        problems.append("the scoring parameters differ from the config file")
    if retriever.scores["num_docs"] != num_documents:
        problems.append(
            f"{retriever.scores['num_docs']} documents in the scores, {num_documents} in the config"
        )
    if len(indptr) != len(retriever.vocab_dict) + 1 or (indices.size and indices.max() >= num_documents):
        problems.append("the score arrays do not match the vocabulary or document count")
    if problems:
        raise IndexCorrupt(
            f"BM25 index in {folder} is inconsistent: {'; '.join(problems)}; "
            "rebuild it with Bm25Index.build(texts, config).save(folder)"
        )
