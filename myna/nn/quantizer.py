"""Gumbel-softmax product quantizer (wav2vec 2.0; fairseq, Hugging Face, NVIDIA DLE and NeMo).

A frame is projected to G groups of V logits; each group picks one of V codevectors and the
picks are concatenated. In training the pick is a straight-through Gumbel-softmax sample at
temperature ``tau`` (hard one-hot forward, soft gradient); in evaluation it is the argmax.

One class serves both users:

- fairseq / HF / DLE: ``combine_groups=False``, a separate codebook per group,
  ``vars`` (1, G*V, D/G);
- NeMo's ``GumbelVectorQuantizer`` inside ``ContrastiveLoss``: ``combine_groups=True``, one
  V-entry codebook shared by every group, ``vars`` (1, V, D/G).

Parameter names are fairseq's and NeMo's (``vars``, ``weight_proj``); Hugging Face calls the
codebook ``codevectors`` (interop renames it).

>>> q = GumbelVectorQuantizer(dim=512, num_vars=320, groups=2, vq_dim=256).eval()
>>> out = q(torch.randn(3, 50, 512))
>>> out.quantized.shape, out.ids.shape, out.target_ids.shape
(torch.Size([3, 50, 256]), torch.Size([3, 50, 2]), torch.Size([3, 50]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GumbelVectorQuantizer", "QuantizerOutput", "perplexity"]


def perplexity(probs: torch.Tensor, mask: Optional[torch.Tensor] = None, eps: float = 1e-7) -> torch.Tensor:
    """Summed per-group perplexity of the average distribution: ``sum_g exp(-sum_v p̄ log(p̄ + eps))``.

    :param probs: (N, G, V) float probabilities (soft or one-hot) of N frames.
    :param mask: optional (N,) bool; p̄ averages over the True frames only (HF's masked frames).
    :param eps: fairseq and NeMo add 1e-7 inside the log; 0 uses ``xlogy`` (Hugging Face >= 4.4x).
    :return: scalar float32 tensor in [G, G*V].
    """
    probs = probs.float()
    if mask is not None:
        mask = mask.reshape(-1)
        avg = (probs * mask[:, None, None].to(probs.dtype)).sum(0) / mask.sum().clamp(min=1).to(probs.dtype)
    else:
        avg = probs.mean(0)
    plogp = torch.xlogy(avg, avg) if eps == 0 else avg * torch.log(avg + eps)
    return torch.exp(-plogp.sum(-1)).sum()


@dataclass
class QuantizerOutput:
    """What :class:`GumbelVectorQuantizer` returns.

    Attributes:
        quantized: (B, T, vq_dim) concatenated codevectors ((B, vq_dim, T) if not ``time_first``).
        logits: (B, T, G, V) group logits before any noise.
        ids: (B, T, G) int64 noiseless argmax per group.
        target_ids: (B, T) int64 ``sum_g ids_g * V^(G-1-g)`` (NeMo's ``target_ids``).
        prob_perplexity: scalar, perplexity of the averaged softmax (no noise) over the frames
            (masked frames only when a mask was given).
        code_perplexity: scalar, the same over the one-hot argmax choices.
        temperature: Gumbel temperature in force.
        num_codevectors: G * V.
    """

    quantized: torch.Tensor
    logits: torch.Tensor
    ids: torch.Tensor
    target_ids: torch.Tensor
    prob_perplexity: torch.Tensor
    code_perplexity: torch.Tensor
    temperature: float
    num_codevectors: int

    @property
    def diversity_loss(self) -> torch.Tensor:
        """``(G*V - prob_perplexity) / (G*V)``: 0 when every codevector is used equally (NeMo
        calls it ``prob_ppl_loss``)."""
        return (self.num_codevectors - self.prob_perplexity) / self.num_codevectors


class GumbelVectorQuantizer(nn.Module):
    """G groups x V codevectors, straight-through Gumbel in training, argmax in evaluation.

    :param dim: input size (512 for wav2vec 2.0's conv features; ``in_dim * combine_time_steps``
        in NeMo's ContrastiveLoss).
    :param num_vars: V, codevectors per group (fairseq ``latent_vars``, HF
        ``num_codevectors_per_group``, NeMo ``codebook_size``).
    :param groups: G (fairseq ``latent_groups``, HF ``num_codevector_groups``).
    :param vq_dim: size of the concatenated output (HF ``codevector_dim``); divisible by G.
    :param temp: (start, min, decay): ``tau = max(start * decay^step, min)`` (fairseq
        ``latent_temp`` (2, 0.5, 0.999995)).
    :param combine_groups: one V-entry codebook shared by the groups (NeMo) instead of one per
        group (fairseq, HF, DLE).
    :param time_first: input (B, T, dim) (True) or (B, dim, T).
    :param weight_proj_depth: layers of the logit projection (fairseq ``quantizer_depth``); with
        more than one, hidden layers of ``dim * weight_proj_factor`` units and GELU.
    :param weight_proj_factor: hidden-size factor for ``weight_proj_depth > 1``.
    :param perplexity_eps: 1e-7 (fairseq, NeMo) or 0 (``xlogy``, as Hugging Face computes it).
    """

    def __init__(self, dim: int, num_vars: int, groups: int, vq_dim: int,
                 temp: Sequence[float] = (2.0, 0.5, 0.999995), combine_groups: bool = False,
                 time_first: bool = True, weight_proj_depth: int = 1, weight_proj_factor: int = 1,
                 perplexity_eps: float = 1e-7) -> None:
        super().__init__()
        if vq_dim % groups != 0:
            raise ValueError(f"vq_dim={vq_dim} must be divisible by groups={groups}")
        if len(temp) != 3:
            raise ValueError(f"temp={temp!r} must be (start, min, decay)")
        self.input_dim = dim
        self.num_vars = num_vars
        self.groups = groups
        self.vq_dim = vq_dim
        self.combine_groups = combine_groups
        self.time_first = time_first
        self.perplexity_eps = perplexity_eps
        codebooks = 1 if combine_groups else groups
        self.vars = nn.Parameter(torch.empty(1, codebooks * num_vars, vq_dim // groups))
        nn.init.uniform_(self.vars)
        if weight_proj_depth > 1:
            inner = dim * weight_proj_factor
            blocks = [nn.Sequential(nn.Linear(dim if i == 0 else inner, inner), nn.GELU())
                      for i in range(weight_proj_depth - 1)]
            self.weight_proj = nn.Sequential(*blocks, nn.Linear(inner, groups * num_vars))
        else:
            self.weight_proj = nn.Linear(dim, groups * num_vars)
            nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
            nn.init.zeros_(self.weight_proj.bias)
        self.max_temp, self.min_temp, self.temp_decay = (float(t) for t in temp)
        self.curr_temp = self.max_temp

    @property
    def num_codevectors(self) -> int:
        """G * V."""
        return self.groups * self.num_vars

    def set_num_updates(self, num_updates: int) -> None:
        """Temperature for optimizer step ``num_updates``: ``max(start * decay^step, min)``."""
        self.curr_temp = max(self.max_temp * self.temp_decay ** num_updates, self.min_temp)

    def codebook(self) -> torch.Tensor:
        """(G, V, vq_dim/G): the codevectors of each group (shared ones repeated)."""
        table = self.vars.view(-1, self.num_vars, self.vq_dim // self.groups)
        return table.expand(self.groups, -1, -1) if self.combine_groups else table

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> QuantizerOutput:
        """Quantize frames.

        :param x: (B, T, dim) float ((B, dim, T) if not ``time_first``).
        :param mask: optional (B, T) bool; the perplexities average over True frames only
            (Hugging Face's masked frames). None averages over all B*T frames (fairseq, which
            passes only masked frames, and NeMo).
        :return: :class:`QuantizerOutput`.
        """
        if not self.time_first:
            x = x.transpose(1, 2)
        batch, time, _ = x.shape
        logits = self.weight_proj(x).view(batch * time, self.groups, self.num_vars)
        ids = logits.argmax(-1)  # (N, G)
        hard = torch.zeros_like(logits).scatter_(-1, ids.unsqueeze(-1), 1.0)
        flat_mask = None if mask is None else mask.reshape(-1)
        soft = torch.softmax(logits.float(), dim=-1)
        prob_ppl = perplexity(soft, flat_mask, self.perplexity_eps)
        code_ppl = perplexity(hard, flat_mask, self.perplexity_eps)
        if self.training:
            choice = F.gumbel_softmax(logits.float(), tau=self.curr_temp, hard=True).type_as(logits)
        else:
            choice = hard
        # (N, G, V) x (G, V, d) -> (N, G, d): a one-hot product picks codevectors exactly and,
        # in training, passes the straight-through gradient to the logits.
        quantized = torch.einsum("ngv,gvd->ngd", choice, self.codebook()).reshape(batch, time, self.vq_dim)
        if not self.time_first:
            quantized = quantized.transpose(1, 2)
        ids = ids.view(batch, time, self.groups)
        powers = self.num_vars ** torch.arange(self.groups - 1, -1, -1, device=ids.device)
        target_ids = (ids * powers).sum(-1)
        return QuantizerOutput(quantized=quantized, logits=logits.view(batch, time, self.groups, self.num_vars),
                               ids=ids, target_ids=target_ids, prob_perplexity=prob_ppl, code_perplexity=code_ppl,
                               temperature=self.curr_temp, num_codevectors=self.num_codevectors)
