import pytest
import torch
import torch.nn.functional as F

from myna.losses.ssl import StepCountError, masked_steps, masked_steps_by_factor, masks_by_value, mlm_loss, reduce_ids


def test_reduce_ids_equals_per_row_run_collapse():
    ids = torch.randint(0, 3, (5, 17), generator=torch.Generator().manual_seed(0))
    reduced, lengths = reduce_ids(ids)
    for row, out, n in zip(ids.tolist(), reduced.tolist(), lengths.tolist()):
        runs = [v for i, v in enumerate(row) if i == 0 or v != row[i - 1]]
        assert n == len(runs) and out[:n] == runs and all(v == 0 for v in out[n:])
    assert reduced.shape[1] == int(lengths.max())


def test_a_step_is_masked_when_more_than_the_threshold_of_its_cells_are():
    spec = torch.ones(1, 16, 80)
    spec[0, 4:8] = 0  # one whole step of 4 frames
    spec[0, :, :60] = 0  # 60 of 80 bins everywhere: 75% of each step, below 0.8
    masks = masks_by_value(spec, torch.tensor([12]))
    assert masked_steps(masks, 4).tolist() == [[False, True, False, False]]
    assert masks[0, 12:].sum() == 0  # frames past the length never count


def test_mlm_steps_need_a_length_divisible_by_combine_time_steps():
    with pytest.raises(StepCountError, match="combine_time_steps=4 does not divide .* 10"):
        masked_steps_by_factor(torch.zeros(1, 10, 3), 4)


def test_mlm_loss_is_the_mean_nll_over_masked_steps_with_zero_padded_targets():
    log_probs = torch.randn(2, 5, 7).log_softmax(-1)
    targets = torch.tensor([[1, 2, 3], [4, 5, 6]])
    mask = torch.tensor([[True, False, True, True, False], [False, True, False, False, True]])
    padded = F.pad(targets, (0, 2))
    expected = torch.stack([-log_probs[b, t, padded[b, t]] for b in range(2) for t in range(5) if mask[b, t]]).mean()
    torch.testing.assert_close(mlm_loss(log_probs, targets, mask), expected)
