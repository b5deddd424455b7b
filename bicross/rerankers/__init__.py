"""(query, candidates) -> scores."""

from bicross.rerankers.cross_encoder import CrossEncoder, RankedDocument
from bicross.rerankers.protocol import Reranker, open_reranker

__all__ = ["CrossEncoder", "RankedDocument", "Reranker", "open_reranker"]
