"""`bicross pairs CORPUS`: duplicate and paraphrase pairs as a ranked JSONL/CSV list (or a table on screen).

Only typer and rich are imported here (the app imports this module at start-up); the library is loaded
when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["pairs_command"]

console = Console()


def pairs_command(
    corpus: Annotated[Path, typer.Argument(help="BEIR folder or corpus.jsonl, JSONL/CSV/TSV, a folder of .txt/.md, "
                                           "or a collection folder from `bicross index` (its stored embeddings are "
                                           "reused, nothing is re-encoded).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write every pair here, ranked (.jsonl or .csv); "
                                             "without it the best --show pairs are printed.")] = None,
    output_format: Annotated[str | None, typer.Option("--format", help="jsonl | csv (default: from --out's "
                                                      "suffix).")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", "-t", help="Minimum bi-encoder cosine of a pair (default 0.9, measured in the README); "
        "-1 keeps every --top-k neighbour.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Neighbours looked at per document.")] = 10,
    block_size: Annotated[int, typer.Option("--block-size", min=1, help="Documents searched at once (memory: "
                                            "block size x (top-k + 1) results, never documents x documents).")] = 4096,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Bi-encoder (default: a collection's stored "
                                              "embeddings, else all-MiniLM-L6-v2); given with a collection, its "
                                              "documents are re-encoded with it.")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Also score each pair with a cross-encoder (slow: about "
                                         "0.3 s a pair on 2 CPU cores) and show its logit.")] = False,
    verify_threshold: Annotated[float | None, typer.Option(
        "--verify-threshold", help="Keep only pairs whose cross-encoder logit is at least this (implies --verify).")] = None,
    cross_encoder: Annotated[str | None, typer.Option(
        "--cross-encoder", help="Verifier: hub id or folder (default: cross-encoder/ms-marco-MiniLM-L-12-v2, a "
        "relevance model: its logit says how well one text answers the other's opening as a query).")] = None,
    verify_query_words: Annotated[int, typer.Option("--verify-query-words", min=1, help="Words of the first text "
                                                    "the cross-encoder reads as the query.")] = 48,
    verify_max_length: Annotated[int, typer.Option("--verify-max-length", min=4, help="Cross-encoder tokens per "
                                                   "pair.")] = 512,
    batch_size: Annotated[int | None, typer.Option(help="Texts per forward pass (default 32; 1 for int8 ONNX).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 (PyTorch backend).")] = "auto",
    skip_empty: Annotated[bool, typer.Option("--skip-empty", help="Skip documents with no text (named on stderr).")] = False,
    show: Annotated[int, typer.Option("--show", min=0, help="Pairs printed when there is no --out.")] = 20,
) -> None:
    """Find near-duplicate and paraphrase pairs: every document's bi-encoder neighbours, pairs above a cosine
    threshold (each once), optionally checked by a cross-encoder."""
    from bicross.errors import InvalidInput
    from bicross.pairs import DEFAULT_THRESHOLD, PairsConfig, find_pairs, output_format_for, read_pair_corpus, write_pairs
    from bicross.progress import stderr_console

    # options are checked before the slow part
    if output_format not in (None, "jsonl", "csv"):
        raise InvalidInput(f"--format must be jsonl or csv, got {output_format!r}")
    if output_format is not None and out is None:
        raise InvalidInput("--format needs --out FILE")
    if out is not None:
        output_format = output_format_for(out, output_format)
        if not out.parent.is_dir():
            raise InvalidInput(f"cannot write {out}: folder {out.parent} does not exist; create it first")
    if cross_encoder is not None and not (verify or verify_threshold is not None):
        raise InvalidInput("--cross-encoder names the verifier: add --verify (or --verify-threshold)")
    errors = stderr_console()
    loaded = read_pair_corpus(corpus, skip_empty)
    if loaded.skipped:
        shown = ", ".join(loaded.skipped[:10]) + (" ..." if len(loaded.skipped) > 10 else "")
        errors.print(f"[yellow]skipped {len(loaded.skipped)} document(s) with no text:[/] {shown}", highlight=False)
    encoder = None
    if model is not None or loaded.embeddings is None:
        from bicross.encoders import BiEncoder
        from bicross.encoders.bi_encoder import DEFAULT_BI_ENCODER

        encoder = BiEncoder.load(model or DEFAULT_BI_ENCODER, dtype=dtype, batch_size=batch_size)  # type: ignore[arg-type]
    verifier = None
    if verify or verify_threshold is not None:
        from bicross.rerankers import CrossEncoder
        from bicross.rerankers.cross_encoder import DEFAULT_CROSS_ENCODER

        verifier = CrossEncoder.load(cross_encoder or DEFAULT_CROSS_ENCODER, max_length=verify_max_length,
                                     dtype=dtype, batch_size=batch_size)  # type: ignore[arg-type]
    config = PairsConfig(top_k=top_k, threshold=DEFAULT_THRESHOLD if threshold is None else threshold,
                         block_size=block_size, verify_threshold=verify_threshold,
                         verify_query_words=verify_query_words)
    embedded = f"encoding with {encoder.name}" if encoder else f"stored embeddings of {loaded.model}"
    errors.print(f"{len(loaded.documents):,} documents from {loaded.source} ({embedded})", highlight=False)
    result = find_pairs(loaded, encoder, config, verifier, show_progress=True)
    steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result.seconds.items())
    verified = f" ({result.candidates:,} candidates before verification)" if verifier is not None else ""
    summary = f"{len(result.pairs):,} pairs{verified} at cosine >= {config.threshold:g}; {steps}"
    if out is not None:
        written = write_pairs(result.pairs, out, output_format)  # type: ignore[arg-type]
        console.print(f"{summary}; wrote {out} ({written})", highlight=False)
        return
    _print_table(result.pairs[:show], {d.id: d.full_text for d in loaded.documents})
    console.print(summary + (f"; showing the first {show} (write them all with --out)" if len(result.pairs) > show
                             else ""), highlight=False)


def _print_table(pairs: list, texts: dict[str, str]) -> None:
    from rich.table import Table

    from bicross.cli.output import snippet

    verified = any(p.cross_encoder_score is not None for p in pairs)
    table = Table(show_lines=False)
    for column in ("#", "cosine", *(["logit"] if verified else []), "id_a", "id_b", "text a / text b"):
        table.add_column(column)
    for rank, pair in enumerate(pairs, start=1):
        logit = [f"{pair.cross_encoder_score:.2f}"] if verified else []
        table.add_row(str(rank), f"{pair.bi_encoder_score:.3f}", *logit, pair.id_a, pair.id_b,
                      f"{snippet(texts[pair.id_a], 60)}\n{snippet(texts[pair.id_b], 60)}")
    console.print(table)
