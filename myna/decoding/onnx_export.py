"""ONNX export of myna models and the onnxruntime parts the searches of :mod:`myna.decoding` run on.

A Transducer is exported as three graphs, as icefall and NeMo export theirs, with the joiner's
two input projections folded into the graph that feeds them (icefall's layout), so a search step
is one joiner call and, for a new label, one prediction call:

- ``encoder.onnx``: ``features`` (B, T, F) float32, ``feature_lengths`` (B,) int64 ->
  ``encoder_out`` (B, T', J) (encoder output after the joiner's encoder projection),
  ``encoder_out_lengths`` (B,) int64;
- ``decoder.onnx``: ``tokens`` (N,) int64 (the blank id = the start symbol), ``h`` (L, N, H),
  ``c`` (L, N, H_rnn) -> ``decoder_out`` (N, J) (prediction output after the joiner's
  prediction projection), ``next_h``, ``next_c``;
- ``joiner.onnx``: ``encoder_out`` (N, J), ``decoder_out`` (N, J) -> ``logits`` (N, V+1) raw.

A CTC model is one graph, ``model.onnx``: ``features``, ``feature_lengths`` -> ``log_probs``
(B, T', V+1), ``log_probs_lengths``. ``myna_onnx.json`` beside the graphs records the kind,
blank id and state sizes. The featurizer stays in PyTorch (its STFT is not exported), so a folder
is used together with the model it was exported from (:func:`myna.decoding.backends.with_backend`).

Needs the optional extra ``myna[onnx]`` (onnx, onnxruntime).

>>> export_onnx(myna.load("model.nemo"), "model_onnx/")
['model_onnx/encoder.onnx', 'model_onnx/decoder.onnx', 'model_onnx/joiner.onnx']
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

__all__ = ["export_onnx", "OnnxGraphs", "META_FILE"]

META_FILE = "myna_onnx.json"
OPSET = 17


class _Encoder(nn.Module):
    def __init__(self, encoder, project: Optional[nn.Module]):
        super().__init__()
        self.encoder, self.project = encoder, project

    def forward(self, features, lengths):
        out, out_lengths = self.encoder(features, lengths)
        return (self.project(out) if self.project is not None else out), out_lengths


class _Decoder(nn.Module):
    def __init__(self, prediction_net, joint):
        super().__init__()
        self.prediction_net, self.joint = prediction_net, joint

    def forward(self, tokens, h, c):
        out, (next_h, next_c) = self.prediction_net.step(tokens, (h, c))
        return self.joint.project_prediction(out.unsqueeze(1)).squeeze(1), next_h, next_c


class _Joiner(nn.Module):
    def __init__(self, joint):
        super().__init__()
        self.joint = joint

    def forward(self, encoder_out, decoder_out):
        return self.joint.joint_after_projection(encoder_out, decoder_out)


class _Ctc(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features, lengths):
        encoded, out_lengths = self.model.encoder(features, lengths)
        return self.model.ctc_log_probs(encoded), out_lengths


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def export_onnx(model: nn.Module, out_dir: str | Path) -> list[str]:
    """Write ``model``'s graphs (see the module docstring) and ``myna_onnx.json`` into ``out_dir``.

    Returns:
        The paths of the graphs written.

    Raises:
        ValueError: a model that is neither a Transducer nor a CTC model.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    feats = int(getattr(model.preprocessor, "features", getattr(model.preprocessor, "n_mels", 64)))
    features = torch.randn(2, 160, feats)
    lengths = torch.tensor([160, 120])
    written = []
    with torch.no_grad():
        if hasattr(model, "joint"):
            decoder, joint = model.transducer_parts()
            _export(_Encoder(model.encoder, joint.enc), (features, lengths), out / "encoder.onnx",
                    ["features", "feature_lengths"], ["encoder_out", "encoder_out_lengths"],
                    {"features": {0: "B", 1: "T"}, "feature_lengths": {0: "B"}, "encoder_out": {0: "B", 1: "T_out"},
                     "encoder_out_lengths": {0: "B"}})
            h, c = decoder.initial_state(3, torch.device("cpu"), torch.float32)
            tokens = torch.tensor([model.blank_id, 0, 1])
            _export(_Decoder(decoder, joint), (tokens, h, c), out / "decoder.onnx", ["tokens", "h", "c"],
                    ["decoder_out", "next_h", "next_c"],
                    {"tokens": {0: "N"}, "h": {1: "N"}, "c": {1: "N"}, "decoder_out": {0: "N"},
                     "next_h": {1: "N"}, "next_c": {1: "N"}})
            size = joint.joint_hidden
            _export(_Joiner(joint), (torch.randn(3, size), torch.randn(3, size)), out / "joiner.onnx",
                    ["encoder_out", "decoder_out"], ["logits"],
                    {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logits": {0: "N"}})
            written = [out / "encoder.onnx", out / "decoder.onnx", out / "joiner.onnx"]
            meta = {"kind": "transducer", "blank_id": int(model.blank_id), "num_classes": joint.num_classes_with_blank,
                    "h_shape": list(h.shape[::2]), "c_shape": list(c.shape[::2]), "joint_hidden": size}
        elif "ctc_greedy" in tuple(model.decoding_strategies):
            _export(_Ctc(model), (features, lengths), out / "model.onnx", ["features", "feature_lengths"],
                    ["log_probs", "log_probs_lengths"],
                    {"features": {0: "B", 1: "T"}, "feature_lengths": {0: "B"}, "log_probs": {0: "B", 1: "T_out"},
                     "log_probs_lengths": {0: "B"}})
            written = [out / "model.onnx"]
            meta = {"kind": "ctc", "blank_id": int(model.blank_id)}
        else:
            raise ValueError(f"export_onnx: {type(model).__name__} is neither a Transducer nor a CTC model")
    meta["opset"] = OPSET
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return [str(p) for p in written]


class OnnxGraphs:
    """The exported graphs of one folder, behind the module APIs the searches call.

    For a Transducer: :meth:`encoder` (features -> projected encoder output), ``prediction_net``
    (``initial_state``, ``step``) and ``joint`` (``project_encoder`` / ``project_prediction``
    are identities, the projections being inside the graphs; ``joint_after_projection`` runs
    ``joiner.onnx``). For CTC: :meth:`ctc_encoder` and :meth:`ctc_log_probs`.
    """

    def __init__(self, directory: Path, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ValueError("the onnx backend needs onnxruntime: pip install 'myna[onnx]'") from err
        meta_path = Path(directory) / META_FILE
        if not meta_path.is_file():
            raise ValueError(f"{directory}: no {META_FILE}; write the folder with `myna export-onnx`")
        self.meta = json.loads(meta_path.read_text())
        self.kind = self.meta["kind"]

        def session(name, intra_op_threads=int(threads)):
            options = ort.SessionOptions()
            options.intra_op_num_threads = intra_op_threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            return ort.InferenceSession(str(Path(directory) / name), options, providers=["CPUExecutionProvider"])

        if self.kind == "transducer":
            self._encoder = session("encoder.onnx")
            # The prediction-network and joiner graphs run once per search step on a few rows: a
            # second thread only adds hand-offs (and, beside torch's own thread pool, contention).
            self._decoder, self._joiner = session("decoder.onnx", 1), session("joiner.onnx", 1)
            self.prediction_net = _OrtPrediction(self._decoder, self.meta)
            self.joint = _OrtJoint(self._joiner, self.meta)
        else:
            self._ctc = session("model.onnx")

    def encoder(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B,) -> projected encoder output (B, T', J), lengths (B,)."""
        out, out_lengths = self._encoder.run(None, {"features": _np(features), "feature_lengths": _np(lengths, np.int64)})
        return torch.from_numpy(out), torch.from_numpy(out_lengths)

    def ctc_encoder(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B,) -> log-probs (B, T', V+1) standing in for the encoder output, lengths (B,)."""
        out, out_lengths = self._ctc.run(None, {"features": _np(features), "feature_lengths": _np(lengths, np.int64)})
        return torch.from_numpy(out), torch.from_numpy(out_lengths)

    @staticmethod
    def ctc_log_probs(encoded: torch.Tensor) -> torch.Tensor:
        """The CTC graph already returns log-probs: identity."""
        return encoded


def _np(x: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy().astype(dtype, copy=False))


class _OrtPrediction:
    def __init__(self, session, meta: dict):
        self.session = session
        self.blank_id = int(meta["blank_id"])
        self.h_shape, self.c_shape = meta["h_shape"], meta["c_shape"]  # [layers, hidden]

    def initial_state(self, batch: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.zeros(self.h_shape[0], batch, self.h_shape[1])
        c = torch.zeros(self.c_shape[0], batch, self.c_shape[1])
        return h, c

    def step(self, tokens: Optional[torch.Tensor], state) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tokens (N,) int64 or None (start: the blank id's zero embedding); state (h, c) -> ((N, J), state)."""
        h, c = state
        if tokens is None:
            tokens = torch.full((h.shape[1],), self.blank_id, dtype=torch.long)
        out, next_h, next_c = self.session.run(None, {"tokens": _np(tokens, np.int64), "h": _np(h), "c": _np(c)})
        return torch.from_numpy(out), (torch.from_numpy(next_h), torch.from_numpy(next_c))


class _OrtJoint:
    def __init__(self, session, meta: dict):
        self.session = session
        self.num_classes_with_blank = int(meta["num_classes"])

    @staticmethod
    def project_encoder(encoder_out: torch.Tensor) -> torch.Tensor:
        return encoder_out

    @staticmethod
    def project_prediction(pred_out: torch.Tensor) -> torch.Tensor:
        return pred_out

    def joint_after_projection(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(N, J), (N, J) -> (N, V+1) raw logits."""
        (logits,) = self.session.run(None, {"encoder_out": _np(f), "decoder_out": _np(g)})
        return torch.from_numpy(logits)
