"""nn/attention.py: sinusoids, absolute and relative positional encodings, masked multi-head attention."""

import math

import pytest
import torch

from myna.nn.attention import (
    MultiHeadAttention,
    PositionalEncoding,
    RelPositionalEncoding,
    RelPositionMultiHeadAttention,
    rel_shift,
    sinusoids,
)
from myna.nn.conformer import make_attention_masks


def _explicit_attention(att, x, mask):
    """softmax(q k^T / sqrt(d_k)) v written out from the module's weights, per head."""
    batch, frames, width = x.shape
    q, k, v = (lin(x).view(batch, frames, att.h, att.d_k).transpose(1, 2)
               for lin in (att.linear_q, att.linear_k, att.linear_v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(att.d_k)
    scores = scores.masked_fill(mask[:, None], float("-inf"))
    probs = torch.nan_to_num(scores.softmax(-1))  # a row without keys attends to nothing
    return att.linear_out((probs @ v).transpose(1, 2).reshape(batch, frames, width))


def test_sinusoids_follow_the_transformer_formula():
    pe = sinusoids(torch.tensor([0.0, 3.0, -2.0]), 6)
    for row, pos in enumerate([0.0, 3.0, -2.0]):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert pe[row, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[row, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_absolute_encoding_scales_the_input_adds_positions_and_grows_its_table():
    enc = PositionalEncoding(8, 0.0, max_len=4, xscale=2.0).eval()
    x = torch.randn(2, 7, 8)
    y, pos = enc(x)
    assert pos.shape == (1, 7, 8) and enc.pe.size(1) == 7  # the table grew past max_len
    torch.testing.assert_close(pos[0], sinusoids(torch.arange(7.0), 8))
    torch.testing.assert_close(y, 2.0 * x + pos)


def test_relative_encoding_returns_positions_t_minus_1_down_to_minus_t_plus_1():
    enc = RelPositionalEncoding(8, 0.0, max_len=3, xscale=None).eval()
    x = torch.randn(1, 5, 8)
    y, pos = enc(x)
    assert torch.equal(y, x)  # no positions added to the input
    torch.testing.assert_close(pos[0], sinusoids(torch.arange(4.0, -5.0, -1.0), 8))


@pytest.mark.parametrize("use_sdpa", [True, False], ids=["sdpa", "explicit"])
def test_attention_equals_masked_softmax_attention_written_out(use_sdpa):
    torch.manual_seed(0)
    att = MultiHeadAttention(n_head=2, n_feat=8, use_sdpa=use_sdpa).eval()
    x = torch.randn(2, 6, 8)
    _, mask = make_attention_masks(torch.tensor([6, 4]), 6, (-1, -1))
    with torch.no_grad():
        ours, expected = att(x, mask), _explicit_attention(att, x, mask)
    torch.testing.assert_close(ours[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1, :4], expected[1, :4], rtol=1e-5, atol=1e-5)
    # padded query rows see no key: they output linear_out's bias, as NeMo's do
    torch.testing.assert_close(ours[1, 4:], att.linear_out.bias.expand(2, 8))


def test_masked_keys_do_not_change_the_output():
    torch.manual_seed(1)
    att = RelPositionMultiHeadAttention(n_head=2, n_feat=8).eval()
    x = torch.randn(1, 6, 8)
    _, pos = RelPositionalEncoding(8, 0.0)(x)
    _, mask = make_attention_masks(torch.tensor([4]), 6, (-1, -1))
    changed = x.clone()
    changed[:, 4:] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(att(x, mask, pos)[:, :4], att(changed, mask, pos)[:, :4])


def test_relative_attention_without_position_terms_is_plain_attention():
    torch.manual_seed(2)
    rel = RelPositionMultiHeadAttention(n_head=2, n_feat=8).eval()
    torch.nn.init.zeros_(rel.linear_pos.weight)  # no position term; pos_bias_u/v are zero-initialised
    plain = MultiHeadAttention(n_head=2, n_feat=8).eval()
    plain.load_state_dict({k: v for k, v in rel.state_dict().items() if k.startswith("linear_") and "pos" not in k})
    x = torch.randn(2, 5, 8)
    _, pos = RelPositionalEncoding(8, 0.0)(x)
    with torch.no_grad():
        torch.testing.assert_close(rel(x, None, pos), plain(x, None), rtol=1e-5, atol=1e-6)


def test_sdpa_and_explicit_attention_agree_with_masks():
    torch.manual_seed(2)
    att = RelPositionMultiHeadAttention(n_head=4, n_feat=32, use_sdpa=True).eval()
    torch.nn.init.normal_(att.pos_bias_u)
    torch.nn.init.normal_(att.pos_bias_v)
    ref = RelPositionMultiHeadAttention(n_head=4, n_feat=32, use_sdpa=False).eval()
    ref.load_state_dict(att.state_dict())
    x = torch.randn(2, 9, 32)
    _, pos = RelPositionalEncoding(32, 0.0, max_len=4)(x)  # also extends the table past max_len
    _, mask = make_attention_masks(torch.tensor([9, 5]), 9, (3, 1))
    torch.testing.assert_close(att(x, mask, pos), ref(x, mask, pos), rtol=1e-5, atol=1e-5)


def test_rel_shift_aligns_relative_positions_with_keys():
    t = 4
    rel = torch.arange(t - 1, -t, -1).float()  # column j holds relative position T-1-j
    scores = rel.expand(1, 1, t, 2 * t - 1)
    shifted = rel_shift(scores)[..., :t]
    expected = torch.arange(t)[:, None] - torch.arange(t)[None, :]  # query i, key k -> i - k
    assert torch.equal(shifted[0, 0], expected.float())


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(n_head=3, n_feat=8)
    with pytest.raises(ValueError, match="needs pos_emb"):
        RelPositionMultiHeadAttention(n_head=2, n_feat=8)(torch.randn(1, 3, 8))
