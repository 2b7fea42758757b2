import random

import pytest
import torch

from myna.features import MaskedPatchAugmentation, PatchTooShortError


def _patches(mask_row, patch):
    """Masked patch numbers of one (T, F) mask row (patches zeroed in every bin)."""
    full = mask_row.all(-1)
    return sorted({t // patch for t in full.nonzero().flatten().tolist()})


def test_fraction_counts_patches_from_the_shortest_utterance_for_every_row():
    aug = MaskedPatchAugmentation(patch_size=48, mask_patches=0.5, rng=random.Random(0))
    lengths = torch.tensor([260, 210])
    mask = aug.draw(lengths, frames=272, bins=80)
    assert aug.num_patches(lengths) == 3  # int(210 * 0.5) = 105 frames -> ceil(105 / 48) = 3
    for b, n in enumerate(lengths.tolist()):
        patches = _patches(mask[b], 48)
        assert len(patches) == 3 and max(patches) < n // 48  # whole patches inside the utterance
        assert int(mask[b].all(-1).sum()) == 3 * 48


def test_count_is_clipped_to_the_patches_the_shortest_utterance_holds():
    aug = MaskedPatchAugmentation(patch_size=10, mask_patches=5, rng=random.Random(1))
    assert aug.num_patches(torch.tensor([100, 35])) == 3
    assert aug.num_patches(torch.tensor([100, 80])) == 5


def test_frequency_bands_cover_every_frame_including_padding():
    aug = MaskedPatchAugmentation(patch_size=4, mask_patches=1, freq_masks=2, freq_width=30,
                                  rng=random.Random(0), generator=torch.Generator().manual_seed(3))
    mask = aug.draw(torch.tensor([40, 20]), frames=48, bins=80)
    band = mask[1, 44]  # a padded frame of row 1: only frequency bands there
    assert band.any() and torch.equal(mask[1, :, band].all(0), torch.ones(int(band.sum()), dtype=torch.bool))


def test_utterance_shorter_than_one_patch_is_an_error_naming_the_row():
    aug = MaskedPatchAugmentation(patch_size=48, mask_patches=0.5)
    with pytest.raises(PatchTooShortError, match="row 1: 30 frames") as err:
        aug.draw(torch.tensor([100, 30]), frames=100, bins=80)
    assert err.value.rows == [1]


def test_same_generators_replay_the_same_mask_and_forward_zeroes_it():
    def make():
        return MaskedPatchAugmentation(patch_size=8, mask_patches=0.5, freq_masks=1, freq_width=10,
                                       rng=random.Random(7), generator=torch.Generator().manual_seed(7))
    lengths = torch.tensor([64, 50])
    first = make().draw(lengths, 64, 20)
    assert torch.equal(first, make().draw(lengths, 64, 20))
    features = torch.rand(2, 64, 20) + 1.0
    out = make()(features, lengths)
    assert torch.equal(out == 0, first)


def test_negative_mask_patches_is_rejected():
    with pytest.raises(ValueError, match="mask_patches"):
        MaskedPatchAugmentation(mask_patches=-1)
