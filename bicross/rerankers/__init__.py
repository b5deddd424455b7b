"""(query, candidates) -> scores."""

from bicross.rerankers.cross_encoder import CrossEncoder, RankedDocument

__all__ = ["CrossEncoder", "RankedDocument"]
