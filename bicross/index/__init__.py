"""Store ids, vectors and BM25 statistics; search top-k. Never loads a model."""
