import pytest
import torch

from vdmcourse.nn.blocks import FeedForward, Full3DBlock, SpatiotemporalBlock

B, T, H, W, D, HEADS, COND = 2, 5, 3, 2, 16, 2, 8
BLOCKS = (SpatiotemporalBlock, Full3DBlock)


def grid(frames=T, seed=0):
    return torch.randn(B, frames, H, W, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def build(cls, seed=0, **options):
    torch.manual_seed(seed)
    return cls(D, HEADS, **options).double()


def wake_up(block):
    """Give the zero-initialised modulation random weights, as training would."""
    torch.manual_seed(1)
    torch.nn.init.normal_(block.modulation[1].weight, std=0.3)
    torch.nn.init.normal_(block.modulation[1].bias, std=0.3)


@pytest.mark.parametrize("cls", BLOCKS)
def test_adaln_zero_block_is_the_identity_at_init(cls):
    block = build(cls, cond_dim=COND)
    x = grid()
    cond = torch.randn(B, COND, dtype=torch.float64)
    assert torch.equal(block(x, cond), x)
    assert all(not norm.elementwise_affine and norm.eps == 1e-6 for norm in block.norms)


@pytest.mark.parametrize("cls", BLOCKS)
def test_adaln_block_modulates_with_the_condition(cls):
    block = build(cls, cond_dim=COND)
    wake_up(block)
    x = grid()
    first, second = torch.randn(2, B, COND, dtype=torch.float64)
    assert not torch.allclose(block(x, first), block(x, second))
    per_frame = first[:, None].expand(B, T, COND)  # the same condition on every frame
    torch.testing.assert_close(block(x, per_frame), block(x, first))


def test_block_is_pre_norm_residual_spatial_then_temporal_then_ffn():
    block = build(SpatiotemporalBlock)
    x = grid()
    h = x + block.spatial(block.norms[0](x))
    h = h + block.temporal(block.norms[1](h))
    h = h + block.ffn(block.norms[2](h))
    torch.testing.assert_close(block(x), h)


def test_adaln_block_follows_dit():
    block = build(SpatiotemporalBlock, cond_dim=COND)
    wake_up(block)
    x, cond = grid(), torch.randn(B, COND, dtype=torch.float64)
    chunks = block.modulation(cond)[:, None, None, None].chunk(9, dim=-1)
    h = x
    for i, branch in enumerate((block.spatial, block.temporal, block.ffn)):
        shift, scale, gate = chunks[3 * i : 3 * i + 3]
        normed = torch.nn.functional.layer_norm(h, (D,), eps=1e-6)
        h = h + gate * branch(normed * (1 + scale) + shift)
    torch.testing.assert_close(block(x, cond), h)


@pytest.mark.parametrize("cls", BLOCKS)
@pytest.mark.parametrize("window", [None, 2])
@pytest.mark.parametrize("adaptive", [False, True])
def test_causal_blocks_ignore_future_frames(cls, window, adaptive):
    block = build(cls, causal=True, window=window, cond_dim=COND if adaptive else None)
    cond = None
    if adaptive:
        wake_up(block)
        cond = torch.randn(B, T, COND, dtype=torch.float64)
    x = grid()
    out = block(x, cond)
    for k in (1, 3):
        perturbed = x.clone()
        perturbed[:, k] += torch.randn_like(perturbed[:, k])
        changed = block(perturbed, cond)
        torch.testing.assert_close(changed[:, :k], out[:, :k], rtol=0, atol=1e-12)
        assert not torch.allclose(changed[:, k], out[:, k])


@pytest.mark.parametrize("cls", BLOCKS)
def test_windowed_block_reaches_only_frames_in_the_window(cls):
    block = build(cls, window=1)
    x = grid()
    perturbed = x.clone()
    perturbed[:, 2] += torch.randn_like(perturbed[:, 2])
    moved = (block(perturbed) - block(x)).abs().amax(dim=(0, 2, 3, 4))
    assert torch.equal(moved > 1e-12, (torch.arange(T) - 2).abs() <= 1)


def test_zero_init_temporal_block_treats_every_frame_as_an_image():
    block = build(SpatiotemporalBlock, zero_init_temporal=True)
    x = grid()
    per_frame = torch.cat([block(x[:, i : i + 1]) for i in range(T)], dim=1)
    torch.testing.assert_close(block(x), per_frame)


@pytest.mark.parametrize("cls", BLOCKS)
@pytest.mark.parametrize("adaptive", [False, True])
def test_gradients_reach_every_parameter(cls, adaptive):
    block = build(cls, cond_dim=COND if adaptive else None, time_position="relative")
    attention = block.temporal if cls is SpatiotemporalBlock else block.attention
    torch.nn.init.normal_(attention.relative_bias.bias.weight)  # zero-initialised: give it a value
    cond = None
    if adaptive:
        wake_up(block)
        cond = torch.randn(B, COND, dtype=torch.float64)
    block(grid(), cond).square().sum().backward()
    for name, parameter in block.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_the_adaln_zero_modulation_gets_gradients_at_init():
    block = build(SpatiotemporalBlock, cond_dim=COND)
    block(grid(), torch.randn(B, COND, dtype=torch.float64)).square().sum().backward()
    assert block.modulation[1].weight.grad.abs().sum() > 0  # so the gates can open


@pytest.mark.parametrize("cls", BLOCKS)
def test_padding_frames_are_never_attended_to(cls):
    block = build(cls)
    x = grid()
    out = block(x, lengths=torch.tensor([T, 3]))
    torch.testing.assert_close(out[1, :3], block(x[1:, :3])[0])


@pytest.mark.parametrize("cls", BLOCKS)
def test_bad_input_gets_a_clear_error(cls):
    plain, adaptive = build(cls), build(cls, cond_dim=COND)
    x = grid()
    with pytest.raises(ValueError, match=r"\(B, T, H, W, D\) with D=16"):
        plain(torch.randn(B, T, D, H, W, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"cond of shape \(B, D_cond\) = \(2, 8\)"):
        adaptive(x, torch.randn(B, COND + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"cond of shape"):
        adaptive(x)
    with pytest.raises(ValueError, match="without cond_dim"):
        plain(x, torch.randn(B, COND, dtype=torch.float64))
    with pytest.raises(ValueError, match="divisible by heads"):
        cls(10, 3)


def test_feed_forward_acts_per_token():
    ffn = FeedForward(8, mlp_ratio=2.0)
    x = torch.randn(3, 4, 8)
    torch.testing.assert_close(ffn(x)[1, 2], ffn(x[1, 2]))
    assert ffn.net[0].out_features == 16
