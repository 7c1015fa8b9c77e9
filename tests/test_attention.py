import pytest
import torch

from vdmcourse.nn.attention import (
    TIME_POSITIONS,
    FullAttention,
    SpatialAttention,
    TemporalAttention,
    attention,
    causal_mask,
    frame_mask,
    naive_attention,
    padding_mask,
    window_mask,
)

B, T, H, W, D, HEADS = 2, 6, 3, 2, 16, 2
TIME_MODULES = (TemporalAttention, FullAttention)


def grid(frames=T, seed=0, dtype=torch.float64):
    return torch.randn(B, frames, H, W, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def build(cls, seed=0, **options):
    torch.manual_seed(seed)
    return cls(D, HEADS, **options).double()


def test_package_attention_equals_naive_attention_in_float64():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(3, 2, 7, 7, generator=g) < 0.6
    mask |= torch.eye(7, dtype=torch.bool)  # every query keeps a key
    bias = torch.randn(2, 7, 7, generator=g, dtype=torch.float64)
    for kwargs in ({}, {"mask": mask}, {"bias": bias}, {"mask": mask, "bias": bias}, {"mask": causal_mask(7)}):
        torch.testing.assert_close(attention(q, k, v, **kwargs), naive_attention(q, k, v, **kwargs), rtol=1e-12, atol=1e-12)


def test_naive_attention_is_the_formula_and_its_weights_are_distributions():
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(4, 3, generator=g), torch.randn(5, 3, generator=g), torch.randn(5, 2, generator=g)
    out, weights = naive_attention(q, k, v, mask=causal_mask(5)[:4], return_weights=True)
    expected_weights = torch.softmax((q @ k.T / 3**0.5).masked_fill(~causal_mask(5)[:4], float("-inf")), dim=-1)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected_weights @ v)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    assert torch.all(weights[0, 1:] == 0)  # query 0 only sees key 0


def test_attention_rejects_bad_shapes_and_masks():
    q = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"\(N, M\) = \(4, 4\)"):
        attention(q, q, q, mask=torch.ones(2, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="True = may attend"):
        attention(q, q, q, mask=torch.ones(4, 4))
    with pytest.raises(ValueError, match="all-False row"):
        attention(q, q, q, mask=torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="same leading axes"):
        attention(q, torch.randn(2, 4, 7), q)


def test_masks_are_exactly_what_they_say():
    t, s = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    assert torch.equal(causal_mask(7), s <= t)
    assert torch.equal(window_mask(7, 2), (t - s).abs() <= 2)
    assert torch.equal(window_mask(7, 0), torch.eye(7, dtype=torch.bool))
    assert torch.equal(frame_mask(7, causal=True, window=2), (s <= t) & (t - s <= 2))
    assert frame_mask(7) is None
    assert torch.equal(padding_mask(torch.tensor([3, 1]), 4), torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]]).bool())
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 4\]"):
        padding_mask(torch.tensor([5]), 4)
    with pytest.raises(ValueError, match="window"):
        window_mask(4, -1)


@pytest.mark.parametrize("cls", (SpatialAttention, *TIME_MODULES))
def test_modules_keep_the_layout(cls):
    x = grid()
    assert build(cls)(x).shape == x.shape


@pytest.mark.parametrize("cls", TIME_MODULES)
@pytest.mark.parametrize("time_position", TIME_POSITIONS)
@pytest.mark.parametrize("window", [None, 1])
def test_causal_modules_ignore_future_frames(cls, time_position, window):
    options = {"max_frames": T} if time_position == "learned" else {}
    module = build(cls, causal=True, window=window, time_position=time_position, **options)
    if time_position == "relative":
        torch.nn.init.normal_(module.relative_bias.bias.weight)
    x = grid()
    out = module(x)
    k = 3
    perturbed = x.clone()
    perturbed[:, k] += torch.randn_like(perturbed[:, k])
    changed = module(perturbed)
    torch.testing.assert_close(changed[:, :k], out[:, :k], rtol=0, atol=1e-12)
    assert not torch.allclose(changed[:, k], out[:, k])


@pytest.mark.parametrize("cls", TIME_MODULES)
def test_a_window_limits_which_frames_an_output_depends_on(cls):
    module = build(cls, window=1)
    x = grid()
    k = 2
    perturbed = x.clone()
    perturbed[:, k] += 1.0
    moved = (module(perturbed) - module(x)).abs().amax(dim=(0, 2, 3, 4))  # (T,)
    assert torch.equal(moved > 1e-12, (torch.arange(T) - k).abs() <= 1)


def test_spatial_attention_never_mixes_frames():
    module = build(SpatialAttention)
    x = grid()
    perturbed = x.clone()
    perturbed[:, 2] += 1.0
    moved = (module(perturbed) - module(x)).abs().amax(dim=(0, 2, 3, 4))
    assert torch.equal(moved > 0, torch.arange(T) == 2)


@pytest.mark.parametrize("cls", TIME_MODULES)
def test_without_time_position_permuting_frames_permutes_the_output(cls):
    module = build(cls, time_position=None)
    x = grid()
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(module(x[:, order]), module(x)[:, order])


@pytest.mark.parametrize("cls", TIME_MODULES)
@pytest.mark.parametrize("time_position", ["rope", "sincos", "relative", "learned"])
def test_with_time_position_permuting_frames_changes_the_output(cls, time_position):
    options = {"max_frames": T} if time_position == "learned" else {}
    module = build(cls, time_position=time_position, **options)
    if time_position == "relative":
        torch.nn.init.normal_(module.relative_bias.bias.weight)
    x = grid()
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    assert not torch.allclose(module(x[:, order]), module(x)[:, order], atol=1e-6)


@pytest.mark.parametrize("time_position", ["rope", "sincos", "relative"])
def test_on_the_fly_time_positions_take_more_frames_than_seen_in_training(time_position):
    module = build(TemporalAttention, time_position=time_position)
    assert module(grid(frames=4)).shape[1] == 4
    assert module(grid(frames=40)).shape[1] == 40


@pytest.mark.parametrize("cls", TIME_MODULES)
def test_a_learned_frame_table_refuses_more_frames_than_it_holds(cls):
    module = build(cls, time_position="learned", max_frames=4)
    assert module(grid(frames=4)).shape[1] == 4
    with pytest.raises(ValueError, match="holds 4 positions; got length=6"):
        module(grid())


@pytest.mark.parametrize("cls", TIME_MODULES)
def test_padded_clips_give_the_same_result_as_the_short_clips(cls):
    module = build(cls, causal=False)
    x = grid()
    lengths = torch.tensor([T, 4])
    out = module(x, lengths=lengths)
    short = module(x[1:, :4])
    torch.testing.assert_close(out[1, :4], short[0])
    assert torch.all(out[1, 4:] == 0)
    torch.testing.assert_close(out[0], module(x[:1])[0])


@pytest.mark.parametrize("cls", TIME_MODULES)
def test_an_explicit_frame_mask_is_combined_with_the_options(cls):
    module = build(cls)
    x = grid()
    identity = torch.eye(T, dtype=torch.bool)  # each frame sees only itself: per-frame processing
    out = module(x, mask=identity)
    per_frame = torch.cat([module(x[:, i : i + 1]) for i in range(T)], dim=1)
    torch.testing.assert_close(out, per_frame)
    with pytest.raises(ValueError, match=r"mask must have shape \(T, T\)"):
        module(x, mask=torch.ones(T + 1, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\)"):
        module(x, lengths=torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("cls", (SpatialAttention, *TIME_MODULES))
def test_zero_init_adds_nothing_at_init(cls):
    module = build(cls, zero_init=True)
    assert torch.all(module(grid()) == 0)


@pytest.mark.parametrize("cls", (SpatialAttention, *TIME_MODULES))
def test_gradients_reach_every_parameter(cls):
    module = build(cls, time_position="relative") if cls is not SpatialAttention else build(cls)
    if cls is not SpatialAttention:
        torch.nn.init.normal_(module.relative_bias.bias.weight)
    module(grid()).square().sum().backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_package_temporal_attention_equals_a_hand_written_one():
    module = build(TemporalAttention, time_position=None)
    x = grid()
    tokens = x.permute(0, 2, 3, 1, 4).reshape(B * H * W, T, D)
    q, k, v = module.qkv(tokens).split(D, dim=-1)
    heads = lambda z: z.reshape(B * H * W, T, HEADS, D // HEADS).transpose(1, 2)  # noqa: E731
    out = naive_attention(heads(q), heads(k), heads(v)).transpose(1, 2).reshape(B * H * W, T, D)
    expected = module.out(out).reshape(B, H, W, T, D).permute(0, 3, 1, 2, 4)
    torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize("cls", (SpatialAttention, *TIME_MODULES))
def test_bad_input_gets_a_clear_error(cls):
    with pytest.raises(ValueError, match="dim=10 must be divisible by heads=3"):
        cls(10, 3)
    module = cls(D, HEADS)
    with pytest.raises(ValueError, match=r"\(B, T, H, W, D\) with D=16; got \(2, 6, 16, 3, 2\).*channels last"):
        module(torch.randn(2, 6, 16, 3, 2))
    with pytest.raises(ValueError, match=r"D=16; got \(2, 3, 2, 16\)"):
        module(torch.randn(2, 3, 2, 16))
    with pytest.raises(TypeError, match="torch.Tensor"):
        module([1.0])


def test_time_options_are_checked():
    with pytest.raises(ValueError, match="time_position must be one of"):
        TemporalAttention(D, HEADS, time_position="alibi")
    with pytest.raises(ValueError, match="max_frames"):
        TemporalAttention(D, HEADS, time_position="learned")
    with pytest.raises(ValueError, match="even head width"):
        TemporalAttention(6, 2, time_position="rope")
    with pytest.raises(ValueError, match="window"):
        FullAttention(D, HEADS, window=-2)
