"""fused_joint_loss: the full RNN-T loss over slices of the batch equals the unsliced loss."""

import pytest
import torch

from myna.losses.fused_joint import fused_joint_loss
from myna.losses.rnnt import transducer_loss
from myna.nn.joint import RNNTJoint


def _inputs(seed=0):
    torch.manual_seed(seed)
    joint = RNNTJoint(encoder_hidden=16, pred_hidden=12, joint_hidden=24, num_classes=10)
    enc, pred = torch.randn(5, 20, 16), torch.randn(5, 7, 12)
    targets = torch.randint(0, 10, (5, 6))
    enc_len, tgt_len = torch.tensor([20, 13, 17, 5, 20]), torch.tensor([6, 2, 0, 3, 6])  # an empty target too
    return joint, enc, pred, targets, enc_len, tgt_len


def test_fused_joint_loss_without_grad_equals_plain_loss():
    joint, enc, pred, targets, enc_len, tgt_len = _inputs()
    with torch.no_grad():
        fused = fused_joint_loss(joint, enc, pred, targets, enc_len, tgt_len, blank=10, fused_batch_size=2)
        plain = transducer_loss(joint(enc, pred), targets, enc_len, tgt_len, blank=10)
    torch.testing.assert_close(fused, plain)


@pytest.mark.parametrize("fused_batch_size", [1, 2, 5])
def test_fused_joint_loss_gradients_equal_the_plain_ones(fused_batch_size):
    joint, enc, pred, targets, enc_len, tgt_len = _inputs(1)
    grads = []
    for fused in (False, True):
        joint.zero_grad(set_to_none=True)
        enc_in, pred_in = enc.clone().requires_grad_(), pred.clone().requires_grad_()
        if fused:
            loss = fused_joint_loss(joint, enc_in, pred_in, targets, enc_len, tgt_len, blank=10,
                                    fused_batch_size=fused_batch_size)
        else:
            loss = transducer_loss(joint(enc_in, pred_in), targets, enc_len, tgt_len, blank=10)
        (2.0 * loss).backward()  # a non-unit upstream gradient reaches every slice
        grads.append((loss.detach(), enc_in.grad, pred_in.grad, {n: p.grad.clone() for n, p in joint.named_parameters()}))
    (plain, *plain_grads), (fused, *fused_grads) = grads
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(fused_grads[0], plain_grads[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused_grads[1], plain_grads[1], rtol=1e-4, atol=1e-6)
    for name, grad in plain_grads[2].items():
        torch.testing.assert_close(fused_grads[2][name], grad, rtol=1e-4, atol=1e-6, msg=name)
