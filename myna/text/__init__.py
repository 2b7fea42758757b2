"""myna.text: tokenizers (SentencePiece, NeMo-compatible files; HF character vocabularies)."""

from myna.text.characters import CharacterTokenizer
from myna.text.tokenizer import (
    SentencePieceTokenizer,
    load_tokenizer,
    train_sentencepiece,
    write_vocab_txt,
)

__all__ = ["CharacterTokenizer", "SentencePieceTokenizer", "load_tokenizer", "train_sentencepiece", "write_vocab_txt"]
