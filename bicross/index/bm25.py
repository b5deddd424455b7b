"""BM25 keyword index over a list of texts that can grow: build, update (add, delete), search, save, load.

The index stores term frequencies, not scores. Texts are indexed in segments (bm25_segments.py: one per
`build` or `update` that adds texts, each with its own vocabulary and term-by-row postings) and deleted rows
are tombstones; a query looks up its terms' postings in every segment, skips deleted rows, and scores them
with the corpus-wide statistics of that moment: live document count N, average length and each term's
document frequency over the live rows (what Lucene does). So adding texts analyses only those texts and
leaves the other segments as they are, while the scores stay those of a fresh build: the arithmetic is that
of bm25s' eager scoring (`bm25_segments.term_scores`), equal to bm25s' full build over the live texts (bit for
bit on the tests' SciFact slice), and a grown index returns the same ids, order and scores as one built from
scratch over its live texts.

Tokenization is ours, applied identically to documents and queries: lowercase -> words of 2+ word
characters (scikit-learn's pattern, as bm25s.tokenize; runs of Chinese, Japanese or Korean characters become
overlapping character bigrams, `analysis.cjk_terms`) -> drop stopwords (bm25s' lists) -> Snowball stem
(PyStemmer). We build each segment's vocabulary ourselves, in first-seen order, so the same texts always give
byte-identical files (bm25s' own tokenizer orders it by set hashing).

Defaults and why: k1 1.5, b 0.75, Lucene idf; no stopwords and no stemming unless `detect_language`
recognises the corpus as one of the twelve languages with both a bm25s stopword list and a Snowball stemmer
(English, German, French, Spanish, Italian, Portuguese, Dutch, Danish, Norwegian, Swedish, Russian,
Turkish): the language whose stopword list covers the largest share of a sample's words, if that share is
at least 20% (10% for Russian and Turkish), gets its stopwords and stemmer. For English, over the full test
qrels (pytrec_eval, texts = ``Document.full_text``, i.e. title + ". " + text), this gives nDCG@10 /
Recall@100 of 0.686 / 0.913 on SciFact and 0.365 / 0.735 on Cranfield, against 0.662 / 0.876 and 0.337 /
0.704 without stemming; leaving the title out costs another 0.015 to 0.045 nDCG@10. For the other languages
it is the usual choice, not measured here (we have no non-English qrels).

Shortcuts: each `update` that adds texts appends a segment, and deleted rows stay in their segment's
postings until `compacted()` merges everything into one (a remap of the postings, no re-analysis; a
collection compacts past `MAX_SEGMENTS`). Nothing is precomputed per (document, term), since idf and the
average length move with every update: a query does, for its terms' postings in every segment, the tf
arithmetic bm25s' eager index did at build (each index computes its rows' length norms once, at its first
query), then one pass over a float32 per row as bm25s did. On 200,000 SciFact abstracts (bench/bm25_growth.py)
a query took 1.8 to 2.8 ms of CPU against 1.1 ms for the eager index (more with deletes, which are skipped per
posting), while adding 100 documents took 0.014 s instead of a 43 s rebuild. The language is detected
once, by `build` (a collection records it in its manifest); `update` analyses new texts with the index's
config. A search returns only documents with a positive score (for "lucene", exactly those sharing a term
with the query), so it may return fewer than top_k; score ties are broken by ascending row id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from bicross.errors import IndexCorrupt, InvalidInput
from bicross.index.analysis import LANGUAGES, STOPWORD_LISTS, Analyzer, detect_language, import_stemmer
from bicross.index.bm25_segments import (
    Bm25Segment,
    build_segment,
    idf,
    length_norms,
    load_segment,
    merge_segments,
    save_segment,
    term_scores,
)
from bicross.scoring.fusion import RankedList

__all__ = ["Bm25Config", "Bm25Index", "Bm25Method"]

Bm25Method = Literal["lucene", "robertson", "atire"]
CjkAnalysis = Literal["bigrams", "none"]
_METHODS = ("lucene", "robertson", "atire")
_CJK = ("bigrams", "none")
_FORMAT = "bicross-bm25"
_FORMAT_VERSION = 2  # 1: bm25s' eager score arrays (bicross before segment-wise BM25), refused by `load`
_CONFIG_FILE = "bm25_config.json"
_TOMBSTONES_FILE = "tombstones.npy"
_NO_POSITIONS = np.zeros(0, dtype=np.intp)


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
    """A BM25 index whose row ids are positions among its live texts, oldest first; immutable: `update`
    and `compacted` return a new index sharing the unchanged segments.

    Create one with `Bm25Index.build` or `Bm25Index.load`; the constructor takes built segments, the config
    they were analysed with and the sorted rows (over all segments, in order) that are deleted.
    """

    def __init__(self, segments: Sequence[Bm25Segment], config: Bm25Config,
                 tombstones: NDArray[np.int64] | None = None) -> None:
        self._segments = tuple(segments)
        self._config = config
        self._analyzer = Analyzer(config)
        self._offsets = np.cumsum([0] + [segment.num_rows for segment in self._segments], dtype=np.int64)
        rows = int(self._offsets[-1])
        self._tombstones = np.zeros(0, np.int64) if tombstones is None else np.array(tombstones, dtype=np.int64)
        self._tombstones.flags.writeable = False  # handed out by `tombstones`: nobody may change what is skipped
        dead = self._tombstones
        if dead.ndim != 1 or np.any(np.diff(dead) <= 0) or (dead.size and not 0 <= dead[0] <= dead[-1] < rows):
            raise IndexCorrupt(f"BM25 tombstones must be sorted distinct rows below {rows}; rebuild the index")
        self._live: NDArray[np.bool_] | None = None
        if dead.size:
            self._live = np.ones(rows, dtype=bool)
            self._live[dead] = False
        self._num_documents = rows - int(dead.size)
        # Live length: each segment's total minus its deleted rows' lengths (the tombstones, not a pass over rows).
        self._total_length = sum(segment.total_length for segment in self._segments)
        bounds = np.searchsorted(dead, self._offsets).tolist()
        self._segment_dead = [dead[bounds[number]:bounds[number + 1]] - start  # (deleted rows in the segment,)
                              for number, start in enumerate(self._offsets[:-1].tolist())]
        for segment, segment_dead in zip(self._segments, self._segment_dead, strict=True):
            self._total_length -= int(np.asarray(segment.lengths)[segment_dead].sum())
        self._norms: list[NDArray[np.float64] | None] = [None] * len(self._segments)
        self._starts: list[int] = self._offsets[:-1].tolist()  # first row of each segment

    @classmethod
    def build(cls, texts: Sequence[str], config: Bm25Config | None = None) -> Bm25Index:
        """Index `texts` (row id i = texts[i]); pass title + ". " + text, as `Document.full_text` does.

        Without a `config` the language is detected from `texts` (see the module docstring) and kept for updates.
        """
        _check_texts(texts)
        if len(texts) == 0:
            raise InvalidInput("cannot build a BM25 index over zero texts; add at least one document")
        config = Bm25Config.for_language(detect_language(texts)) if config is None else config
        return cls([build_segment(Analyzer(config)(texts))], config)

    @classmethod
    def from_segment_folders(cls, folders: Sequence[Path], config: Bm25Config,
                             tombstones: NDArray[np.int64] | None = None, mmap: bool = True) -> Bm25Index:
        """An index over segments saved one per folder by `save_segment` (as a collection stores them)."""
        return cls([load_segment(folder, config.to_dict(), mmap) for folder in folders], config, tombstones)

    @property
    def config(self) -> Bm25Config:
        """The analysis and scoring settings the index was built with."""
        return self._config

    @property
    def num_documents(self) -> int:
        """How many texts are live (row ids are 0 .. num_documents - 1)."""
        return self._num_documents

    @property
    def segments(self) -> tuple[Bm25Segment, ...]:
        """The segments, oldest first; rows of deleted texts are still in them (see `tombstones`)."""
        return self._segments

    @property
    def tombstones(self) -> NDArray[np.int64]:
        """Sorted rows (over all segments, in order) of the deleted texts."""
        return self._tombstones

    def update(self, deleted: Sequence[int] | NDArray[np.integer] = (), added: Sequence[str] = ()) -> Bm25Index:
        """The index after deleting the texts at positions `deleted` (current row ids) and appending `added`.

        Costs the analysis of `added` only: other segments are shared, deleted rows become tombstones, and
        the statistics that idf and length normalization need are summed at query time. An update of a text
        is a delete plus an add, so the new version moves to the end of the row order.
        """
        positions = np.asarray(deleted, dtype=np.int64)
        if positions.ndim != 1 or (positions.size and not 0 <= positions.min() <= positions.max() < self.num_documents):
            raise InvalidInput(f"deleted must be positions between 0 and {self.num_documents - 1}, got {deleted!r}")
        _check_texts(added)
        tombstones = np.union1d(self._tombstones, self._live_rows()[positions]).astype(np.int64)
        segments = self._segments + ((build_segment(self._analyzer(added)),) if len(added) else ())
        return Bm25Index(segments, self._config, tombstones)

    def compacted(self) -> Bm25Index:
        """The same live texts in one segment without tombstones (the same scores; `self` if it already is)."""
        if len(self._segments) == 1 and self._tombstones.size == 0:
            return self
        live = np.ones(int(self._offsets[-1]), dtype=bool) if self._live is None else self._live
        masks = [live[start:end] for start, end in zip(self._offsets[:-1], self._offsets[1:], strict=True)]
        return Bm25Index([merge_segments(self._segments, masks)], self._config)

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
        """Names of the files and folders `save` writes, relative to its folder."""
        segments = [f"segment-{number}" for number in range(len(self._segments))]
        return sorted([_CONFIG_FILE, *segments, *([_TOMBSTONES_FILE] if self._tombstones.size else [])])

    def save_segment(self, number: int, folder: Path) -> None:
        """Write segment `number` alone into `folder` (a collection keeps each beside its documents)."""
        save_segment(self._segments[number], folder, self._config.to_dict())

    def save(self, folder: Path) -> None:
        """Write the index into `folder` (created if missing); the caller makes the write atomic."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(len(self._segments)):
            self.save_segment(number, folder / f"segment-{number}")
        if self._tombstones.size:
            np.save(folder / _TOMBSTONES_FILE, self._tombstones, allow_pickle=False)
        manifest = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "num_documents": self.num_documents,
            "segments": len(self._segments),
            "tombstones": bool(self._tombstones.size),
            "config": self._config.to_dict(),
        }
        (folder / _CONFIG_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, mmap: bool = False) -> Bm25Index:
        """Read an index written by `save`; `mmap=True` maps the postings arrays instead of reading them."""
        folder = Path(folder)
        how = "rebuild it with Bm25Index.build(texts, config).save(folder)"
        if not (folder / _CONFIG_FILE).is_file():
            raise IndexCorrupt(f"BM25 index in {folder} is incomplete (missing {_CONFIG_FILE}); {how}")
        try:
            manifest = json.loads((folder / _CONFIG_FILE).read_text(encoding="utf-8"))
            if manifest.get("format") == _FORMAT and manifest.get("format_version") == 1:
                raise IndexCorrupt(f"{folder} holds a BM25 index of an older bicross (format v1: precomputed bm25s "
                                   f"scores, which cannot grow); {how}")
            if manifest.get("format") != _FORMAT or manifest.get("format_version") != _FORMAT_VERSION:
                raise IndexCorrupt(
                    f"{folder / _CONFIG_FILE} is not a {_FORMAT} v{_FORMAT_VERSION} index "
                    f"(found {manifest.get('format')!r} v{manifest.get('format_version')!r}); {how}"
                )
            config = Bm25Config.from_dict(manifest["config"])
            segments = [folder / f"segment-{number}" for number in range(int(manifest["segments"]))]
            missing = [path.name for path in segments if not path.is_dir()]
            if missing:
                raise IndexCorrupt(f"BM25 index in {folder} is incomplete (missing {', '.join(missing)}); {how}")
            tombstones = np.load(folder / _TOMBSTONES_FILE, allow_pickle=False) if manifest["tombstones"] else None
            index = cls.from_segment_folders(segments, config, tombstones, mmap)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise IndexCorrupt(f"cannot read the BM25 index in {folder} ({type(error).__name__}: {error}); {how}") from error
        if index.num_documents != manifest["num_documents"]:
            raise IndexCorrupt(f"BM25 index in {folder} is inconsistent: {index.num_documents} live documents in its "
                               f"segments, {manifest['num_documents']} in {_CONFIG_FILE}; {how}")
        return index

    def _search_terms(self, terms: list[str], top_k: int, allowed: NDArray[np.bool_] | None = None) -> RankedList:
        scores = self._scores(terms)  # (rows,) over all segments' rows; deleted rows stay at 0
        if scores is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if allowed is not None:
            if self._live is not None:
                scores = scores[self._live]  # (num_documents,) row ids are positions among live rows
            return _top_k_positive(np.where(allowed, scores, 0), top_k)  # only positive scores are returned
        rows, best = _top_k_positive(scores, top_k)
        return rows - np.searchsorted(self._tombstones, rows), best  # position = row - deleted rows before it

    def _scores(self, terms: list[str]) -> NDArray[np.float32] | None:
        """Sum of the terms' scores per row, or None when no term is in a live row."""
        scores = None
        scored: dict[str, list[tuple[int, NDArray[np.intp], NDArray[np.float32]]]] = {}
        # Repeated query terms count once per occurrence, added in query order, as bm25s and Lucene do.
        for term in terms:
            if term not in scored:
                scored[term] = self._term_scores(term)
            for start, rows, term_score in scored[term]:
                if scores is None:
                    scores = np.zeros(int(self._offsets[-1]), dtype=np.float32)
                np.add.at(scores[start:], rows, term_score)  # numpy's fast path: float32 += at intp indices
        return scores

    def _term_scores(self, term: str) -> list[tuple[int, NDArray[np.intp], NDArray[np.float32]]]:
        """(first row of the segment, rows in it containing `term`, the term's score there: 0 in deleted rows)."""
        found = []
        for number, segment in enumerate(self._segments):
            postings = segment.postings(term)
            if postings is None:
                continue
            rows, frequencies = postings
            dead, deleted = self._segment_dead[number], _NO_POSITIONS
            if 0 < dead.size * 16 < rows.size:  # few deletes: binary-search them in the sorted rows, not a pass over all
                at = np.searchsorted(rows, dead)
                inside = at < rows.size
                deleted = at[inside][rows[at[inside]] == dead[inside]]  # positions of deleted rows in the postings
            elif dead.size:
                keep = self._live[self._starts[number] + rows]  # type: ignore[index]
                rows, frequencies = rows[keep], frequencies[keep]
            if rows.size > deleted.size:
                found.append((number, rows.astype(np.intp), frequencies, deleted))
        document_frequency = sum(rows.size - deleted.size for _, rows, _, deleted in found)  # live rows only
        if document_frequency == 0:
            return []
        config = self._config
        term_idf = idf(config.method, document_frequency, self._num_documents)
        scored = []
        for number, rows, frequencies, deleted in found:
            score = term_scores(frequencies, self._length_norms(number)[rows], term_idf, config.k1, config.method)
            if deleted.size:
                score[deleted] = 0  # a deleted row gains nothing, so it never has a positive score
            scored.append((self._starts[number], rows, score))
        return scored

    def _length_norms(self, number: int) -> NDArray[np.float64]:
        """Segment `number`'s `length_norms` under this index's average length, computed at its first query."""
        norms = self._norms[number]
        if norms is None:  # two threads may both compute it: the same values, so either assignment is fine
            norms = length_norms(self._segments[number].lengths, self._total_length / self._num_documents,
                                 self._config.k1, self._config.b)
            self._norms[number] = norms
        return norms

    def _live_rows(self) -> NDArray[np.int64]:
        rows = int(self._offsets[-1])
        return np.arange(rows, dtype=np.int64) if self._live is None else np.flatnonzero(self._live)

    def _checked_allowed(self, allowed: NDArray[np.bool_] | None) -> NDArray[np.bool_] | None:
        if allowed is None:
            return None
        allowed = np.asarray(allowed)
        if allowed.dtype != np.bool_ or allowed.shape != (self.num_documents,):
            raise InvalidInput(f"allowed must be a boolean array with one entry per document "
                               f"({self.num_documents}), got {allowed.dtype} of shape {allowed.shape}")
        return allowed


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise InvalidInput("texts must be a sequence of strings, got a single string; wrap it in a list")
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInput(f"texts[{position}] is a {type(text).__name__}, not a str")


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
