import math

import pytest
import torch

from vdmcourse.nn.embeddings import (
    LabelEmbedding,
    PositionTable,
    RelativePositionBias,
    TimestepEmbedding,
    apply_rope,
    drop_labels,
    sincos_table_1d,
    sincos_table_2d,
    sincos_table_3d,
    sinusoidal_embedding,
)


def test_sinusoidal_embedding_matches_the_formula():
    t = torch.tensor([0.0, 1.0, 250.0, 999.0], dtype=torch.float64)
    dim, half = 8, 4
    out = sinusoidal_embedding(t, dim)
    assert out.shape == (4, dim) and out.dtype == torch.float64
    for n, value in enumerate(t.tolist()):
        for i in range(half):
            freq = 10000 ** (-i / half)
            assert out[n, i].item() == pytest.approx(math.cos(value * freq))
            assert out[n, half + i].item() == pytest.approx(math.sin(value * freq))


def test_sinusoidal_embedding_odd_dim_pads_a_zero_column_and_rejects_bad_input():
    out = sinusoidal_embedding(torch.arange(3.0), 7)
    assert out.shape == (3, 7) and torch.all(out[:, -1] == 0)
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        sinusoidal_embedding(torch.zeros(2, 3), 8)
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_embedding(torch.zeros(2), 0)


def test_timestep_embedding_scales_t_by_1000_and_uses_dit_init():
    torch.manual_seed(0)
    embed = TimestepEmbedding(64)
    assert embed.mlp[0].in_features == 256
    t = torch.tensor([0.0, 0.25, 1.0])
    manual = embed.mlp(sinusoidal_embedding(t * 1000, 256))
    torch.testing.assert_close(embed(t), manual)
    assert embed(t).shape == (3, 64)
    for layer in (embed.mlp[0], embed.mlp[2]):
        assert abs(layer.weight.std().item() - 0.02) < 0.004
        assert torch.all(layer.bias == 0)
    assert not torch.allclose(embed(torch.tensor([0.5])), embed(torch.tensor([0.51])))


def test_timestep_embedding_rejects_bad_t():
    embed = TimestepEmbedding(16, frequency_dim=32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        embed(torch.tensor([0.5, 1.5]))
    with pytest.raises(TypeError, match="i / N"):
        embed(torch.tensor([3, 4]))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        embed(torch.rand(2, 1))


def test_label_embedding_has_a_null_row_and_sums_several_labels():
    torch.manual_seed(0)
    embed = LabelEmbedding(10, 32)
    assert embed.null_label == 10 and embed.table.num_embeddings == 11
    single = embed(torch.tensor([3, 10]))
    torch.testing.assert_close(single, embed.table.weight[[3, 10]])
    pair = embed(torch.tensor([[3, 7], [7, 3]]))
    assert pair.shape == (2, 32)
    torch.testing.assert_close(pair[0], embed.table.weight[3] + embed.table.weight[7])
    torch.testing.assert_close(pair[0], pair[1])  # order of the digits does not matter
    with pytest.raises(ValueError, match=r"\[0, 10\]"):
        embed(torch.tensor([11]))
    with pytest.raises(TypeError, match="integer"):
        embed(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, K\)"):
        embed(torch.zeros(2, 2, 2, dtype=torch.long))


def test_drop_labels_replaces_whole_samples_by_the_null_label_reproducibly():
    labels = torch.randint(0, 10, (4000, 2))
    dropped = drop_labels(labels, 0.1, null_label=10, generator=torch.Generator().manual_seed(1))
    again = LabelEmbedding(10, 8).drop_labels(labels, 0.1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(dropped, again)
    is_null = dropped == 10
    assert torch.equal(is_null[:, 0], is_null[:, 1])  # a sample loses all its labels or none
    assert 0.08 < is_null[:, 0].float().mean().item() < 0.12
    kept = ~is_null[:, 0]
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(drop_labels(labels, 0.0, null_label=10), labels)
    assert torch.all(drop_labels(labels[:, 0], 1.0, null_label=10) == 10)
    with pytest.raises(ValueError, match="p must be"):
        drop_labels(labels, 1.5, null_label=10)


def test_sincos_tables_encode_each_axis_and_fit_any_length():
    one = sincos_table_1d(5, 8, start=3)
    torch.testing.assert_close(one, sinusoidal_embedding(torch.arange(3.0, 8.0), 8))
    two = sincos_table_2d(3, 4, 8)
    assert two.shape == (3, 4, 8)
    torch.testing.assert_close(two[:, 0, :4], sincos_table_1d(3, 4))  # first half: the row
    torch.testing.assert_close(two[0, :, 4:], sincos_table_1d(4, 4))  # second half: the column
    three = sincos_table_3d(2, 3, 4, 16)  # spatial parts 2 * (16 // 6) = 4 each, time 8
    assert three.shape == (2, 3, 4, 16)
    torch.testing.assert_close(three[:, 0, 0, :8], sincos_table_1d(2, 8))
    torch.testing.assert_close(three[0, :, 0, 8:12], sincos_table_1d(3, 4))
    torch.testing.assert_close(three[0, 0, :, 12:], sincos_table_1d(4, 4))
    assert len({tuple(v.tolist()) for v in three.reshape(-1, 16)}) == 2 * 3 * 4  # every position distinct
    assert sincos_table_1d(1000, 8).shape == (1000, 8)
    with pytest.raises(ValueError, match="even"):
        sincos_table_2d(2, 2, 5)
    with pytest.raises(ValueError, match="frames"):
        sincos_table_3d(0, 2, 2, 12)


def test_scaled_sincos_tables_are_the_formula_at_positions_times_the_scale():
    # Position interpolation: scale 1 is the plain table bit for bit; scale s is the table at i * s.
    assert torch.equal(sincos_table_1d(7, 8, start=2, scale=1.0), sincos_table_1d(7, 8, start=2))
    assert torch.equal(sincos_table_3d(5, 3, 4, 16, time_scale=1.0), sincos_table_3d(5, 3, 4, 16))
    scale, half = 0.6, 4
    table = sincos_table_1d(20, 2 * half, scale=scale)
    for i in range(20):
        for k in range(half):
            angle = i * scale * 10000 ** (-k / half)
            assert table[i, k].item() == pytest.approx(math.cos(angle), abs=1e-6)
            assert table[i, half + k].item() == pytest.approx(math.sin(angle), abs=1e-6)
    torch.testing.assert_close(sincos_table_1d(3, 8, start=4, scale=0.5), sinusoidal_embedding(torch.tensor([2.0, 2.5, 3.0]), 8))
    three, plain = sincos_table_3d(20, 3, 4, 16, time_scale=scale), sincos_table_3d(20, 3, 4, 16)
    torch.testing.assert_close(three[:, 0, 0, :8], sincos_table_1d(20, 8, scale=scale))  # time: scaled
    assert torch.equal(three[..., 8:], plain[..., 8:])  # rows and columns: untouched
    torch.testing.assert_close(three[10, 0, 0], sincos_table_3d(7, 3, 4, 16)[6, 0, 0])  # frame 10 of 20 at 0.6 = frame 6


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, float("nan"), float("inf"), "0.5", True, None])
def test_a_bad_position_scale_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="sincos_table_1d: scale must be a finite number > 0"):
        sincos_table_1d(4, 8, scale=bad)
    with pytest.raises(ValueError, match="sincos_table_3d: time_scale must be a finite number > 0"):
        sincos_table_3d(4, 2, 2, 12, time_scale=bad)


def test_position_table_refuses_more_positions_than_it_holds():
    frozen = PositionTable(8, 16)
    torch.testing.assert_close(frozen(5), sincos_table_1d(5, 16))
    assert not list(frozen.parameters())
    learned = PositionTable(8, 16, learned=True)
    assert learned(8).requires_grad and learned(8).shape == (8, 16)
    with pytest.raises(ValueError, match="holds 8 positions; got length=9"):
        frozen(9)


def test_rope_scores_depend_only_on_the_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)

    def score(m, n):
        rq = apply_rope(q[None], torch.tensor([float(m)]))
        rk = apply_rope(k[None], torch.tensor([float(n)]))
        return (rq * rk).sum().item()

    assert score(3, 1) == pytest.approx(score(10, 8))
    assert score(100, 97) == pytest.approx(score(3, 0))  # far beyond any training length
    assert score(3, 1) != pytest.approx(score(3, 2))
    x = torch.randn(2, 3, 5, 8)
    out = apply_rope(x, torch.arange(5.0))
    assert out.shape == x.shape
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths
    torch.testing.assert_close(out[..., 0, :], x[..., 0, :])  # position 0 is not rotated
    with pytest.raises(ValueError, match="even d"):
        apply_rope(torch.randn(5, 7), torch.arange(5.0))
    with pytest.raises(ValueError, match="N=5"):
        apply_rope(x, torch.arange(4.0))


def test_relative_position_bias_depends_on_the_offset_and_fits_any_length():
    bias = RelativePositionBias(heads=2, num_buckets=8, max_distance=16)
    assert torch.all(bias(5) == 0)  # zero-init: no bias at the start
    torch.nn.init.normal_(bias.bias.weight)
    table = bias(40)
    assert table.shape == (2, 40, 40)
    torch.testing.assert_close(table[:, 3, 5], table[:, 20, 22])  # same offset, same bias
    assert not torch.equal(table[:, 3, 5], table[:, 5, 3])  # before and after differ
    buckets = bias.bucket(torch.arange(-100, 101))
    assert buckets.min() >= 0 and buckets.max() < 8
    assert bias.bucket(torch.tensor([30])) == bias.bucket(torch.tensor([100]))  # far offsets share a bucket
