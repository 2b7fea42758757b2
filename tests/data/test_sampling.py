"""Semi-sorted batches, static bucketing (sizes, strategies, weights), equal DDP batch counts."""

import json

import numpy as np
import pytest
import soundfile as sf

from myna.data.factory import build_loader
from myna.data.resumable import ResumableDataLoader
from myna.data.sampling import (
    BucketChainLoader,
    DistributedBatchSampler,
    FixedLengthLoader,
    SemiSortBatchSampler,
    bucket_order,
    bucketing_batch_sizes,
)

SR = 8000


def padding_fraction(batches, durations):
    total = sum(len(b) * max(durations[i] for i in b) for b in batches)
    return 1 - sum(durations[i] for b in batches for i in b) / total


def durations(n=400, seed=0):
    return np.random.default_rng(seed).uniform(1.0, 20.0, n).tolist()


def test_semi_sorted_batches_cut_padding_and_reproduce_per_seed_and_epoch():
    d = durations()
    semi = SemiSortBatchSampler(d, 16, seed=3)
    rand = DistributedBatchSampler(d, 16, seed=3)
    assert padding_fraction(semi.batches(), d) < 0.5 * padding_fraction(rand.batches(), d)
    assert semi.batches() == SemiSortBatchSampler(d, 16, seed=3).batches()
    first = list(semi)  # iterating advances the epoch
    assert list(semi) != first
    assert sorted(i for b in first for i in b) == list(range(400))


def test_randomization_factor_zero_sorts_fully_and_larger_factors_pad_more():
    d = durations()
    zero = SemiSortBatchSampler(d, 16, randomization_factor=0.0, seed=0)
    spans = sorted((min(d[i] for i in b), max(d[i] for i in b)) for b in zero.batches())
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))  # no overlap
    pads = [padding_fraction(SemiSortBatchSampler(d, 16, randomization_factor=f, seed=0).batches(), d)
            for f in (0.0, 0.2, 1.0)]
    assert pads == sorted(pads)


@pytest.mark.parametrize("randomization_factor", [None, 0.1])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ddp_ranks_get_equal_batch_counts_covering_the_data(randomization_factor, drop_last):
    d = durations(n=37)
    per_rank = [DistributedBatchSampler(d, 4, world_size=3, rank=r, seed=1, drop_last=drop_last,
                                        randomization_factor=randomization_factor).batches() for r in range(3)]
    assert len({len(b) for b in per_rank}) == 1
    assert all(len(b) == len(DistributedBatchSampler(d, 4, world_size=3, rank=0, drop_last=drop_last)) for b in per_rank)
    seen = {i for batches in per_rank for b in batches for i in b}
    assert len(seen) == (36 if drop_last else 37)


def test_bucketing_batch_sizes_fixed_linear_and_listed():
    assert bucketing_batch_sizes(None, 3, batch_size=8) == [8, 8, 8]
    assert bucketing_batch_sizes(4, 3, batch_size=1) == [12, 8, 4]  # shortest bucket: largest batches
    assert bucketing_batch_sizes([9, 5, 2], 3, batch_size=1) == [9, 5, 2]
    assert bucketing_batch_sizes(4, 3, batch_size=1, bucketing_weights=[2, 1, 1]) == [12, 8, 4]
    with pytest.raises(ValueError, match="batch_size must be 1"):
        bucketing_batch_sizes(4, 3, batch_size=8)
    with pytest.raises(ValueError, match="one size per bucket"):
        bucketing_batch_sizes([1, 2], 3, batch_size=1)


def test_bucket_strategies_give_the_documented_order():
    assert [bucket_order(4, "fixed_order", e, rank=r) for e in range(2) for r in range(2)] == [[0, 1, 2, 3]] * 4
    synced = [[bucket_order(6, "synced_randomized", e, seed=5, rank=r) for r in range(2)] for e in range(4)]
    assert all(a == b for a, b in synced)  # same bucket on every rank at every step
    assert len({tuple(a) for a, _ in synced}) > 1  # but a new order each epoch
    fully = [[bucket_order(6, "fully_randomized", e, seed=5, rank=r) for r in range(2)] for e in range(4)]
    assert any(a != b for a, b in fully)  # ranks differ
    assert fully == [[bucket_order(6, "fully_randomized", e, seed=5, rank=r) for r in range(2)] for e in range(4)]
    with pytest.raises(ValueError, match="bucketing_strategy"):
        bucket_order(3, "sorted", 0)


def test_bucket_chain_plays_each_bucket_whole_in_order():
    sources = [["a1", "a2"], ["b1"], ["c1", "c2", "c3"]]
    chain = BucketChainLoader(sources, strategy="fixed_order")
    assert list(chain) == ["a1", "a2", "b1", "c1", "c2", "c3"] and len(chain) == 6
    chain = BucketChainLoader(sources, strategy="synced_randomized", seed=2)
    order = chain.order()
    assert list(chain) == [x for i in order for x in sources[i]]


def test_fixed_length_loader_fills_and_truncates_to_the_same_count():
    class Data:
        def __init__(self, n):
            self.dataset, self.n = self, n

        def __iter__(self):
            return iter(range(self.n))

    assert list(FixedLengthLoader(Data(3), 7)) == [0, 1, 2, 0, 1, 2, 0]
    assert list(FixedLengthLoader(Data(10), 4)) == [0, 1, 2, 3]


@pytest.fixture
def buckets(tmp_path):
    """Two bucket manifests: 6 short (0.05 s) and 4 long (0.2 s) utterances."""
    out = []
    for b, (n, seconds) in enumerate([(6, 0.05), (4, 0.2)]):
        lines = []
        for i in range(n):
            path = tmp_path / f"b{b}_{i}.wav"
            sf.write(path, np.zeros(int(seconds * SR), dtype=np.float32), SR)
            lines.append(json.dumps({"audio_filepath": str(path), "duration": seconds, "text": f"b{b}"}))
        manifest = tmp_path / f"bucket{b}.json"
        manifest.write_text("\n".join(lines) + "\n")
        out.append(str(manifest))
    return out


def test_static_bucketing_with_adaptive_sizes_and_weights_upsamples_buckets(buckets):
    cfg = {"manifest_filepath": [[buckets[0]], [buckets[1]]], "sample_rate": SR, "batch_size": 1,
           "bucketing_batch_size": 2, "bucketing_weights": [1, 2], "bucketing_strategy": "fixed_order", "shuffle": True}
    loader = build_loader(cfg, None, train=True, seed=0, name="train_ds")
    batches = list(loader)
    sizes = [b["audio"].shape[0] for b in batches]
    # bucket 1 (short): 6 utts in batches of 4 -> 2 batches; bucket 2 (long) twice: 4 utts in batches of 2 -> 2 x 2
    assert sorted(sizes[:2]) == [2, 4] and sizes[2:] == [2, 2, 2, 2] and len(loader) == 6
    assert [b["audio"].shape[1] for b in batches] == [400, 400, 1600, 1600, 1600, 1600]


def test_bucketing_over_2_ranks_gives_equal_counts(buckets):
    cfg = {"manifest_filepath": [[buckets[0]], [buckets[1]]], "sample_rate": SR, "batch_size": 4,
           "bucketing_strategy": "fully_randomized", "shuffle": True}
    counts = [len(list(build_loader(cfg, None, train=True, seed=0, name="t", world_size=2, rank=r))) for r in range(2)]
    assert counts[0] == counts[1] == 2


def test_semi_sorted_manifest_loader_keeps_lengths_apart_and_resumes_mid_epoch(buckets):
    cfg = {"manifest_filepath": buckets, "sample_rate": SR, "batch_size": 3, "shuffle": True,
           "use_semi_sorted_batching": True, "randomization_factor": 0.0}
    loader = build_loader(cfg, None, train=True, seed=0, name="train_ds")
    assert isinstance(loader, ResumableDataLoader)
    whole = [b["ids"] for b in loader]
    widths = sorted(b["audio"].shape[1] for b in build_loader(cfg, None, train=True, seed=0, name="train_ds"))
    assert widths == [400, 400, 1600, 1600]  # sorted: no batch mixes short and long
    stopped = build_loader(cfg, None, train=True, seed=0, name="train_ds")
    first = next(iter(stopped))["ids"]
    resumed = build_loader(cfg, None, train=True, seed=0, name="train_ds")
    resumed.load_state_dict(stopped.state_dict())
    assert [first] + [b["ids"] for b in resumed] == whole


def _padding_upper_bound(durations, bins):
    edges = [0.0, *bins, float("inf")]
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = [d for d in durations if low <= d < high]
        total += sum(max(inside) - d for d in inside) if inside else 0.0
    return total


def test_min_padding_bins_split_clusters_and_beat_equal_duration_bins():
    from myna.data.sampling import min_padding_duration_bins

    assert min_padding_duration_bins([1.0, 1.1, 1.2, 9.0, 9.5, 10.0], 2) == [9.0]
    durations = np.random.default_rng(0).gamma(9.0, 1.4, size=3000).tolist()
    padding_bins = min_padding_duration_bins(durations, 8)
    ordered = np.sort(durations)
    cum = np.cumsum(ordered)
    equal_bins = [float(ordered[np.searchsorted(cum, cum[-1] * k / 8)]) for k in range(1, 8)]
    assert len(padding_bins) == 7 and padding_bins == sorted(padding_bins)
    assert _padding_upper_bound(durations, padding_bins) < _padding_upper_bound(durations, equal_bins)
    with pytest.raises(ValueError, match="num_buckets must be >= 2"):
        min_padding_duration_bins(durations, 1)
