"""What every myna speech model shares: featurizer and encoder stages, and transcription.

``transcribe`` is NeMo's Python call: audio files, numpy arrays or tensors in, texts (or
hypotheses) out. ``transcribe_batch`` is the tensor entry point for a padded batch.

>>> model = myna.load("model.nemo")
>>> model.transcribe(["a.wav", "b.flac"], batch_size=8)
['one two three', 'four']
>>> hyps = model.transcribe(["a.wav"], timestamps=True)
>>> hyps[0].timestamp["word"][0]["start"]
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from myna.audio import AudioError, audio_info, load_audio
from myna.decoding.greedy import Hypothesis
from myna.decoding.timestamps import timestamps as word_timestamps

__all__ = ["SpeechModel", "Transcript", "AudioInput", "pad_batch"]

AudioInput = Union[str, os.PathLike, np.ndarray, torch.Tensor]


class Transcript(str):
    """A transcript: a ``str``, that also answers ``.text`` as NeMo 2.x/3.x's ``Hypothesis`` does,
    so both ``texts[0]`` and ``texts[0].text`` work where NeMo code expects either."""

    __slots__ = ()

    @property
    def text(self) -> str:
        return str(self)


def pad_batch(waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (L_i,) float32 -> zero-padded (B, max L) and lengths (B,) int64."""
    lengths = torch.tensor([w.shape[0] for w in waveforms], dtype=torch.long)
    audio = torch.zeros(len(waveforms), int(lengths.max()) if len(waveforms) else 0, dtype=torch.float32)
    for i, w in enumerate(waveforms):
        audio[i, : w.shape[0]] = w
    return audio, lengths


def transcription_batches(items: Sequence["AudioInput"], batch_size: int, sort_by_length: bool = True) -> list[list[int]]:
    """Input indices per batch for ``transcribe``: longest first when ``sort_by_length``.

    Batching utterances of similar length wastes less work on padding (features, encoder and
    search all run over the padded width); every model here decodes an utterance the same way in
    any batch, so only the order of the work changes. File lengths come from the headers
    (``audio_info``); a file whose header cannot be read sorts as empty and fails, naming
    itself, when it is loaded.
    """
    order = list(range(len(items)))
    if sort_by_length:
        order.sort(key=lambda i: -_input_seconds(items[i]))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def transcribe_inputs(audio: "AudioInput | Sequence[AudioInput]", batch_size: int, sort_by_length: bool,
                      waveform: Callable[[Any, int], torch.Tensor],
                      transcribe_batch: Callable[[torch.Tensor, torch.Tensor], list[Hypothesis]],
                      verbose: bool = False) -> list[Hypothesis]:
    """The loop of every ``transcribe``: the inputs (one or a list) batched by
    :func:`transcription_batches`, each batch loaded with ``waveform(item, index)`` -> (L,),
    padded to (B, L) with lengths (B,) and given to ``transcribe_batch``; hypotheses in input order."""
    items = [audio] if isinstance(audio, (str, os.PathLike, np.ndarray, torch.Tensor)) else list(audio)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    hyps: list[Hypothesis | None] = [None] * len(items)
    batches = transcription_batches(items, batch_size, sort_by_length)
    for batch in tqdm(batches, desc="transcribe", disable=not verbose, unit="batch"):
        padded, lengths = pad_batch([waveform(items[i], i) for i in batch])
        for i, hyp in zip(batch, transcribe_batch(padded, lengths)):
            hyps[i] = hyp
    return hyps


def _input_seconds(item) -> float:
    """Length of one transcribe input: seconds for a file, samples for an array (ranked alike
    only within one kind, which is all sorting needs)."""
    if isinstance(item, (str, os.PathLike)):
        try:
            return audio_info(item).duration
        except AudioError:
            return 0.0
    return float(len(item)) if hasattr(item, "__len__") else 0.0


class SpeechModel(nn.Module):
    """Featurizer -> (SpecAugment in training) -> encoder, and transcription on top.

    Subclasses add their heads and implement ``forward`` (training losses), ``eval_loss``
    (the validation loss from encoder output), ``decode`` (greedy hypotheses from encoder
    output) and the decoding protocol of :class:`myna.decoding.DecodableModel`
    (``decoding_strategies``, ``transducer_parts`` and/or ``ctc_log_probs``).
    Attribute names follow NeMo's, so NeMo state dicts load by name.
    """

    def __init__(self, preprocessor: nn.Module, encoder: nn.Module, spec_augment: nn.Module | None = None,
                 tokenizer=None):
        super().__init__()
        self.preprocessor = preprocessor
        self.encoder = encoder
        self.spec_augmentation = spec_augment
        self.tokenizer = tokenizer

    def featurize(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) float32 waveform, (B,) int64 -> features (B, T, F), lengths (B,)."""
        return self.preprocessor(audio, audio_lengths)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B,) -> encoded (B, T', D), lengths (B,). SpecAugment applies in training."""
        if self.training and self.spec_augmentation is not None:
            features = self.spec_augmentation(features, lengths)
        return self.encoder(features, lengths)

    def eval_loss(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor, tokens: torch.Tensor,
                  token_lengths: torch.Tensor) -> torch.Tensor:
        """Scalar loss from encoder output (B, T', D) and targets (B, U), for validation."""
        raise NotImplementedError

    def decode(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> list[Hypothesis]:
        """Greedy hypotheses for encoder output (B, T', D)."""
        raise NotImplementedError

    @property
    def decoding_strategies(self) -> tuple[str, ...]:
        """The :func:`myna.decoding.decode` strategies this model can run."""
        raise NotImplementedError

    @property
    def sample_rate(self) -> int:
        """The audio sample rate the featurizer expects, in Hz."""
        return int(self.preprocessor.sample_rate)

    @property
    def frame_seconds(self) -> float:
        """Seconds per encoder output frame (feature hop x the encoder's subsampling)."""
        hop = self.preprocessor.hop_length / self.preprocessor.sample_rate
        return hop * int(getattr(self.encoder, "subsampling_factor", 1))

    @torch.inference_mode()
    def transcribe_batch(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> list[Hypothesis]:
        """Greedy hypotheses for a padded batch of waveforms.

        Args:
            audio: (B, L) float32 at :attr:`sample_rate`, zero-padded; audio_lengths: (B,) int64.

        Returns:
            B hypotheses (``text`` filled when the model has a tokenizer).
        """
        from myna.decoding.backends import inference_encoder

        features, lengths = self.featurize(audio, audio_lengths)
        encoded, encoded_lengths = inference_encoder(self.encoder)(features, lengths)
        return self.decode(encoded, encoded_lengths)

    def transcribe(self, audio: AudioInput | Sequence[AudioInput], batch_size: int = 4,
                   return_hypotheses: bool = False, timestamps: bool = False,
                   verbose: bool = False, sort_by_length: bool = True) -> list[str] | list[Hypothesis]:
        """Transcribe audio, as NeMo's ``model.transcribe`` does (greedy decoding).

        Args:
            audio: an audio file path, or a list of paths (any format libsndfile reads; resampled
                to :attr:`sample_rate`, channels averaged), 1-D numpy arrays or 1-D tensors
                (mono float waveforms at :attr:`sample_rate`), mixed freely.
            batch_size: utterances per forward pass.
            sort_by_length: batch the inputs longest first (less padding; results are returned
                in input order either way); False batches them in the order given.
            return_hypotheses: return :class:`~myna.decoding.greedy.Hypothesis` objects (tokens,
                token frames, confidences, ``text``) instead of texts.
            timestamps: also fill each hypothesis' ``timestamp`` with token, word and segment
                times (NeMo's layout, see :mod:`myna.decoding.timestamps`); implies hypotheses.
            verbose: show a progress bar.

        Returns:
            One entry per input, in order: texts (:class:`Transcript`, a ``str`` with ``.text``)
            or hypotheses.

        Raises:
            ValueError: an array or tensor that is not 1-D, or an audio file that cannot be read
                (the message names it).
        """
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            hyps = transcribe_inputs(audio, batch_size, sort_by_length, self._waveform,
                                     lambda padded, lengths: self.transcribe_batch(padded.to(device), lengths.to(device)),
                                     verbose)
        finally:
            self.train(was_training)
        if timestamps:
            if self.tokenizer is None:
                raise ValueError("timestamps need the model's tokenizer")
            for hyp in hyps:
                hyp.timestamp = word_timestamps(hyp, self.tokenizer, self.frame_seconds)
            return hyps
        if return_hypotheses:
            return hyps
        return [Transcript(hyp.text or "") for hyp in hyps]

    def _waveform(self, item: AudioInput, index: int) -> torch.Tensor:
        """One input of :meth:`transcribe` as a (L,) float32 tensor at the model's sample rate."""
        if isinstance(item, (str, os.PathLike)):
            return load_audio(item, self.sample_rate)
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(np.ascontiguousarray(item))
        if not isinstance(item, torch.Tensor):
            raise ValueError(f"audio[{index}]: expected a path, a numpy array or a tensor, got {type(item).__name__}")
        if item.dim() != 1:
            raise ValueError(f"audio[{index}]: expected a 1-D mono waveform, got shape {tuple(item.shape)}")
        return item.detach().float().cpu()

    def _attach_text(self, hyps: list[Hypothesis]) -> list[Hypothesis]:
        if self.tokenizer is not None:
            for hyp in hyps:
                hyp.text = self.tokenizer.decode(hyp.tokens)
        return hyps
