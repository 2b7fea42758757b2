"""Inference backends: run a trained model eagerly, compiled, int8-quantized or through ONNX Runtime.

:func:`with_backend` wraps a loaded myna model into an :class:`InferenceModel` that decodes with
every strategy of :func:`myna.decoding.decode` (it says how it decodes, like the model itself)
and transcribes files, with the network parts run by the chosen backend:

- ``"eager"``: the model's own PyTorch modules;
- ``"compile"``: the featurizer and the encoder through ``torch.compile`` with dynamic shapes
  (the search loops stay in Python; the first batches pay the compilation);
- ``"int8"``: a copy of the model whose ``nn.Linear`` layers and 1x1 convolutions are
  dynamically quantized to int8 (``torch.ao.quantization.quantize_dynamic``: int8 weights,
  activations quantized per batch); other convolutions and the LSTM stay float32. WER can move: measure it
  (benchmarks/decoding.py reports the delta);
- ``"onnx"``: the graphs of :mod:`myna.decoding.onnx_export` (encoder, prediction network and
  joiner as separate graphs for Transducers; one graph for CTC) run by onnxruntime, with the same
  greedy and beam searches as the other backends (optional extra ``myna[onnx]``).

The featurizer (log-mel spectrogram) runs in PyTorch in every backend (compiled in ``"compile"``).

>>> fast = with_backend(myna.load("model.nemo"), "int8")
>>> fast.transcribe(["a.wav"], strategy="beam", beam_size=4)
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from myna.decoding import decode
from myna.decoding.greedy import Hypothesis

__all__ = ["BACKENDS", "InferenceModel", "LengthGroupedEncoder", "inference_encoder", "with_backend"]

BACKENDS = ("eager", "compile", "int8", "onnx")


class InferenceModel:
    """A model's inference path with its network parts swapped for a backend's.

    Implements the decoding protocol of :class:`myna.decoding.DecodableModel` and the parts of a
    myna model that :func:`myna.evaluate.evaluate_manifest` uses (``featurize``, ``encoder``,
    ``preprocessor``, ``tokenizer``), so either accepts it in place of the model.
    """

    def __init__(self, model: nn.Module, backend: str, encoder, prediction_net=None, joint=None,
                 ctc_log_probs=None, keep: Any = None, strategies: Optional[Sequence[str]] = None,
                 featurizer=None):
        self.model = model
        self._featurizer = model.featurize if featurizer is None else featurizer
        self.backend = backend
        self.encoder = inference_encoder(model.encoder, encoder)
        self._prediction_net, self._joint = prediction_net, joint
        self._ctc_log_probs = ctc_log_probs
        self._keep = keep  # objects that must live as long as this one (a quantized copy, a temp dir)
        self.preprocessor = model.preprocessor
        self.tokenizer = getattr(model, "tokenizer", None)
        self.blank_id = model.blank_id
        self.max_symbols_per_step = getattr(model, "max_symbols_per_step", 10)
        self.decoding_strategies = tuple(strategies or model.decoding_strategies)

    def eval(self) -> "InferenceModel":
        self.model.eval()
        return self

    @property
    def sample_rate(self) -> int:
        return int(self.model.preprocessor.sample_rate)

    def featurize(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) float32 waveform, (B,) int64 -> features (B, T, F), lengths (B,) (PyTorch in every backend)."""
        return self._featurizer(audio, audio_lengths)

    def transducer_parts(self):
        if self._prediction_net is None:
            raise ValueError(f"{type(self.model).__name__} has no Transducer")
        return self._prediction_net, self._joint

    def ctc_log_probs(self, encoded: torch.Tensor) -> torch.Tensor:
        """(B, T', D) encoder output -> (B, T', V+1) log-probs."""
        if self._ctc_log_probs is None:
            raise ValueError(f"{type(self.model).__name__} has no CTC head for backend {self.backend!r}")
        return self._ctc_log_probs(encoded)

    @torch.inference_mode()
    def transcribe_batch(self, audio: torch.Tensor, audio_lengths: torch.Tensor, strategy: str = "greedy",
                         **decode_options) -> list[Hypothesis]:
        """Hypotheses for a padded batch of waveforms (B, L) at :attr:`sample_rate`, lengths (B,)."""
        features, lengths = self.featurize(audio, audio_lengths)
        encoded, encoded_lengths = self.encoder(features, lengths)
        return decode(self, encoded, encoded_lengths, strategy=strategy, **decode_options)

    def transcribe(self, audio: Any, batch_size: int = 4, strategy: str = "greedy", return_hypotheses: bool = False,
                   sort_by_length: bool = True, **decode_options) -> list:
        """Texts (or hypotheses) for audio files / arrays / tensors, in input order (as ``model.transcribe``;
        ``sort_by_length`` batches them longest first)."""
        from myna.models.base import Transcript, transcribe_inputs

        self.eval()
        hyps = transcribe_inputs(audio, batch_size, sort_by_length, self.model._waveform,
                                 lambda padded, lengths: self.transcribe_batch(padded, lengths, strategy=strategy,
                                                                               **decode_options))
        if return_hypotheses:
            return hyps
        return [Transcript(h.text or "") for h in hyps]


_MIN_GROUP_FRAMES = 64


def inference_encoder(module, call=None):
    """The encoder call of inference: ``call`` (default: the encoder ``module`` itself) wrapped in a
    :class:`LengthGroupedEncoder` when the module's rows do not see the batch's width
    (``module.rows_independent``; not wav2vec 2.0, whose group norm takes statistics over all
    samples of a row, padding included), else ``call`` unchanged. An already grouped call, or
    anything without that attribute, comes back as it is."""
    call = module if call is None else call
    return LengthGroupedEncoder(call) if getattr(module, "rows_independent", False) else call


class LengthGroupedEncoder:
    """An encoder call that, on a batch that is mostly padding, runs groups of rows of similar
    length, each cut to its own longest row, and lays the outputs out as one call would.

    Only for encoders that treat the rows of a batch independently of its width (masked
    convolutions and attention, batch norm with running statistics in inference; the encoder's
    ``rows_independent``), so that only the padding work goes:
    FSDD digit strings in file order, batches of 32, are 59% padding. Valid output frames agree
    with the single call to float32 rounding; frames past a row's output length are not meaningful
    (as after one call), and zeros past its group's width.
    """

    def __init__(self, encoder, max_padding: float = 0.25, min_padding_frames: int = 100):
        self.encoder = encoder
        self.max_padding = max_padding
        self.min_padding_frames = min_padding_frames

    def __call__(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) features, (B,) int64 lengths -> encoded (B, T', D), lengths (B,)."""
        batch, width = features.shape[:2]
        padding = batch * width - float(lengths.sum())
        # Each group is one more encoder call: worth it when the batch is mostly padding and its
        # rows carry enough padding each (short clips do not win back a call's fixed cost).
        if batch < 2 or padding <= self.max_padding * batch * max(width, 1) or padding < self.min_padding_frames * batch:
            return self.encoder(features, lengths)
        order = lengths.argsort(descending=True).tolist()
        groups: list[list[int]] = []
        for row in order:
            if groups and int(lengths[row]) >= (1.0 - self.max_padding) * int(lengths[groups[-1][0]]):
                groups[-1].append(row)
            else:
                groups.append([row])
        outputs = []
        for number, rows in enumerate(groups):
            index = torch.tensor(rows, device=features.device)
            # The longest group keeps the full width; no group gets fewer than 64 frames (enough for
            # every encoder's subsampling, also for rows of length 0).
            cut = width if number == 0 else min(width, max(int(lengths[rows[0]]), _MIN_GROUP_FRAMES))
            outputs.append((index, *self.encoder(features[index, :cut], lengths[index])))
        first = outputs[0][1]
        encoded = first.new_zeros(batch, first.shape[1], first.shape[2])
        encoded_lengths = outputs[0][2].new_zeros(batch)
        for index, out, out_lengths in outputs:
            encoded[index, : out.shape[1]] = out
            encoded_lengths[index] = out_lengths
        return encoded, encoded_lengths


def with_backend(model: nn.Module, backend: str = "eager", onnx_dir: str | os.PathLike | None = None,
                 onnx_threads: Optional[int] = None) -> InferenceModel:
    """Wrap ``model`` (a loaded myna Transducer, hybrid or CTC model) for inference with ``backend``.

    Args:
        model: the model; it is not changed (``int8`` quantizes a copy).
        backend: one of :data:`BACKENDS`.
        onnx_dir: ``onnx``: a folder written by ``myna export-onnx`` for this model; None exports
            the model into a temporary folder first.
        onnx_threads: ``onnx``: onnxruntime intra-op threads (default: torch's thread count).

    Raises:
        ValueError: an unknown backend (the message lists them), or ``onnx`` without onnxruntime.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown inference backend {backend!r}; choose one of {list(BACKENDS)}")
    model.eval()
    has_transducer = hasattr(model, "joint")
    ctc = getattr(model, "ctc_log_probs", None) if _has_ctc(model) else None
    if backend == "eager":
        parts = model.transducer_parts() if has_transducer else (None, None)
        return InferenceModel(model, backend, model.encoder, *parts, ctc_log_probs=ctc)
    if backend == "compile":
        if not _has_cxx_compiler() and next(model.parameters()).device.type == "cpu":
            raise ValueError("the compile backend needs a C++ compiler for CPU code (e.g. apt-get install g++; "
                             "or set CXX); choose another backend")
        encoder = torch.compile(model.encoder, dynamic=True)
        featurizer = torch.compile(model.preprocessor, dynamic=True)
        parts = model.transducer_parts() if has_transducer else (None, None)
        return InferenceModel(model, backend, encoder, *parts, ctc_log_probs=ctc, featurizer=featurizer)
    if backend == "int8":
        quantized = quantize_int8(model)
        parts = quantized.transducer_parts() if has_transducer else (None, None)
        ctc_q = quantized.ctc_log_probs if _has_ctc(quantized) else None
        return InferenceModel(model, backend, quantized.encoder, *parts, ctc_log_probs=ctc_q, keep=quantized)
    from myna.decoding.onnx_export import OnnxGraphs, export_onnx

    keep = None
    if onnx_dir is None:
        keep = tempfile.TemporaryDirectory(prefix="myna_onnx_")
        onnx_dir = keep.name
        export_onnx(model, onnx_dir)
    graphs = OnnxGraphs(Path(onnx_dir), threads=onnx_threads or torch.get_num_threads())
    if graphs.kind == "ctc":
        return InferenceModel(model, backend, graphs.ctc_encoder, ctc_log_probs=graphs.ctc_log_probs, keep=keep)
    from myna.decoding import TRANSDUCER_STRATEGIES

    # The encoder graph ends in the joiner's projection, so a hybrid's CTC head cannot run on it.
    return InferenceModel(model, backend, graphs.encoder, graphs.prediction_net, graphs.joint, keep=keep,
                          strategies=TRANSDUCER_STRATEGIES)


def _has_cxx_compiler() -> bool:
    """Whether torch.compile's CPU code generation finds a C++ compiler ($CXX, c++, g++, clang++)."""
    import shutil

    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if name)


def _has_ctc(model) -> bool:
    return "ctc_greedy" in tuple(model.decoding_strategies)


class PointwiseLinear(nn.Module):
    """A 1x1, stride-1 ``Conv1d`` as an ``nn.Linear`` over channels: (B, C_in, T) -> (B, C_out, T).

    The same arithmetic; as a Linear it can be dynamically quantized (ContextNet and Conformer
    spend most of their time in these layers).
    """

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        # The conv's geometry, for code that computes output lengths from it.
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.padding, self.dilation, self.groups = (1,), (1,), (0,), (1,), 1
        self.linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight[:, :, 0])
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, C_out, T)."""
        return self.linear(x.transpose(1, 2)).transpose(1, 2)


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` and 1x1 ``nn.Conv1d`` layers are dynamically
    quantized to int8 (the 1x1 convs through :class:`PointwiseLinear`).

    The prediction network's LSTM stays float32: one decoding step of a quantized LSTM is slower
    on CPU than the float LSTM-cell step :class:`~myna.nn.prediction.RNNTPredictionNetwork` takes.
    """
    from torch.ao.quantization import quantize_dynamic

    copied = copy.deepcopy(model).eval()
    for parent in list(copied.modules()):
        for name, child in list(parent.named_children()):
            if _is_pointwise(child):
                setattr(parent, name, PointwiseLinear(child))
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it still works
        warnings.simplefilter("ignore")
        return quantize_dynamic(copied, {nn.Linear}, dtype=torch.qint8)


def _is_pointwise(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv1d) and module.kernel_size == (1,) and module.stride == (1,)
            and module.groups == 1 and module.padding in ((0,), "valid") and module.padding_mode == "zeros")

