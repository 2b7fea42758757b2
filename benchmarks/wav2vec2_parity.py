"""wav2vec 2.0 parity figures: myna against NVIDIA DLE's and Hugging Face's recorded outputs.

Prints, per fixture model, the largest error of each compared quantity (what the parity tests in
``tests/models/test_wav2vec2_parity.py`` bound), and for Hugging Face CTC models the logit error
after an export to a ``save_pretrained`` folder reloaded by ``transformers`` (when installed).

    python benchmarks/wav2vec2_parity.py [--fixtures ../shared/fixtures]

DLE: largest absolute error over every recorded encoder stage (batch and single-utterance runs);
quantizer ids compared exactly; the replayed contrastive pass' InfoNCE sum and total loss as
relative errors. HF: relative errors (max |ours - ref| / max |ref|) of the feature encoder
output, every hidden state, the logits, the CTC loss, and the pre-training loss terms.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

import myna
from myna.interop.hf import save_hf

torch.set_grad_enabled(False)


def rel(ours, ref) -> float:
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


def dle(root: Path) -> None:
    inputs = np.load(root / "inputs.npz")
    index = json.loads((root / "index.json").read_text())["models"]
    print("NVIDIA DLE (max abs error over stages; quantizer ids; contrastive pass, relative)")
    for name in sorted(index):
        model, ref = myna.load(root / f"{name}.pt"), np.load(root / f"{name}_reference.npz")
        out = model.encoder.extract(torch.from_numpy(inputs["source"]), torch.from_numpy(inputs["lengths"]),
                                    return_stages=True)
        worst = 0.0
        for key in ref.files:
            if key in out.stages and not key.startswith("single_"):
                ours = out.stages[key].numpy()
                if ours.shape != ref[key].shape:
                    ours = ours.transpose(1, 0, 2)
                if ours.dtype != bool:
                    worst = max(worst, float(np.abs(ours - ref[key]).max()))
        worst = max(worst, float(np.abs(out.hidden.numpy() - ref["encoder_out"]).max()))
        quant = model.quantizer(out.extract_features)
        ids_equal = np.array_equal(quant.ids.numpy(), ref["quantizer_targets"])
        mask = torch.from_numpy(ref["mask_indices"])
        batch, time = mask.shape
        per_row = int(mask[0].sum())
        flat = torch.from_numpy(ref["neg_idxs"]).view(batch, per_row, -1)
        negatives = torch.zeros(batch, time, flat.shape[-1], dtype=torch.long)
        for b in range(batch):
            positions = mask[b].nonzero().flatten()
            negatives[b, positions] = positions[flat[b] % per_row] + b * time
        features, lengths = model.featurize(torch.from_numpy(inputs["source"]), torch.from_numpy(inputs["lengths"]))
        losses = model.forward_with_masks(features, lengths, mask, negatives).losses
        print(f"  {name:28s} stages {worst:.2e}  quantizer ids {'exact' if ids_equal else 'DIFFER'}  "
              f"InfoNCE {rel(losses.contrastive.item(), ref['loss_infonce_sum']):.1e}  "
              f"total {rel(losses.total.item(), ref['loss_total']):.1e}")


def hf(root: Path) -> None:
    index = json.loads((root / "index.json").read_text())["models"]
    try:
        import transformers
    except ImportError:
        transformers = None
    print("Hugging Face (relative errors)")
    for name in sorted(index):
        model, ref = myna.load(root / name), np.load(root / f"{name}_reference.npz")
        audio = torch.from_numpy(ref["raw_batch"])
        lengths = torch.from_numpy(ref["attention_mask_batch"]).sum(-1)
        row = [f"  {name:28s}"]
        if "batch_logits" in ref.files:
            out = model.encoder.extract(torch.from_numpy(ref["input_values_batch"]), lengths, return_stages=True)
            hidden = [out.stages["encoder_ln"]] + [out.stages[f"layers_{i}_out"]
                                                   for i in range(len(model.encoder.encoder.layers))]
            if not model.encoder.encoder.layer_norm_first:
                hidden[-1] = out.hidden
            logits = model.decoder.logits(out.hidden)
            row.append(f"features {rel(out.extract_features, ref['batch_extract_features']):.1e}")
            row.append(f"hidden {max(rel(h, ref[f'batch_hidden_states_{i}']) for i, h in enumerate(hidden)):.1e}")
            row.append(f"logits {rel(logits, ref['batch_logits']):.1e}")
            info = json.loads((root / f"{name}_reference.json").read_text())
            features, feature_lengths = model.featurize(audio, lengths)
            encoded, encoded_lengths = model.encoder(features, feature_lengths)
            labels = torch.from_numpy(ref["labels"])
            if not info["calls"]["batch_attention_mask_passed_to_model"]:
                encoded_lengths = torch.full_like(encoded_lengths, encoded.shape[1])
            loss = torch.nn.functional.ctc_loss(model.decoder(encoded).transpose(0, 1), labels.clamp(min=0),
                                                encoded_lengths, (labels >= 0).sum(-1), blank=model.blank_id,
                                                reduction="sum")
            row.append(f"CTC loss {rel(loss.item(), ref['batch_ctc_loss']):.1e}")
            if transformers is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    save_hf(model, Path(tmp) / "out")
                    theirs = transformers.Wav2Vec2ForCTC.from_pretrained(Path(tmp) / "out").eval()
                    values = torch.from_numpy(ref["input_values_single"])
                    row.append(f"exported->transformers logits "
                               f"{rel(theirs(values).logits.numpy(), model.decoder.logits(model.encoder.extract(values).hidden)):.1e}")
        if "mask_time_indices" in ref.files:
            mask = torch.from_numpy(ref["mask_time_indices"])
            features, feature_lengths = model.featurize(audio, lengths)
            out = model.forward_with_masks(features, feature_lengths, mask,
                                           torch.from_numpy(ref["sampled_negative_indices"]))
            losses = out.losses
            row.append(f"loss {rel(losses.total.item(), ref['loss']):.1e}")
            row.append(f"contrastive {rel(losses.contrastive.item(), ref['contrastive_loss']):.1e}")
            row.append(f"diversity {rel((losses.diversity * losses.num_masked).item(), ref['diversity_loss']):.1e}")
            row.append(f"perplexity {rel(out.perplexity.item(), ref['codevector_perplexity']):.1e}")
            row.append("ids " + ("exact" if np.array_equal(out.quantizer.ids.numpy(), ref["quantizer_codevector_idx"])
                                 else "DIFFER"))
        print("  ".join(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("MYNA_FIXTURES") or str(Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures")
    parser.add_argument("--fixtures", default=default)
    args = parser.parse_args()
    root = Path(args.fixtures)
    dle(root / "dle_hourglass")
    hf(root / "hf_wav2vec2")


if __name__ == "__main__":
    main()
