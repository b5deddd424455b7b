"""Text -> vectors."""

from bicross.encoders.bi_encoder import BiEncoder, EncodedTexts, Tower

__all__ = ["BiEncoder", "EncodedTexts", "Tower"]
