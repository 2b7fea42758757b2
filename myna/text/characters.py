"""Character vocabularies as Hugging Face's wav2vec 2.0 CTC models use them (``vocab.json``).

A vocabulary maps each character to an id; ``<pad>`` doubles as the CTC blank, ``|`` stands for
the space between words, and ``<s>``, ``</s>``, ``<unk>`` are the usual specials. A folder with
``vocab.json`` (and optionally ``tokenizer_config.json`` naming the special tokens and
``do_lower_case``) is what ``Wav2Vec2CTCTokenizer.save_pretrained`` writes, and what
:meth:`CharacterTokenizer.save` writes.

Decoding follows ``Wav2Vec2CTCTokenizer`` for ids that CTC decoding already collapsed: drop the
pad token, turn ``|`` into a space, join, strip the ends (lower-case when ``do_lower_case``).

>>> tok = CharacterTokenizer.from_texts(["hello world", "the quick fox"])
>>> tok.decode(tok.encode("hello fox"))
'hello fox'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

__all__ = ["CharacterTokenizer", "VOCAB_FILE", "TOKENIZER_CONFIG_FILE"]

VOCAB_FILE = "vocab.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
_SPECIAL_KEYS = ("pad_token", "unk_token", "bos_token", "eos_token", "word_delimiter_token")


class CharacterTokenizer:
    """Text <-> character ids with a Hugging Face ``vocab.json``.

    :param vocab: character -> id (ids 0 .. V-1, no gaps).
    :param pad_token: the padding / CTC blank token (``<pad>``).
    :param unk_token: replaces characters outside the vocabulary (``<unk>``).
    :param bos_token, eos_token: kept for round trips; never produced by ``encode``.
    :param word_delimiter_token: stands for a space (``|``).
    :param do_lower_case: HF's flag: input text is upper-cased before lookup (the vocabulary is
        upper case) and decoded text is lower-cased.
    """

    def __init__(self, vocab: Mapping[str, int], pad_token: str = "<pad>", unk_token: str = "<unk>",
                 bos_token: str = "<s>", eos_token: str = "</s>", word_delimiter_token: str = "|",
                 do_lower_case: bool = False) -> None:
        self.vocab = {str(k): int(v) for k, v in vocab.items()}
        ids = sorted(self.vocab.values())
        if ids != list(range(len(ids))):
            raise ValueError(f"vocabulary ids must run 0..{len(ids) - 1} without gaps or repeats")
        for name, token in (("pad_token", pad_token), ("word_delimiter_token", word_delimiter_token)):
            if token not in self.vocab:
                raise ValueError(f"{name} {token!r} is not in the vocabulary")
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.pad_token, self.unk_token = pad_token, unk_token
        self.bos_token, self.eos_token = bos_token, eos_token
        self.word_delimiter_token = word_delimiter_token
        self.do_lower_case = bool(do_lower_case)

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_folder(cls, path: str | os.PathLike) -> "CharacterTokenizer":
        """Read ``vocab.json`` (+ ``tokenizer_config.json`` when present) from a folder."""
        path = Path(path)
        vocab_path = path / VOCAB_FILE
        if not vocab_path.is_file():
            raise ValueError(f"{path}: no {VOCAB_FILE}")
        try:
            vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{vocab_path}: not valid JSON ({err})") from err
        if vocab and all(isinstance(v, dict) for v in vocab.values()):
            raise ValueError(f"{vocab_path}: multi-language vocabularies (one per target_lang) are not supported")
        options = {}
        config_path = path / TOKENIZER_CONFIG_FILE
        if config_path.is_file():
            config = json.loads(config_path.read_text(encoding="utf-8"))
            options = {k: config[k] for k in _SPECIAL_KEYS if isinstance(config.get(k), str)}
            options["do_lower_case"] = bool(config.get("do_lower_case", False))
        return cls(vocab, **options)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharacterTokenizer":
        """A vocabulary of ``<pad> <s> </s> <unk> |`` followed by the sorted characters of ``texts``
        (spaces become ``|``), the layout of HF's CTC fine-tuning examples."""
        chars = sorted({c for text in texts for c in text if c != " "})
        vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|"] + chars)}
        return cls(vocab)

    def save(self, path: str | os.PathLike) -> list[Path]:
        """Write ``vocab.json`` and ``tokenizer_config.json`` (HF's names) into a folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        vocab_path = path / VOCAB_FILE
        vocab_path.write_text(json.dumps(dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
                                         ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        config = {"tokenizer_class": "Wav2Vec2CTCTokenizer", "do_lower_case": self.do_lower_case,
                  "pad_token": self.pad_token, "unk_token": self.unk_token, "bos_token": self.bos_token,
                  "eos_token": self.eos_token, "word_delimiter_token": self.word_delimiter_token,
                  "replace_word_delimiter_char": " "}
        config_path = path / TOKENIZER_CONFIG_FILE
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return [vocab_path, config_path]

    # ---- use --------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included (the blank is one of them: ``pad_id``)."""
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        """Id of the pad token, the CTC blank."""
        return self.vocab[self.pad_token]

    @property
    def blank_id(self) -> int:
        """The CTC blank inside the vocabulary (the pad token), unlike SentencePiece vocabularies
        whose blank is added after the last piece."""
        return self.pad_id

    @property
    def pieces(self) -> list[str]:
        """Tokens in id order."""
        return [self.id_to_token[i] for i in range(self.vocab_size)]

    def encode(self, text: str) -> list[int]:
        """Character ids of ``text`` (spaces -> the word delimiter; unknown characters -> unk)."""
        if self.do_lower_case:
            text = text.upper()
        unk = self.vocab.get(self.unk_token)
        ids = []
        for char in text.replace(" ", self.word_delimiter_token):
            token_id = self.vocab.get(char, unk)
            if token_id is None:
                raise ValueError(f"character {char!r} of {text!r} is not in the vocabulary and there is no unk token")
            ids.append(token_id)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of already CTC-collapsed ids: pad tokens dropped, ``|`` -> space, ends stripped."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        tokens = [self.id_to_token.get(int(i), self.unk_token) for i in ids]
        text = "".join(" " if t == self.word_delimiter_token else t for t in tokens if t != self.pad_token).strip()
        return text.lower() if self.do_lower_case else text

    def __repr__(self) -> str:
        return f"CharacterTokenizer(vocab_size={self.vocab_size}, blank={self.pad_token!r})"
