"""SentencePiece tokenizers, trained and stored the way NeMo does.

A tokenizer folder holds three files, exactly those NeMo's ``create_spt_model`` writes:

- ``tokenizer.model``: the serialized SentencePiece model (what encodes and decodes);
- ``tokenizer.vocab``: SentencePiece's own listing, one ``piece<TAB>score`` line per id;
- ``vocab.txt``: NeMo's WordPiece-style view of the same pieces, one per line, in id order,
  without the special pieces (``<unk>``, ``<s>``, ``</s>``, ``<pad>``): a piece starting with
  the word-boundary mark "▁" loses it (``▁the`` -> ``the``), the bare mark stays "▁", any other
  piece gets a ``##`` prefix (``er`` -> ``##er``).

Training uses NeMo's trainer options: ``<unk>`` is id 0, no ``<s>``/``</s>``/``<pad>``
(``bos_id=eos_id=-1``), ``shuffle_input_sentence=true``, ``hard_vocab_limit=false``, and with
``lowercase`` the ``nmt_nfkc_cf`` normalisation rule (NFKC + case folding). A NeMo tokenizer
folder therefore loads as it is, and a folder written here loads in NeMo.

>>> tok = train_sentencepiece(["one two", "three four"] * 50, "tok", vocab_size=30)
>>> tok.decode(tok.encode("One two"))
'one two'
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm

__all__ = ["SentencePieceTokenizer", "train_sentencepiece", "load_tokenizer", "TOKENIZER_FILES"]

logger = logging.getLogger("myna.text")

WORD_BOUNDARY = "\u2581"  # "▁", SentencePiece's word-start mark
SPECIAL_PIECES = ("<s>", "</s>", "<pad>", "<unk>")
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.vocab", "vocab.txt")


class SentencePieceTokenizer:
    """Text <-> token ids with a SentencePiece model file (BPE or unigram).

    Ids run from 0 to ``vocab_size - 1``; a Transducer or CTC model puts its blank at
    ``vocab_size`` (after the pieces), as NeMo does.

    Args:
        model_path: a ``tokenizer.model`` file.
    """

    def __init__(self, model_path: str | os.PathLike):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ValueError(f"sentencepiece model file not found: {model_path}")
        self.model_path = model_path
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(model_path))
        except (OSError, RuntimeError) as err:
            raise ValueError(f"cannot load sentencepiece model {model_path}: {err}") from err

    @property
    def vocab_size(self) -> int:
        """Number of pieces (ids 0 .. vocab_size-1), blank not included."""
        return self._sp.get_piece_size()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (normalised by the model's rule, e.g. lower-cased)."""
        return self._sp.encode_as_ids(text)

    def encode_as_pieces(self, text: str) -> list[str]:
        """The pieces ``encode`` would give, as strings (for inspection)."""
        return self._sp.encode_as_pieces(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a sequence of ids (a list, or anything with ``tolist()``, e.g. a 1-D tensor)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids {bad[:5]} out of range [0, {self.vocab_size}) "
                             f"for tokenizer {self.model_path}")
        return self._sp.decode_ids(ids)

    def id_to_piece(self, i: int) -> str:
        """The piece string of id ``i`` (e.g. "▁the")."""
        if not 0 <= int(i) < self.vocab_size:
            raise ValueError(f"token id {i} out of range [0, {self.vocab_size})")
        return self._sp.id_to_piece(int(i))

    def piece_to_id(self, piece: str) -> int:
        """Id of a piece string (the unk id for an unknown piece)."""
        return self._sp.piece_to_id(piece)

    @property
    def pieces(self) -> list[str]:
        """All pieces in id order."""
        return [self._sp.id_to_piece(i) for i in range(self.vocab_size)]

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({str(self.model_path)!r}, vocab_size={self.vocab_size})"


def load_tokenizer(path: str | os.PathLike):
    """Load a tokenizer from a folder holding ``tokenizer.model`` (a NeMo tokenizer folder as it
    is), from a ``.model`` file, or from a folder holding a Hugging Face character ``vocab.json``
    (a :class:`~myna.text.characters.CharacterTokenizer`)."""
    path = Path(path)
    if path.is_dir():
        model = path / "tokenizer.model"
        if not model.is_file():
            if (path / "vocab.json").is_file():
                from myna.text.characters import CharacterTokenizer

                return CharacterTokenizer.from_folder(path)
            raise ValueError(f"tokenizer folder {path} has no tokenizer.model (nor a character vocab.json)")
        return SentencePieceTokenizer(model)
    if path.is_file():
        return SentencePieceTokenizer(path)
    raise ValueError(f"tokenizer not found: {path} (expected a folder with tokenizer.model "
                     f"or a .model file)")


def train_sentencepiece(
    texts: Iterable[str],
    out_dir: str | os.PathLike,
    vocab_size: int,
    model_type: str = "bpe",
    lowercase: bool = True,
    character_coverage: float = 1.0,
    hard_vocab_limit: bool = False,
    split_by_whitespace: bool = True,
    split_digits: bool = False,
    byte_fallback: bool = False,
    max_sentencepiece_length: int | None = None,
    user_defined_symbols: Sequence[str] = (),
    seed_sentencepiece_size: int | None = None,
) -> SentencePieceTokenizer:
    """Train a SentencePiece model on ``texts`` and write NeMo's tokenizer folder.

    Writes ``out_dir/tokenizer.model``, ``out_dir/tokenizer.vocab`` and ``out_dir/vocab.txt``
    (formats in the module docstring), replacing any that exist. Trained on the same text with
    the default arguments, the files equal those of NeMo's
    ``scripts/tokenizers/process_asr_text_tokenizer.py --tokenizer=spe --spe_type=bpe``.

    Args:
        texts: one transcript per item (e.g. the ``text`` of every training manifest entry).
            Empty lines are skipped.
        out_dir: folder for the three files (created).
        vocab_size: number of pieces wanted, ``<unk>`` included. A small corpus may not allow
            that many: with ``hard_vocab_limit=False`` (NeMo's setting) sentencepiece then
            returns fewer pieces and a warning is logged; with True it is a ValueError that
            says the largest size the corpus allows. Too small a size (fewer than the
            corpus' characters + 1) is always a ValueError.
        model_type: "bpe" (NeMo's ASR default), "unigram", "char" or "word".
        lowercase: normalise with ``nmt_nfkc_cf`` (NFKC + case folding) as NeMo's default;
            the model then lower-cases at encode time as well. False: plain ``nmt_nfkc``.
        character_coverage: fraction of characters covered by the base pieces; 1.0 for small
            alphabets, ~0.9995 for CJK (rare characters map to ``<unk>``).
        hard_vocab_limit: see ``vocab_size``.
        split_by_whitespace: pieces never cross spaces (sentencepiece's default).
        split_digits: split every digit into its own piece.
        byte_fallback: unknown characters become ``<0xNN>`` byte pieces instead of ``<unk>``
            (adds 256 pieces).
        max_sentencepiece_length: longest piece in characters (None: sentencepiece's default).
        user_defined_symbols: pieces always kept whole (e.g. tags like "<noise>").
        seed_sentencepiece_size: unigram seed vocabulary size (None: default).

    Returns:
        the trained tokenizer, loaded from ``out_dir/tokenizer.model``.
    """
    if model_type not in ("bpe", "unigram", "char", "word"):
        raise ValueError(f"model_type must be bpe, unigram, char or word, got {model_type!r}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        (out_dir / name).unlink(missing_ok=True)

    options = dict(
        model_prefix=str(out_dir / "tokenizer"),
        vocab_size=vocab_size,
        shuffle_input_sentence=True,
        hard_vocab_limit=hard_vocab_limit,
        model_type=model_type,
        character_coverage=character_coverage,
        bos_id=-1,
        eos_id=-1,
        minloglevel=2,  # sentencepiece's INFO/WARNING chatter off; errors still raise
    )
    if lowercase:
        options["normalization_rule_name"] = "nmt_nfkc_cf"
    if not split_by_whitespace:
        options["split_by_whitespace"] = False
    if split_digits:
        options["split_digits"] = True
    if byte_fallback:
        options["byte_fallback"] = True
    if max_sentencepiece_length is not None:
        options["max_sentencepiece_length"] = max_sentencepiece_length
    if user_defined_symbols:
        options["user_defined_symbols"] = ",".join(user_defined_symbols)
    if seed_sentencepiece_size is not None:
        options["seed_sentencepiece_size"] = seed_sentencepiece_size

    with tempfile.TemporaryDirectory(prefix="myna_spm_") as tmp:
        corpus = Path(tmp) / "document.txt"
        n_lines = _write_corpus(texts, corpus)
        if n_lines == 0:
            raise ValueError("cannot train a tokenizer: no non-empty text")
        try:
            spm.SentencePieceTrainer.train(input=str(corpus), **options)
        except RuntimeError as err:
            raise ValueError(f"sentencepiece training failed (vocab_size={vocab_size}, "
                             f"{n_lines} lines): {err}") from err

    write_vocab_txt(out_dir / "tokenizer.vocab", out_dir / "vocab.txt",
                    extra_special=tuple(user_defined_symbols))
    tokenizer = SentencePieceTokenizer(out_dir / "tokenizer.model")
    if tokenizer.vocab_size < vocab_size:
        logger.warning(
            "tokenizer in %s has %d pieces, fewer than the %d asked for: the text (%d lines) "
            "allows no more (hard_vocab_limit=False)", out_dir, tokenizer.vocab_size,
            vocab_size, n_lines,
        )
    logger.info("trained %s tokenizer with %d pieces on %d lines -> %s", model_type,
                tokenizer.vocab_size, n_lines, out_dir)
    return tokenizer


def write_vocab_txt(spm_vocab: str | os.PathLike, out_path: str | os.PathLike,
                    extra_special: Sequence[str] = ()) -> list[str]:
    """Write NeMo's ``vocab.txt`` from SentencePiece's ``tokenizer.vocab``.

    Special pieces (``<s>``, ``</s>``, ``<pad>``, ``<unk>`` and ``extra_special``) are left
    out; "▁x" becomes "x", a bare "▁" stays, any other piece "y" becomes "##y".

    Returns:
        the written tokens, in order.
    """
    special = set(SPECIAL_PIECES) | set(extra_special)
    tokens = []
    with open(spm_vocab, encoding="utf-8") as f:
        for line in f:
            piece = line.rstrip("\n").split("\t")[0]
            if not piece or piece in special:
                continue
            if piece.startswith(WORD_BOUNDARY):
                tokens.append(piece[1:] or piece)
            else:
                tokens.append("##" + piece)
    with open(out_path, "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in tokens)
    return tokens


def _write_corpus(texts: Iterable[str], path: Path) -> int:
    """One text per line (newlines inside a text become spaces); returns the line count."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            if not isinstance(text, str):
                raise ValueError(f"tokenizer training text must be str, got {type(text).__name__}: "
                                 f"{text!r}")
            text = " ".join(text.split("\n")).strip()
            if text:
                f.write(text + "\n")
                n += 1
    return n
