"""Duplicate mining (`bicross pairs`) against known near-duplicates: precision, recall, F1, seconds per 10k docs.

    python bench/pairs_eval.py                         # 1,500 SciFact abstracts + 300 edited copies (7 min, 2 shared cores)
    python bench/pairs_eval.py --real 500 --copies 60  # a smoke run

Labels: no paraphrase/duplicate data set installs from a registry here, so the duplicates are made at run
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--real", type=int, default=1500, help="real abstracts (default %(default)s)")
    parser.add_argument("--copies", type=int, default=300, help="edited copies mixed in (default %(default)s)")
    parser.add_argument("--top-k", type=int, default=10, help="neighbours per document (default %(default)s)")
    parser.add_argument("--verify-from", type=float, default=0.75, help="the cross-encoder reads the bi-encoder's "
                        "pairs at or above this cosine (default %(default)s)")
    parser.add_argument("--verify-limit", type=int, default=500, help="at most this many pairs (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="corpus sample and edits (default %(default)s; the "
                        "cross-encoder's query length was chosen on a smoke run with seed 13)")
    args = parser.parse_args()
    if args.quick:
        args.real, args.copies, args.verify_limit = 300, 40, 120
    common.set_torch_threads(args.threads)
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
