"""Full RNN-T loss with the joint network computed a few utterances at a time (NeMo's fused joint).

>>> loss = fused_joint_loss(joint, encoded, pred_out, targets, enc_lengths, target_lengths, blank=128,
...                         fused_batch_size=4)
"""

from __future__ import annotations

import torch
from torch import nn

from .rnnt import transducer_loss

__all__ = ["fused_joint_loss"]


def fused_joint_loss(joint: nn.Module, encoded: torch.Tensor, pred_out: torch.Tensor, targets: torch.Tensor,
                     encoded_lengths: torch.Tensor, target_lengths: torch.Tensor, blank: int,
                     fused_batch_size: int) -> torch.Tensor:
    """Full RNN-T loss (mean over utterances) computed ``fused_batch_size`` utterances at a time.

    Each slice is cut to its own longest frame and target counts, its joint logits
    (b, T_s, U_s+1, V+1) are built, scored and back-propagated to the projected joint inputs and
    the ``joint_net`` parameters right away, then freed; only the small gradients are kept for
    the backward pass. Equal to ``transducer_loss(joint(encoded, pred_out), ...)`` in value and
    in gradients (up to float rounding).

    Args:
        joint: an ``RNNTJoint`` (``project_encoder``, ``project_prediction``,
            ``joint_after_projection``, ``joint_net``).
        encoded: (B, T, D) float encoder output.
        pred_out: (B, U+1, H) float prediction-network output.
        targets: (B, U) int64 target ids (values past ``target_lengths`` are ignored).
        encoded_lengths: (B,) int64 valid frames, <= T.
        target_lengths: (B,) int64 valid targets, <= U.
        blank: blank class id.
        fused_batch_size: utterances per slice, >= 1.

    Returns:
        scalar float32 loss: sum of per-utterance NLLs / B.
    """
    f = joint.project_encoder(encoded)  # (B, T, J)
    g = joint.project_prediction(pred_out)  # (B, U+1, J)
    params = [p for p in joint.joint_net.parameters() if p.requires_grad]
    if not torch.is_grad_enabled():
        params = []
    return _FusedJointLoss.apply(f, g, targets, encoded_lengths, target_lengths, joint.joint_after_projection,
                                 blank, int(fused_batch_size), *params)


class _FusedJointLoss(torch.autograd.Function):
    """loss = sum_slices transducer_loss(joint_fn(f_s, g_s)) / B, with gradients taken per slice
    in forward (f: (B, T, J), g: (B, U+1, J), params: the joint_fn's trainable tensors)."""

    @staticmethod
    def forward(ctx, f, g, targets, f_lengths, t_lengths, joint_fn, blank, fused_batch_size, *params):
        batch = f.size(0)
        wrt = [f, g, *params]
        need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], *ctx.needs_input_grad[8:]]
        grads = [torch.zeros_like(t) if n else None for t, n in zip(wrt, need)]
        total = torch.zeros((), dtype=torch.float32, device=f.device)
        f_lengths_cpu, t_lengths_cpu = f_lengths.tolist(), t_lengths.tolist()
        for start in range(0, batch, fused_batch_size):
            end = min(start + fused_batch_size, batch)
            t_max = max(f_lengths_cpu[start:end])
            u_max = max(t_lengths_cpu[start:end])
            with torch.enable_grad():
                f_s = f[start:end, :t_max].detach().requires_grad_(need[0])  # (b, T_s, J)
                g_s = g[start:end, : u_max + 1].detach().requires_grad_(need[1])  # (b, U_s+1, J)
                logits = joint_fn(f_s.unsqueeze(2), g_s.unsqueeze(1))  # (b, T_s, U_s+1, V+1)
                loss = transducer_loss(
                    logits, targets[start:end, :u_max], f_lengths[start:end], t_lengths[start:end], blank=blank,
                    reduction="sum", inplace_grad=logits.requires_grad)
                inputs = [t for t, n in zip([f_s, g_s, *params], need) if n]
                if inputs:
                    slice_grads = iter(torch.autograd.grad(loss, inputs))
                    if need[0]:
                        grads[0][start:end, :t_max] += next(slice_grads)
                    if need[1]:
                        grads[1][start:end, : u_max + 1] += next(slice_grads)
                    for i in range(2, len(wrt)):
                        if need[i]:
                            grads[i] += next(slice_grads)
            total += loss.detach().float()
            del logits, loss
        ctx.batch = batch
        ctx.save_for_backward(*[gr if gr is not None else torch.empty(0) for gr in grads])
        ctx.has_grad = [gr is not None for gr in grads]
        return total / batch

    @staticmethod
    def backward(ctx, grad_out):
        scale = grad_out / ctx.batch  # d(total / B) / d(slice sums)
        out = [gr * scale.to(gr.dtype) if has else None for gr, has in zip(ctx.saved_tensors, ctx.has_grad)]
        f_grad, g_grad, *param_grads = out
        return (f_grad, g_grad, None, None, None, None, None, None, *param_grads)
