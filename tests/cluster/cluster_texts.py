"""The short texts the cluster tests embed, mine and label (one list, so each test reads the same corpus)."""

TEXTS = [
    "berlin is a city in germany", "paris is the capital of france", "how many people live in berlin",
    "the population of paris is two million", "vitamin d and cancer risk", "gene and protein study",
    "patients with heart and blood", "the weather is nice today", "the museum of art in paris",
    "the quick brown fox jumps", "a dog runs by the river", "who ran the study of the cell",
]
