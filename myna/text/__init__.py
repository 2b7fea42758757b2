"""myna.text: tokenizers (SentencePiece, NeMo-compatible files)."""

from myna.text.tokenizer import (
    SentencePieceTokenizer,
    load_tokenizer,
    train_sentencepiece,
    write_vocab_txt,
)

__all__ = ["SentencePieceTokenizer", "load_tokenizer", "train_sentencepiece", "write_vocab_txt"]
