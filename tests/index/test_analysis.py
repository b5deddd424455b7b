"""BM25 language detection: the twelve languages with stopwords and a stemmer are told apart on real prose,
code and identifiers stay language-neutral, and an explicit language (Bm25Config, `bicross index --language`)
always wins."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from cli_runner import run

from bicross.index.analysis import LANGUAGES, detect_language
from bicross.index.bm25 import Bm25Config, Bm25Index

# $BICROSS_SHARED_DATA, else ../shared/data beside the checkout (as tests/index/test_bm25.py).
DATA = Path(os.environ.get("BICROSS_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")

# A paragraph of ordinary prose per language (a small town, a market, a library...), written for these tests.
PROSE = {
    "en": (
        "The library opened a new reading room last spring, and it has quickly become one of the busiest places "
        "in the town. Students come in the morning to work on their essays, while older residents prefer the "
        "quiet hours after lunch, when they can read the newspapers by the large windows. The staff have also "
        "started a small program for children, who are invited every Saturday to listen to stories and to "
        "borrow books of their own. Most visitors say that the room feels warm and welcoming, even on the "
        "coldest days of the year."
    ),
    "de": (
        "Die kleine Stadt am Rande des Gebirges ist im Sommer ein beliebtes Ziel für Wanderer und Familien. "
        "Viele Besucher kommen schon früh am Morgen, um die steilen Wege zu den Aussichtspunkten zu gehen, bevor "
        "es zu heiß wird. In den engen Gassen der Altstadt gibt es zahlreiche Cafés, in denen man nach einer "
        "langen Wanderung Kuchen essen und sich ausruhen kann. Die Bewohner sind stolz auf ihre Geschichte, denn "
        "die Kirche auf dem Marktplatz wurde bereits im zwölften Jahrhundert gebaut. Im Winter wird es dagegen "
        "sehr ruhig, weil die meisten Hotels geschlossen sind und nur wenige Gäste den Weg in das verschneite "
        "Tal finden."
    ),
    "fr": (
        "Le petit village se trouve au bord d'une rivière, entre deux collines couvertes de vignes. Chaque "
        "année, au début de l'automne, les habitants se réunissent pour les vendanges, et tout le monde "
        "participe, des enfants aux grands-parents. Le soir, on partage un grand repas sur la place principale, "
        "où les tables sont installées sous les arbres. Les visiteurs qui passent par là sont souvent surpris "
        "par l'accueil chaleureux qu'ils reçoivent. Pourtant, la vie n'y est pas toujours facile : les jeunes "
        "partent travailler en ville et les écoles ferment les unes après les autres, ce qui inquiète beaucoup "
        "les maires de la région."
    ),
    "es": (
        "El mercado central de la ciudad abre sus puertas todos los días a las seis de la mañana, cuando los "
        "primeros vendedores llegan con frutas, verduras y pescado fresco. Durante muchos años fue el lugar "
        "donde las familias hacían la compra de la semana, pero ahora también atrae a turistas que quieren "
        "probar la comida local. En los pequeños bares del interior se sirven desayunos sencillos y baratos, y "
        "es fácil empezar una conversación con los vecinos. Aunque el edificio necesita una reforma, el "
        "ayuntamiento todavía no ha decidido cómo pagarla, y muchos comerciantes temen que los precios suban "
        "después de las obras."
    ),
    "pt": (
        "A pequena cidade fica no alto de uma colina, de onde se pode ver o rio e os campos que se estendem até "
        "ao horizonte. Durante o verão, muitas pessoas vêm de longe para passar alguns dias nas casas antigas "
        "que foram transformadas em pousadas. Os moradores gostam de conversar com os visitantes e de contar "
        "histórias sobre a época em que a região era famosa pelo seu vinho. Hoje, a maior parte dos jovens "
        "trabalha na capital, mas voltam sempre nas férias para ajudar os pais nas vinhas. À noite, as ruas "
        "ficam silenciosas e só se ouve o som dos sinos da igreja."
    ),
    "it": (
        "La biblioteca comunale si trova in un vecchio palazzo nel centro storico, a pochi passi dalla piazza "
        "principale. Ogni giorno molti studenti vengono a studiare nelle sale al primo piano, dove le finestre "
        "danno sul giardino interno. Negli ultimi anni il personale ha organizzato incontri con gli autori e "
        "corsi di lettura per i bambini, che hanno avuto un grande successo. Secondo il direttore, il numero dei "
        "prestiti è aumentato quasi del doppio rispetto al passato, anche grazie al nuovo catalogo digitale. "
        "Tuttavia, l'edificio ha bisogno di lavori urgenti, e il comune non ha ancora trovato i fondi necessari "
        "per ristrutturarlo."
    ),
    "nl": (
        "Het kleine dorp ligt aan de rand van een groot bos, niet ver van de kust. In de zomer komen er veel "
        "fietsers die over de smalle wegen tussen de velden rijden en onderweg stoppen bij een van de cafés op "
        "het plein. De inwoners zijn trots op hun oude molen, die nog steeds werkt en waar elke zaterdag meel "
        "wordt verkocht. Vroeger woonden hier vooral boeren, maar tegenwoordig werken de meeste mensen in de "
        "stad en komen zij alleen 's avonds thuis. Toch blijft het dorp levendig, omdat er elk jaar een markt "
        "wordt gehouden waar iedereen aan meedoet."
    ),
    "sv": (
        "Den lilla staden ligger vid en sjö i mitten av landet och har länge varit känd för sina vackra trähus. "
        "På sommaren kommer många turister hit för att bada, fiska och vandra i skogarna runt omkring. De "
        "flesta som bor här arbetar inom skogsindustrin eller på det stora sjukhuset, som byggdes för snart "
        "femtio år sedan. På vintern blir det mörkt redan tidigt på eftermiddagen, men då samlas invånarna "
        "gärna i kyrkan eller på biblioteket, där det ofta ordnas konserter och föreläsningar. Många säger att "
        "de aldrig skulle vilja flytta härifrån, eftersom livet är lugnt och naturen finns alldeles utanför "
        "dörren."
    ),
    "da": (
        "Den lille by ligger ved kysten i det vestlige Jylland, og om sommeren er stranden fyldt med familier "
        "fra hele landet. Mange af de gamle fiskerhuse er blevet lavet om til sommerhuse, som lejes ud til "
        "turister i ferien. Om vinteren bliver der meget stille, og de fleste butikker holder lukket, indtil "
        "foråret kommer igen. Alligevel er der stadig nogle hundrede mennesker, der bor her hele året, og de "
        "mødes ofte i forsamlingshuset for at spise sammen eller høre foredrag. Børnene går i en lille skole, "
        "hvor der kun er omkring tyve elever i hver klasse, og lærerne kender alle familierne."
    ),
    "no": (
        "Den lille byen ligger innerst i en fjord på Vestlandet, omgitt av høye fjell på alle kanter. Om "
        "sommeren kommer det store cruiseskip hit hver uke, og da blir gatene fulle av turister som vil se "
        "fossene og ta bilder av utsikten. Mange av innbyggerne jobber i turismen, men noen driver fortsatt med "
        "fiske og jordbruk, slik familiene deres har gjort i flere hundre år. Om vinteren er det mørkt og "
        "kaldt, og veiene over fjellet blir ofte stengt på grunn av snø. Likevel sier de fleste at de ikke "
        "ønsker å bo noe annet sted, fordi naturen her er så vakker."
    ),
    "ru": (
        "Небольшой город расположен на берегу широкой реки, недалеко от границы с соседней областью. Летом "
        "сюда приезжает много туристов, которые хотят увидеть старинный монастырь и погулять по тихим улицам с "
        "деревянными домами. Местные жители гордятся своей историей и охотно рассказывают гостям о том, как "
        "когда-то здесь проходил важный торговый путь. Зимой жизнь в городе становится спокойнее: многие "
        "магазины закрываются рано, а по вечерам люди собираются дома или в библиотеке, где часто проходят "
        "встречи с писателями. Молодёжь всё чаще уезжает учиться в столицу, но летом почти все возвращаются к "
        "родителям."
    ),
    "tr": (
        "Küçük kasaba, denize bakan yüksek bir tepenin eteğinde kurulmuştur ve yaz aylarında pek çok "
        "ziyaretçiyi ağırlar. Sabahları balıkçılar limana döner, kadınlar ise pazarda sebze ve meyve satar. "
        "Kasabanın dar sokaklarında eski taş evler vardır ve bu evlerin çoğu yüz yıldan daha eskidir. Akşam "
        "olunca insanlar çay bahçelerinde toplanır, gün boyunca olanları konuşur ve güneşin batışını izler. "
        "Gençlerin büyük bir kısmı okumak ya da çalışmak için büyük şehirlere gitmiştir, ama bayramlarda hepsi "
        "ailelerini görmek için geri gelir. Kasaba halkı, misafirperverliği ile bütün bölgede tanınır."
    ),
}

NOT_PROSE = {
    "python": (
        "def build(texts, config=None):\n    if config is None:\n        config = Config.for_language(detect(texts))\n"
        "    for position, text in enumerate(texts):\n        if not isinstance(text, str):\n"
        "            raise ValueError(f'texts[{position}] is not a str')\n"
        "    return [token.lower() for token in text.split() if token and len(token) > 1]\n"
        "class Index:\n    def search(self, query, top_k=10, allowed=None):\n"
        "        return self._retriever.get_scores(query)[:top_k] if allowed is None else []\n"
    ),
    "javascript": (
        "export default function App({ items, onSelect }) { const [query, setQuery] = useState(''); "
        "useEffect(() => { if (!items) return; console.log(items.length); }, [items]); "
        "return items.filter(item => item.name.includes(query)).map(item => <li key={item.id}>{item.name}</li>); } "
        "for (let i = 0; i < n; i++) { if (a[i] === null) continue; total += a[i] * 2; }"
    ),
    "sql": (
        "SELECT id, name, created_at FROM users WHERE status = 'active' AND age > 30 ORDER BY created_at DESC "
        "LIMIT 10; INSERT INTO logs (id, message) VALUES (1, 'started'); UPDATE users SET name = 'x' WHERE id IN (1, 2);"
    ),
    "identifiers": (
        "doc-000123 SKU-AB12-77 5f3c9a2e-8b1d-4c6e-9f0a-1b2c3d4e5f60 ORD_2023_11_0042 user_8841 item:7731 0x1f3a "
        "0xdeadbeef a1b2c3 ZX-99 PN-44-001 ISBN978-3-16-148410-0 ref#A-17 batch_2024_03 de-DE fr_FR es-ES it_IT"
    ),
    "numbers": "3.14159 2.71828 1000 42 -17 0.001 1e-9 2024-01-15 12:30:45 +49 30 1234567 99.5% 1,234,567.89 7/8 100 200",
    "log lines": (
        "2024-03-01 12:00:01 INFO server started on port 8080\n2024-03-01 12:00:02 WARN cache miss for key user:42\n"
        "2024-03-01 12:00:05 ERROR connection refused host=db-1 retry=3\n"
        "2024-03-01 12:00:09 DEBUG GET /api/v1/items?id=7&limit=50 200 12ms"
    ),
    "json": (
        '{"id": 17, "name": "widget", "tags": ["red", "small"], "price": 9.99, "stock": {"de": 4, "fr": 0, "it": 12}, '
        '"active": true, "dims": {"w": 10, "h": 4}, "owner": null, "updated": "2024-03-01T12:00:00Z", "version": 3}'
    ),
    "keywords": (
        "python numpy pandas pytorch scikit-learn matplotlib jupyter docker kubernetes nginx postgres redis kafka "
        "spark hadoop airflow terraform ansible grafana prometheus elasticsearch"
    ),
    "lorem ipsum": (
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
        "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex "
        "ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
        "fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia."
    ),
    # One sentence each of five languages plus identifiers: no language has enough of the words.
    "mixed languages": " ".join(PROSE[language].split(". ")[0] + "." for language in ("en", "de", "fr", "it", "ru"))
    + " doc-17 SKU_44 v1.2.3 0x1f",
}


def sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.!?])\s+", text)


def test_every_language_with_stopwords_and_a_stemmer_has_a_paragraph_of_80_words() -> None:
    assert set(PROSE) == set(LANGUAGES)
    word_counts = {language: len(re.findall(r"\w+", text)) for language, text in PROSE.items()}
    assert min(word_counts.values()) >= 80, word_counts


@pytest.mark.parametrize("language", sorted(PROSE))
def test_each_language_is_detected_from_a_paragraph(language: str) -> None:
    assert detect_language([PROSE[language]]) == language
    # A corpus of short documents is pooled: the same paragraph as one text per sentence.
    assert detect_language(sentences(PROSE[language])) == language


@pytest.mark.parametrize("language", sorted(PROSE))
def test_each_language_is_detected_from_any_two_consecutive_sentences(language: str) -> None:
    """About 20 to 50 words suffice, even between Danish / Norwegian / Swedish and Spanish / Portuguese."""
    parts = sentences(PROSE[language])
    assert [detect_language(parts[start:start + 2]) for start in range(len(parts) - 1)] == [language] * (len(parts) - 1)


def test_english_is_still_detected_on_real_abstracts() -> None:
    for name in ("scifact", "cranfield"):
        corpus = DATA / name / "corpus.jsonl"
        if not corpus.is_file():
            pytest.fail(f"{corpus} not found: set BICROSS_SHARED_DATA to the folder holding {name}/")
        rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
        assert detect_language([row.get("title", "") + ". " + row["text"] for row in rows]) == "en", name


@pytest.mark.parametrize("kind", sorted(NOT_PROSE))
def test_code_numbers_identifiers_and_mixed_text_stay_neutral(kind: str) -> None:
    assert len(re.findall(r"\w\w+", NOT_PROSE[kind])) >= 20  # long enough that only the content decides
    assert detect_language([NOT_PROSE[kind]]) is None


@pytest.mark.parametrize("texts", [[], ["", "   "], ["The cat sat on the mat."], ["Der Hund schläft im Garten."],
                                   ["Le chat dort sur le canapé, et il rêve de la mer."], ["the and of", "el la de"]])
def test_too_few_words_stay_neutral(texts: list[str]) -> None:
    assert detect_language(texts) is None


def test_a_tie_between_languages_stays_neutral() -> None:
    # "og" and "det" are in both the Danish and the Norwegian list, and nothing tells the two apart.
    assert detect_language(["og det er " * 10]) is None
    assert detect_language(["og det er " * 10 + "af"]) == "da" and detect_language(["og det er " * 10 + "av"]) == "no"


def test_detection_depends_only_on_the_words_of_the_sample() -> None:
    texts = sentences(PROSE["pt"]) + sentences(PROSE["es"])[:1]  # a little Spanish in a Portuguese corpus
    assert detect_language(texts) == detect_language(texts[::-1]) == detect_language(list(texts)) == "pt"


def test_build_uses_the_detected_language_for_stopwords_and_stemming() -> None:
    german = Bm25Index.build(sentences(PROSE["de"]))
    assert german.config == Bm25Config.for_language("de") == Bm25Config(stopwords="de", stemmer="german")
    assert german.search("wanderungen", top_k=5)[0].tolist() == [2]  # stemmed: Wanderungen -> wander <- Wanderung
    assert german.search("die und", top_k=5)[0].size == 0  # stopwords only
    russian = Bm25Index.build(sentences(PROSE["ru"]))
    assert russian.config == Bm25Config(stopwords="ru", stemmer="russian")
    assert russian.search("турист", top_k=5)[0].tolist() == [1]  # туристов -> турист
    english = Bm25Index.build(sentences(PROSE["en"]))
    assert english.config == Bm25Config.for_language("en")
    assert english.search("visitor", top_k=5)[0].tolist() == [3]  # visitors -> visitor


def test_an_explicit_config_overrides_detection() -> None:
    german = sentences(PROSE["de"])
    assert Bm25Index.build(german, Bm25Config()).config == Bm25Config()
    neutral = Bm25Index.build(german, Bm25Config())
    assert neutral.search("wanderungen", top_k=5)[0].size == 0  # no stemming when told none
    assert Bm25Index.build(german, Bm25Config.for_language("en")).config.stemmer == "english"
    assert Bm25Index.build(sentences(PROSE["da"]), Bm25Config.for_language("no")).config.stopwords == "no"


@pytest.mark.parametrize(("language", "option", "printed"), [
    ("de", "auto", "BM25: stopwords de, stemmer german"),
    ("ru", "auto", "BM25: stopwords ru, stemmer russian"),
    ("no", "auto", "BM25: stopwords no, stemmer norwegian"),
    ("de", "none", "BM25: stopwords none, stemmer none"),
    ("de", "en", "BM25: stopwords en, stemmer english"),
])
def test_index_command_records_and_prints_the_language(language: str, option: str, printed: str, tmp_path: Path,
                                                       tiny_encoder_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"s{i}", "text": text}, ensure_ascii=False) + "\n"
                              for i, text in enumerate(sentences(PROSE[language]))), encoding="utf-8")
    status, out, err = run(monkeypatch, capsys, "index", corpus, "--index", tmp_path / "index", "--model",
                           tiny_encoder_path, "--dtype", "float32", "--language", option)
    assert status == 0, err
    assert printed in out
    expected = Bm25Config.for_language(None if option == "none" else language if option == "auto" else option)
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["bm25"] == expected.to_dict()
