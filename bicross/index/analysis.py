"""Text analysis for BM25: words, stopword lists, Snowball stemmers, and the corpus language that picks them.

The same `Analyzer` turns documents (at build) and queries (at search) into terms, so both always match.
`detect_language` reads a sample of a corpus to choose stopwords and stemmer when the user did not
(see its docstring for the rule and its known misses).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from bicross.errors import MissingExtra

if TYPE_CHECKING:
    from bicross.index.bm25 import Bm25Config

__all__ = ["CJK_CHARACTERS", "LANGUAGES", "STOPWORD_LISTS", "WORD_PATTERN", "Analyzer", "cjk_terms", "detect_language",
           "import_bm25s", "import_stemmer", "stopword_set"]

WORD_PATTERN = re.compile(r"(?u)\b\w\w+\b")
# Scripts written without spaces between words, analysed as overlapping character bigrams (as Lucene's
# CJKAnalyzer does): Han (CJK unified ideographs, extension A, compatibility), Hiragana, Katakana (full and
# half width) and Hangul (syllables and jamo; Korean has spaces, but bigrams also match inside its words).
CJK_CHARACTERS = ("\u1100-\u11ff\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
                  "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f")
# A run of CJK characters, or a word of 2+ other word characters: on text without CJK this is WORD_PATTERN.
_CJK_OR_WORD = re.compile(rf"[{CJK_CHARACTERS}]+|[^\W{CJK_CHARACTERS}]{{2,}}")
_CJK_RUN = re.compile(rf"[{CJK_CHARACTERS}]+")
# Stopword lists shipped by bm25s, by ISO code and by English name.
STOPWORD_LISTS = {
    code: constant
    for codes, constant in [
        (("en", "english"), "STOPWORDS_EN"),
        (("en_plus", "english_plus"), "STOPWORDS_EN_PLUS"),
        (("da", "danish"), "STOPWORDS_DANISH"),
        (("de", "german"), "STOPWORDS_GERMAN"),
        (("es", "spanish"), "STOPWORDS_SPANISH"),
        (("fr", "french"), "STOPWORDS_FRENCH"),
        (("it", "italian"), "STOPWORDS_ITALIAN"),
        (("ko", "korean"), "STOPWORDS_KOREAN"),
        (("nl", "dutch"), "STOPWORDS_DUTCH"),
        (("no", "norwegian"), "STOPWORDS_NORWEGIAN"),
        (("pt", "portuguese"), "STOPWORDS_PORTUGUESE"),
        (("ru", "russian"), "STOPWORDS_RUSSIAN"),
        (("sv", "swedish"), "STOPWORDS_SWEDISH"),
        (("tr", "turkish"), "STOPWORDS_TURKISH"),
        (("zh", "chinese"), "STOPWORDS_CHINESE"),
    ]
    for code in codes
}
# Languages with both a bm25s stopword list and a Snowball stemmer.
LANGUAGES = {"en": "english", "da": "danish", "de": "german", "es": "spanish", "fr": "french", "it": "italian",
              "nl": "dutch", "no": "norwegian", "pt": "portuguese", "ru": "russian", "sv": "swedish",
              "tr": "turkish"}
# detect_language: prose covers 27-50% of its words (2+ letters) with its own list (SciFact 27%, Cranfield 35%,
# ~40% for the tests' paragraphs), identifiers and numbers ~0%. Russian and Turkish prose only 15-25%: their
# commonest function words are one letter long (и, в, с) or suffixes, and the index drops those.
_DETECTION_SHARE = {"ru": 0.1, "tr": 0.1}
_DEFAULT_DETECTION_SHARE = 0.2
_DETECTION_MIN_WORDS = 20  # fewer are too little evidence (two stopwords in ten words is chance)
# Stopwords that are also keywords of common programming and query languages: code reaches 20% English
# stopwords with these alone (`if x is not None and y in z`) and ~0% without; English prose keeps 15-26%.
_CODE_KEYWORDS = frozenset({"and", "as", "by", "do", "end", "for", "if", "in", "into", "is", "not", "on", "or", "then",
                            "this", "with"})
_MIN_PROSE_SHARE = 0.05


def import_bm25s() -> Any:
    try:
        import bm25s
    except ImportError as error:
        raise MissingExtra("bm25s", "bm25") from error
    return bm25s


@cache
def stopword_set(name: str) -> frozenset[str]:
    """The bm25s stopword list `name` ("en", "german", ...) as a set."""
    return frozenset(getattr(import_bm25s().stopwords, STOPWORD_LISTS[name]))


def import_stemmer() -> Any:
    try:
        import Stemmer
    except ImportError as error:
        raise MissingExtra("PyStemmer", "bm25") from error
    return Stemmer


def detect_language(texts: Sequence[str], sample: int = 500) -> str | None:
    """The language ("en", "de", ...) of a sample of `texts`, told by its stopwords; None when unclear.

    Up to `sample` evenly spaced texts are split into the words the index sees (lowercase, 2+ word
    characters). Each language with a stopword list and a stemmer (`Bm25Config.for_language`) scores the share
    of those words in its list; the best one is the answer when its share is at least 20% (10% for Russian and
    Turkish, see `_DETECTION_SHARE`) and at least 5% without the stopwords that are also programming keywords
    (if, in, is, for, and, ... : code can reach 20% English stopwords with those alone). Code, numbers,
    identifiers and text mixing many languages fail that and keep the neutral analysis (no stopwords, no
    stemming), as do fewer than 20 words and a tie for best. Close languages part on the words only one list
    has: Danish "af", "nogle" vs Norwegian "av", "noen"; Spanish "el", "los" vs Portuguese "ao", "uma". A mix
    of two close languages goes to the list that covers more of it, which can be the minority: a Portuguese
    sample with a third of Spanish reads as Spanish (the larger list). The result depends only on the sample.

    >>> detect_language(["The cat sat on the mat. It was happy with the world and the sun in the sky, as the"
    ...                  " dog was for the birds that sang in the trees."])
    'en'
    >>> detect_language(["Der Hund schläft im Garten unter dem großen Baum, weil es heute sehr warm ist und"
    ...                  " die Sonne über dem Dorf scheint."])
    'de'
    >>> detect_language(["The cat sat on the mat."]) is None  # too few words to tell
    True
    """
    step = max(1, len(texts) // sample)
    words = Counter(word for text in list(texts)[::step][:sample] for word in WORD_PATTERN.findall(text.lower()))
    total = sum(words.values())
    if total < _DETECTION_MIN_WORDS:
        return None
    hits = {
        language: sum(count for word, count in words.items() if word in stopword_set(language))
        for language in LANGUAGES
    }
    (best, best_hits), (_, second_hits) = sorted(hits.items(), key=lambda item: item[1], reverse=True)[:2]
    if best_hits == second_hits or best_hits < _DETECTION_SHARE.get(best, _DEFAULT_DETECTION_SHARE) * total:
        return None
    prose_stopwords = stopword_set(best) - _CODE_KEYWORDS
    prose_hits = sum(count for word, count in words.items() if word in prose_stopwords)
    return best if prose_hits >= _MIN_PROSE_SHARE * total else None


def cjk_terms(text: str, lowercase: bool = True) -> list[str]:
    """Words of 2+ characters, with every run of CJK characters cut into overlapping bigrams (a lone one kept).

    Chinese and Japanese put no spaces between words, so splitting on spaces makes a whole sentence one
    "word" that no query matches. Bigrams need no dictionary and match any word of two or more characters,
    the approach of Lucene's CJK analyzer; mixed-script text keeps its other words as they are.

    >>> cjk_terms("维生素D可以降低癌症的风险")
    ['维生', '生素', '可以', '以降', '降低', '低癌', '癌症', '症的', '的风', '风险']
    >>> cjk_terms("用Python读取CSV文件"), cjk_terms("東京 is big")
    (['用', 'python', '读取', 'csv', '文件'], ['東京', 'is', 'big'])
    """
    terms: list[str] = []
    for token in _CJK_OR_WORD.findall(text.lower() if lowercase else text):
        if _CJK_RUN.fullmatch(token):
            terms.extend([token] if len(token) == 1 else [token[i:i + 2] for i in range(len(token) - 1)])
        else:
            terms.append(token)
    return terms


class Analyzer:
    """Text -> BM25 terms: lowercase, split into words (CJK runs into bigrams), drop stopwords, stem.

    The same for build and query. `config.cjk == "none"` keeps the analysis of folders built before bicross
    knew CJK scripts (a CJK run stays one word), so they search as they always did.
    """

    def __init__(self, config: Bm25Config) -> None:
        self._lowercase = config.lowercase
        self._stopwords: frozenset[str] = frozenset() if config.stopwords is None else stopword_set(config.stopwords)
        self._stemmer = None if config.stemmer is None else import_stemmer().Stemmer(config.stemmer)
        self._cjk_bigrams = config.cjk == "bigrams"

    def _split(self, text: str) -> list[str]:
        if self._cjk_bigrams:
            return cjk_terms(text, self._lowercase)
        return WORD_PATTERN.findall(text.lower() if self._lowercase else text)

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """Terms of each text, in text order, duplicates kept (term frequency matters)."""
        words = [[word for word in self._split(text) if word not in self._stopwords] for text in texts]
        if self._stemmer is None:
            return words
        # Stem each distinct word once: a corpus has far fewer distinct words than tokens.
        distinct = list({word: None for text_words in words for word in text_words})
        stem_of = dict(zip(distinct, self._stemmer.stemWords(distinct), strict=True))
        return [[stem_of[word] for word in text_words] for text_words in words]
