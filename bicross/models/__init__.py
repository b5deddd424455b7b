"""Load weights and tokenizers; know nothing about retrieval."""
