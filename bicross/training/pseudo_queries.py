"""Pseudo-queries made from a collection itself, for label-free adaptation (`bicross adapt`): no query generator.

Three generators, each a pure function of one document (and, for salient terms, the collection's document
frequencies), seeded per document so a rerun makes the same queries:

- "title": the document's title asks for its body (the title is not in the text it must find).
- "sentence": one sentence asks for the rest of its document (the inverse cloze task of Lee et al. 2019):
  the sentence is removed from the text it must find, so matching it word for word is no help.
- "salient": the document's most BM25-salient words (idf times saturated term frequency), in the order
  they first occur, ask for the whole document: what a keyword searcher would type.

`generate_pseudo_queries` mixes them: for every document the generators of `PseudoQueryConfig.generators`
take turns, in that order, until `per_document` queries are made; then a seeded sample keeps at most
`max_queries` overall. Which mix works best is an empirical question: choose it on a labelled collection's
train/dev split only (see `bicross.training.adapt`, "Choosing the generators"), never on the split you report.

Shortcuts: sentences are split at ., ! or ? followed by white space (abbreviations split too; fragments
shorter than `min_words` words are skipped), and words are lowercase runs of letters and digits; both are
good enough to make a query, and they need no model and no language data.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bicross.errors import InvalidInput
from bicross.types import Document

__all__ = ["GENERATORS", "Generator", "PseudoQuery", "PseudoQueryConfig", "bm25_idf", "document_frequencies",
           "generate_pseudo_queries", "salient_queries", "sentence_queries", "split_sentences", "title_queries",
           "words"]

Generator = Literal["title", "sentence", "salient"]
GENERATORS: tuple[Generator, ...] = ("title", "sentence", "salient")
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class PseudoQuery:
    """A query made from a document: its text, the document it should find and the text that stands for it.

    `positive` is what the query is trained to find: the document without the query's own words where the
    generator took them out (title, sentence), else the whole document.
    """

    query_id: str
    text: str
    document_id: str
    positive: str
    generator: Generator


@dataclass(frozen=True)
class PseudoQueryConfig:
    """Which generators, in which order of preference, and how many queries (per document and overall)."""

    generators: tuple[Generator, ...] = GENERATORS
    per_document: int = 1
    max_queries: int = 1000
    seed: int = 13
    min_words: int = 4  # sentences shorter than this are not queries
    max_words: int = 32  # longer titles and sentences are cut to their first max_words words
    salient_terms: int = 6  # words per salient-terms query
    positive: Literal["rest", "full"] = "rest"  # title/sentence queries find the rest of their document, or all of it

    def __post_init__(self) -> None:
        generators = tuple(self.generators)
        object.__setattr__(self, "generators", generators)  # a TOML list arrives as a list
        unknown = [name for name in generators if name not in GENERATORS]
        if not generators or unknown or len(set(generators)) != len(generators):
            raise InvalidInput(f"generators must be distinct names among {list(GENERATORS)}, got {list(generators)}")
        for name in ("per_document", "max_queries", "min_words", "max_words", "salient_terms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInput(f"{name} must be a positive whole number, got {value!r}")
        if self.positive not in ("rest", "full"):
            raise InvalidInput(f"positive must be 'rest' or 'full', got {self.positive!r}")


def words(text: str) -> list[str]:
    """Lowercase words (runs of letters and digits) in order.

    >>> words("Vitamin D, and cancer-risk!")
    ['vitamin', 'd', 'and', 'cancer', 'risk']
    """
    return _WORD.findall(text.lower())


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: split after ., ! or ? followed by white space; blank pieces dropped.

    >>> split_sentences("Cells grow.  Genes vary! Why? end")
    ['Cells grow.', 'Genes vary!', 'Why?', 'end']
    """
    return [piece.strip() for piece in _SENTENCE_END.split(text.strip()) if piece.strip()]


def _cut(text: str, max_words: int) -> str:
    """`text` cut to its first `max_words` white-space words, without a trailing separator or stop."""
    return " ".join(text.split()[:max_words]).strip(" .;:,")


def _usable(text: str) -> bool:
    return bool(_WORD.search(text))


def title_queries(document: Document, max_words: int = 32, positive: str = "rest") -> list[PseudoQuery]:
    """The title as a query for the document's text; none when the title or the text is empty.

    >>> q, = title_queries(Document("d1", "Vitamin D lowers the risk.", title="Vitamin D and cancer."))
    >>> q.text, q.positive
    ('Vitamin D and cancer', 'Vitamin D lowers the risk.')
    >>> title_queries(Document("d2", "no title here"))
    []
    """
    text = _cut(document.title, max_words)
    if not _usable(text) or not _usable(document.text):
        return []
    target = document.text if positive == "rest" else document.full_text
    return [PseudoQuery(f"{document.id}|title|0", text, document.id, target, "title")]


def sentence_queries(document: Document, count: int = 1, seed: int = 13, min_words: int = 4, max_words: int = 32,
                     positive: str = "rest") -> list[PseudoQuery]:
    """Up to `count` sentences of the text, each a query for the rest of the document (seeded per document).

    A document needs a second sentence (something left to find) and sentences of at least `min_words` words.

    >>> doc = Document("d1", "Cells divide fast in culture. Genes control the cycle of every cell.", title="Cell cycle")
    >>> [(q.text, q.positive) for q in sentence_queries(doc, count=1, seed=0)]
    [('Cells divide fast in culture', 'Cell cycle. Genes control the cycle of every cell.')]
    >>> sentence_queries(Document("d2", "Only one sentence here, alas."))
    []
    """
    sentences = split_sentences(document.text)
    if len(sentences) < 2:
        return []
    eligible = [i for i, sentence in enumerate(sentences) if len(words(sentence)) >= min_words]
    chosen = random.Random(f"{seed}|{document.id}|sentence").sample(eligible, min(count, len(eligible)))
    queries = []
    for number, index in enumerate(chosen):
        rest = " ".join(sentences[:index] + sentences[index + 1:])
        target = Document(document.id, rest, document.title).full_text if positive == "rest" else document.full_text
        queries.append(PseudoQuery(f"{document.id}|sentence|{number}", _cut(sentences[index], max_words),
                                   document.id, target, "sentence"))
    return [query for query in queries if _usable(query.text)]


def document_frequencies(texts: Iterable[str]) -> Counter[str]:
    """In how many texts each word occurs.

    >>> sorted(document_frequencies(["a cell", "a gene a"]).items())
    [('a', 2), ('cell', 1), ('gene', 1)]
    """
    frequencies: Counter[str] = Counter()
    for text in texts:
        frequencies.update(set(words(text)))
    return frequencies


def bm25_idf(frequencies: Mapping[str, int], documents: int) -> dict[str, float]:
    """BM25's idf of every word: log(1 + (N - df + 0.5) / (df + 0.5)), positive even for very common words.

    >>> {word: round(value, 3) for word, value in bm25_idf({"a": 2, "cell": 1}, 2).items()}
    {'a': 0.182, 'cell': 0.693}
    """
    return {word: math.log(1 + (documents - df + 0.5) / (df + 0.5)) for word, df in frequencies.items()}


def salient_queries(document: Document, idf: Mapping[str, float], count: int = 1, terms: int = 6, seed: int = 13,
                    stopwords: frozenset[str] = frozenset(), k1: float = 1.2) -> list[PseudoQuery]:
    """Queries of the document's most salient words by idf * tf (k1 + 1) / (tf + k1), in document order.

    The first query takes the top `terms` words; each further one a seeded sample of `terms` from the top
    2 * `terms`. Words of one or two characters, numbers and `stopwords` are left out.

    >>> idf = {"the": 0.1, "gene": 2.0, "cell": 1.5, "cycle": 1.0, "of": 0.1}
    >>> [q.text for q in salient_queries(Document("d1", "the cell cycle of the gene"), idf, terms=2)]
    ['cell gene']
    """
    tokens = words(document.full_text)
    frequency = Counter(tokens)
    first = {}
    for position, token in enumerate(tokens):
        first.setdefault(token, position)
    candidates = [token for token in frequency if len(token) > 2 and not token.isdigit() and token not in stopwords]
    weight = {token: idf.get(token, 0.0) * frequency[token] * (k1 + 1) / (frequency[token] + k1)
              for token in candidates}
    ranked = sorted(candidates, key=lambda token: (-weight[token], first[token]))
    if not ranked:
        return []
    picks = [ranked[:terms]]
    pool = ranked[:2 * terms]
    rng = random.Random(f"{seed}|{document.id}|salient")
    for _ in range(count - 1):
        if len(pool) <= terms:
            break
        picks.append(rng.sample(pool, terms))
    texts = list(dict.fromkeys(" ".join(sorted(pick, key=first.__getitem__)) for pick in picks))
    return [PseudoQuery(f"{document.id}|salient|{number}", text, document.id, document.full_text, "salient")
            for number, text in enumerate(texts)]


def generate_pseudo_queries(documents: Sequence[Document], config: PseudoQueryConfig = PseudoQueryConfig(),
                            stopwords: frozenset[str] = frozenset()) -> list[PseudoQuery]:
    """The collection's pseudo-queries: per document the generators take turns (config order) up to
    `per_document`, repeated texts dropped; then at most `max_queries` kept by a seeded sample, in document order.

    >>> docs = [Document("d1", "Cells divide and grow. Genes control the cell cycle.", title="Cell cycle"),
    ...         Document("d2", "Heart disease and blood pressure in older patients.")]
    >>> [(q.document_id, q.generator, q.text) for q in generate_pseudo_queries(docs, PseudoQueryConfig(salient_terms=3))]
    [('d1', 'title', 'Cell cycle'), ('d2', 'salient', 'heart disease blood')]
    """
    idf = {}
    if "salient" in config.generators:
        idf = bm25_idf(document_frequencies(document.full_text for document in documents), len(documents))
    made: list[PseudoQuery] = []
    for document in documents:
        lists = []
        for name in config.generators:
            if name == "title":
                lists.append(title_queries(document, config.max_words, config.positive))
            elif name == "sentence":
                lists.append(sentence_queries(document, config.per_document, config.seed, config.min_words,
                                              config.max_words, config.positive))
            else:
                lists.append(salient_queries(document, idf, config.per_document, config.salient_terms, config.seed,
                                             stopwords))
        made += _take_turns(lists, config.per_document)
    if len(made) > config.max_queries:
        kept = sorted(random.Random(config.seed).sample(range(len(made)), config.max_queries))
        made = [made[i] for i in kept]
    return made


def _take_turns(lists: list[list[PseudoQuery]], limit: int) -> list[PseudoQuery]:
    """Round robin over the generators' lists, skipping a text already taken, until `limit` queries."""
    taken: list[PseudoQuery] = []
    seen: set[str] = set()
    for round_ in range(max((len(queries) for queries in lists), default=0)):
        for queries in lists:
            if len(taken) == limit:
                return taken
            if round_ < len(queries) and queries[round_].text.lower() not in seen:
                seen.add(queries[round_].text.lower())
                taken.append(queries[round_])
    return taken
