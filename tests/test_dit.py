import dataclasses
import math

import pytest
import torch
from torch import nn

from vdmcourse.diffusion import training_loss
from vdmcourse.nn.dit import (
    LAYOUTS,
    DiTBlock,
    TokenLayout,
    VideoDiT,
    VideoDiTConfig,
    _per_token,
    bucket_batch_sizes,
    patchify,
    rope_3d,
    token_grid,
    unpatchify,
)
from vdmcourse.nn.embeddings import apply_rope
from vdmcourse.pretrained import build_model, save_checkpoint

from helpers import seeded, wake_up

SMALL = VideoDiTConfig(patch=(1, 4, 4), dim=48, depth=2, heads=4, frames=4, image_size=16)


def clips(batch=2, frames=4, channels=1, height=16, width=16, seed=0):
    return torch.randn(batch, frames, channels, height, width, generator=seeded(seed))


def times(batch=2, seed=1):
    return torch.rand(batch, generator=seeded(seed))


def dit(**changes):
    return VideoDiT(dataclasses.replace(SMALL, **changes))


# Patches.


@pytest.mark.parametrize("patch", [(1, 1, 1), (1, 4, 4), (2, 4, 4), (2, 2, 8), (4, 8, 2)])
def test_patchify_then_unpatchify_is_exactly_the_identity(patch):
    x = clips(frames=8, channels=3, height=16, width=24)
    tokens = patchify(x, patch)
    assert tokens.shape == (2, 8 // patch[0], 16 // patch[1], 24 // patch[2], patch[0] * patch[1] * patch[2] * 3)
    assert torch.equal(unpatchify(tokens, patch, 3), x)


def test_a_token_holds_its_own_tubelet():
    x = clips(frames=4, channels=2, height=8, width=8)
    tokens = patchify(x, (2, 4, 4))  # (2, 2, 2, 2, 64)
    tubelet = x[1, 2:4, :, 4:8, 0:4]  # frames 2-3, rows 4-7, columns 0-3: token (1, 1, 0)
    assert torch.equal(tokens[1, 1, 1, 0], tubelet.permute(0, 2, 3, 1).reshape(-1))  # order (pt, ph, pw, c)


def test_sizes_not_divisible_by_the_patch_are_refused_naming_the_numbers():
    with pytest.raises(ValueError, match="H=18 is not a multiple of 4"):
        patchify(clips(height=18), (1, 4, 4))
    with pytest.raises(ValueError, match="T=5 is not a multiple of 2"):
        dit(patch=(2, 4, 4))(clips(frames=5), times())


# Shapes, pixels and latents.


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("frames, height, width", [(1, 16, 16), (4, 16, 16), (6, 8, 24), (3, 32, 16)])
def test_output_has_the_input_shape_for_any_duration_and_size(layout, frames, height, width):
    model = wake_up(dit(layout=layout))
    x = clips(frames=frames, height=height, width=width)
    out = model(x, times(), torch.tensor([3, 7]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_runs_on_latents_with_any_channel_count():
    model = wake_up(dit(channels=4, patch=(1, 2, 2)))
    latents = clips(channels=4, height=8, width=8)  # (B, T, C, H, W), as a VAE's encoder gives
    assert model(latents, times()).shape == latents.shape


# adaLN-Zero.


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_untrained_model_outputs_exactly_zero(layout):
    model = dit(layout=layout, position="sincos+rope")
    out = model(clips(), times(), torch.tensor([1, 2]))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("kinds", [("full",), ("spatial",), ("temporal",), ("spatial", "temporal")])
def test_every_block_is_the_identity_at_init(kinds):
    model = dit()
    block = DiTBlock(48, 4, kinds, cond_dim=48, qk_norm=True, rope=True)
    model.blocks[0] = block
    model.initialize_weights()
    tokens = torch.randn(2, 4 * 4 * 4, 48)
    layout = TokenLayout.build([(4, 4, 4)], packed=False, causal=False, device="cpu")
    assert torch.equal(block(tokens, torch.randn(2, 48), layout), tokens)


def test_init_zeroes_the_modulations_and_final_layer_and_nothing_else_of_the_blocks():
    model = dit()
    zero = {name for name, p in model.named_parameters() if not p.any()}
    modulation = {name for name in zero if "adaLN_modulation" in name}
    assert modulation == {name for name, _ in model.named_parameters() if "adaLN_modulation" in name}
    assert {"final.linear.weight", "final.linear.bias"} <= zero
    weights = [name for name in zero if name.endswith("weight") and "adaLN" not in name and "final" not in name]
    assert weights == []


def test_six_modulation_vectors_per_dit_block_and_nine_with_spatial_then_temporal():
    assert dit().blocks[0].adaLN_modulation[-1].out_features == 6 * 48
    assert dit(layout="stdit").blocks[0].adaLN_modulation[-1].out_features == 9 * 48


def test_the_block_norm_has_no_affine_parameters_and_modulation_acts_as_one_plus_scale():
    block = DiTBlock(8, 2, ("full",), cond_dim=4)
    assert not list(block.norm.parameters())
    with torch.no_grad():
        block.adaLN_modulation[-1].bias.zero_()
        block.adaLN_modulation[-1].bias[2 * 8 : 3 * 8] = 1.0  # gate of the attention branch only
    tokens = torch.randn(1, 5, 8)
    layout = TokenLayout.build([(5, 1, 1)], packed=False, causal=False, device="cpu")
    expected = tokens + block.attentions[0](block.norm(tokens), "full", layout)  # shift = scale = 0
    torch.testing.assert_close(block(tokens, torch.zeros(1, 4), layout), expected)


def test_gradients_reach_every_parameter_once_the_zero_layers_wake_up():
    model = dit(context_dim=8)
    context = torch.randn(2, 3, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # Step 1 moves only the final Linear, step 2 the gates, step 3 reaches everything behind them.
    for _ in range(3):
        optimizer.zero_grad()
        (model(clips(), times(), torch.tensor([1, 2]), context=context) - clips(seed=5)).pow(2).mean().backward()
        optimizer.step()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


# Clips never mix.


@pytest.mark.parametrize("layout", LAYOUTS)
def test_changing_one_clip_of_the_batch_leaves_the_others_alone(layout):
    # The seed's bug: (B, N, D) into nn.MultiheadAttention without batch_first attends over the batch.
    model = wake_up(dit(layout=layout)).eval()
    x = clips(batch=3)
    changed = x.clone()
    changed[1] = torch.randn_like(x[1])
    t, labels = times(3), torch.tensor([1, 2, 3])
    before, after = model(x, t, labels), model(changed, t, labels)
    torch.testing.assert_close(before[[0, 2]], after[[0, 2]], rtol=0, atol=1e-6)
    assert not torch.allclose(before[1], after[1])


def test_the_batch_leak_probe_catches_attention_over_the_batch_axis():
    class SeedAttention(nn.Module):  # the seed chapter's call: no batch_first
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(48, 4)

        def forward(self, x, kind, layout):
            return self.mha(x, x, x)[0]

    model = wake_up(dit())
    model.blocks[0].attentions[0] = SeedAttention()
    x = clips(batch=3)
    changed = x.clone()
    changed[1] = torch.randn_like(x[1])
    leaked = (model(x, times(3)) - model(changed, times(3)))[[0, 2]].abs().max()
    assert leaked > 1e-3


# Positions.


@pytest.mark.parametrize("position", ["sincos", "rope", "sincos+rope"])
def test_permuting_frames_changes_the_output_with_positions(position):
    model = wake_up(dit(position=position)).eval()
    x, order = clips(batch=1), torch.tensor([2, 0, 3, 1])
    out, permuted = model(x, times(1)), model(x[:, order], times(1))
    assert not torch.allclose(permuted, out[:, order], atol=1e-4)


def test_without_positions_permuting_frames_just_permutes_the_output():
    model = wake_up(dit(position=None)).eval()
    x, order = clips(batch=1), torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(model(x[:, order], times(1)), model(x, times(1))[:, order], rtol=0, atol=1e-5)


def test_rope_3d_scores_depend_only_on_the_offset_between_positions():
    q, k = torch.randn(1, 12), torch.randn(1, 12)
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 7.0]])
    shifted = a + torch.tensor([5.0, -3.0, 11.0])
    score = (rope_3d(q, a[:1]) * rope_3d(k, a[1:])).sum()
    torch.testing.assert_close((rope_3d(q, shifted[:1]) * rope_3d(k, shifted[1:])).sum(), score)


def test_rope_3d_rotates_each_channel_group_by_its_own_axis():
    x = torch.randn(5, 12)
    positions = torch.randn(5, 3)
    out = rope_3d(x, positions)
    torch.testing.assert_close(out[:, :4], apply_rope(x[:, :4], positions[:, 0]))  # frame
    torch.testing.assert_close(out[:, 4:8], apply_rope(x[:, 4:8], positions[:, 1]))  # row
    torch.testing.assert_close(out[:, 8:], apply_rope(x[:, 8:], positions[:, 2]))  # column


def test_the_precomputed_rope_tables_equal_rope_3d():
    layout = TokenLayout.build([(3, 2, 4), (2, 5, 1)], packed=True, causal=False, device="cpu")
    x = torch.randn(2, 4, layout.length, 24)
    cos, sin, swap = layout.rope_tables(24)
    torch.testing.assert_close(x * cos + x[..., swap] * sin, rope_3d(x, layout.positions))


@pytest.mark.parametrize("base", [10000.0, 100.0, 20.0])
def test_the_precomputed_rope_tables_equal_rope_3d_at_any_base(base):
    layout = TokenLayout.build([(3, 2, 4)], packed=False, causal=False, device="cpu")
    x = torch.randn(2, 4, layout.length, 24)
    cos, sin, swap = layout.rope_tables(24, base)
    torch.testing.assert_close(x * cos + x[..., swap] * sin, rope_3d(x, layout.positions, base=base))
    q, k = torch.randn(1, 24), torch.randn(1, 24)
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 7.0]])
    shifted = a + torch.tensor([5.0, -3.0, 11.0])
    torch.testing.assert_close((rope_3d(q, shifted[:1], base=base) * rope_3d(k, shifted[1:], base=base)).sum(),
                               (rope_3d(q, a[:1], base=base) * rope_3d(k, a[1:], base=base)).sum())


def test_the_model_rotates_by_its_configured_rope_base():
    # The same weights with another base give another output (the base reaches attention), and
    # the tables of both bases live side by side in one layout's cache.
    x, t = clips(batch=1), times(1)
    model = wake_up(dit(position="rope")).eval()
    other = wake_up(dit(position="rope", rope_base=20.0)).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (model(x, t) - other(x, t)).abs().max() > 1e-3
        torch.testing.assert_close(other(x, t), other(x, t))
    with pytest.raises(ValueError, match="rope_base must be a number > 1"):
        dataclasses.replace(SMALL, rope_base=1.0)


def test_a_grid_beyond_max_grid_is_refused_naming_the_numbers():
    model = dit(max_grid=(4, 4, 4))
    model(clips(), times())
    with pytest.raises(ValueError, match=r"8x4x4 token grid, beyond config.max_grid = 4x4x4"):
        model(clips(frames=8), times())


# Causality.


@pytest.mark.parametrize("layout", LAYOUTS)
def test_causal_model_output_before_frame_k_ignores_frame_k_and_later(layout):
    model = wake_up(dit(layout=layout, causal=True)).eval()
    x, k = clips(frames=5), 3
    changed = x.clone()
    changed[:, k:] = torch.randn_like(x[:, k:])
    before, after = model(x, times()), model(changed, times())
    torch.testing.assert_close(before[:, :k], after[:, :k], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, k:], after[:, k:])


# Variable size: packing and buckets.

SIZES = [(4, 16, 16), (2, 8, 24), (6, 12, 8)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("causal", [False, True])
def test_every_clip_of_a_packed_batch_gives_what_it_gives_alone(layout, causal):
    model = wake_up(dit(layout=layout, causal=causal, position="sincos+rope")).eval()
    videos = [torch.randn(t, 1, h, w, generator=seeded(i)) for i, (t, h, w) in enumerate(SIZES)]
    t, labels = times(3), torch.tensor([4, 10, 7])
    packed = model.forward_packed(videos, t, labels)
    for i, video in enumerate(videos):
        alone = model(video[None], t[i : i + 1], labels[i : i + 1])[0]
        torch.testing.assert_close(packed[i], alone, rtol=1e-5, atol=1e-5)


# Position interpolation in time (sampling clips longer than any trained).


@pytest.mark.parametrize("position", ["sincos", "rope", "sincos+rope", None])
def test_time_scale_one_is_the_model_as_it_was_and_another_scale_moves_only_positioned_models(position):
    model = wake_up(dit(position=position)).eval()
    x, t, labels = clips(frames=6), times(), torch.tensor([3, 10])
    with torch.no_grad():
        plain = model(x, t, labels)
        assert torch.equal(model(x, t, labels, time_scale=1.0), plain)
        assert torch.equal(model.forward_packed(list(x), t, labels, time_scale=1.0)[0], model.forward_packed(list(x), t, labels)[0])
        squeezed = model(x, t, labels, time_scale=0.6)
    if position is None:
        assert torch.equal(squeezed, plain)  # no positions, nothing to scale
    else:
        assert not torch.allclose(squeezed, plain, atol=1e-4)


def test_time_scale_multiplies_the_frame_positions_and_nothing_else():
    plain = TokenLayout.build([(5, 2, 3)], packed=False, causal=False, device="cpu")
    squeezed = TokenLayout.build([(5, 2, 3)], packed=False, causal=False, device="cpu", time_scale=0.6)
    torch.testing.assert_close(squeezed.positions[:, 0], 0.6 * plain.positions[:, 0])
    assert torch.equal(squeezed.positions[:, 1:], plain.positions[:, 1:]) and squeezed.time_scale == 0.6
    q = torch.randn(2, 4, 30, 12)
    cos, sin, swap = squeezed.rope_tables(12)  # the fast path rotates by the scaled frames, as rope_3d does
    torch.testing.assert_close(q * cos + q[..., swap] * sin, rope_3d(q, squeezed.positions))


def test_time_scale_keeps_packing_exact_and_is_refused_when_bad():
    model = wake_up(dit(position="sincos+rope")).eval()
    videos = [torch.randn(t, 1, h, w, generator=seeded(i)) for i, (t, h, w) in enumerate(SIZES)]
    t = times(3)
    packed = model.forward_packed(videos, t, time_scale=0.5)
    for i, video in enumerate(videos):
        torch.testing.assert_close(packed[i], model(video[None], t[i : i + 1], time_scale=0.5)[0], rtol=1e-5, atol=1e-5)
    for bad in (0.0, -1.0, float("nan"), "0.6"):
        with pytest.raises(ValueError, match="time_scale must be a finite number > 0"):
            model(clips(), times(), time_scale=bad)


def test_a_packing_mask_that_lets_clips_see_each_other_breaks_the_equivalence(monkeypatch):
    model = wake_up(dit()).eval()
    videos = [torch.randn(t, 1, h, w, generator=seeded(i)) for i, (t, h, w) in enumerate(SIZES)]
    honest = TokenLayout.mask

    def see_everything(self, kind):
        mask = honest(self, kind)
        return None if mask is None else torch.ones_like(mask)

    monkeypatch.setattr(TokenLayout, "mask", see_everything)
    packed = model.forward_packed(videos, times(3))
    alone = model(videos[0][None], times(3)[:1])[0]
    assert not torch.allclose(packed[0], alone, atol=1e-4)


def test_packed_mask_is_block_diagonal():
    layout = TokenLayout.build([(1, 2, 2), (2, 1, 1)], packed=True, causal=False, device="cpu")
    mask = layout.mask("full")
    expected = torch.block_diag(torch.ones(4, 4), torch.ones(2, 2)).bool()
    assert torch.equal(mask, expected)
    temporal = layout.mask("temporal")
    assert temporal[4, 5] and not temporal[0, 1] and not temporal[0, 4]


def test_packed_tokens_whose_lengths_do_not_add_up_are_refused():
    model = dit()
    layout = TokenLayout.build([(2, 4, 4), (1, 2, 2)], packed=True, causal=False, device="cpu")
    with pytest.raises(ValueError, match=r"2\*4\*4 \+ 1\*2\*2 = 36 tokens; got 30"):
        model.forward_tokens(torch.randn(1, 30, 48), torch.randn(2, 48), layout)


def test_bucket_batch_sizes_keep_tokens_per_batch_about_constant():
    sizes = [(10, 32, 32), (6, 24, 24), (12, 32, 64)]
    batches = bucket_batch_sizes(sizes, (2, 4, 4), tokens_per_batch=2560)
    assert batches == {(10, 32, 32): 8, (6, 24, 24): 24, (12, 32, 64): 3}
    with pytest.raises(ValueError, match="W=30 is not a multiple of 4"):
        bucket_batch_sizes([(10, 32, 30)], (2, 4, 4), 100)


# Conditioning.


def test_labels_and_the_null_row_change_the_output():
    model = wake_up(dit()).eval()
    x, t = clips(), times()
    assert model.label_embed.table.num_embeddings == 11  # ten digits and the null label
    torch.testing.assert_close(model(x, t), model(x, t, torch.tensor([10, 10])))
    assert not torch.allclose(model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([10, 10])))


def test_label_std_scales_only_the_label_table_at_init():
    # DiT draws its label rows with std 0.02; label_std=1 (ADM's) makes them 50x louder and
    # leaves every other weight, and the random stream, as it was.
    def build(std):
        torch.manual_seed(0)
        return VideoDiT(dataclasses.replace(SMALL, label_std=std))

    quiet, loud = build(0.02), build(1.0)
    torch.testing.assert_close(loud.label_embed.table.weight, 50 * quiet.label_embed.table.weight)
    assert 0.9 < loud.label_embed.table.weight.std().item() < 1.1
    for (name, a), (_, b) in zip(quiet.named_parameters(), loud.named_parameters()):
        if name != "label_embed.table.weight":
            assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="label_std must be a number > 0"):
        VideoDiTConfig(label_std=0)


# U-ViT's long skips and final convolution (opt-in).


def test_uvit_options_off_build_the_plain_dit_bit_for_bit():
    def build(**changes):
        torch.manual_seed(0)
        return dit(**changes)

    plain, default = build(), build(long_skips=False, final_conv=False)
    assert plain.skip_fuse is None and plain.out_conv is None
    for (name, a), (_, b) in zip(plain.state_dict().items(), default.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_uvit_options_start_as_nothing(depth):
    # The untrained model still outputs exactly 0; with every zero layer woken except the new
    # ones, the skips ([I | 0]) and the zero residual convolution change nothing.
    model = dit(depth=depth, long_skips=True, final_conv=True)
    out = model(clips(), times(), torch.tensor([1, 2]))
    assert torch.equal(out, torch.zeros_like(out))
    assert len(model.skip_fuse) == depth // 2
    plain = dit(depth=depth)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(("skip_fuse", "out_conv"))})
    wake_up(plain)
    model.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(model(clips(), times(), torch.tensor([1, 2])), plain(clips(), times(), torch.tensor([1, 2])),
                               rtol=0, atol=0)


def test_long_skips_join_block_i_to_block_depth_minus_one_minus_i():
    model = wake_up(dit(depth=4, long_skips=True)).eval()
    seen = []
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda module, args, out, i=i: seen.append(("block", i, out)))
    for j, fuse in enumerate(model.skip_fuse):
        fuse.register_forward_hook(lambda module, args, out, j=j: seen.append(("fuse", j, args[0])))
    model(clips(), times())
    order = [(kind, i) for kind, i, _ in seen]
    assert order == [("block", 0), ("block", 1), ("fuse", 0), ("block", 2), ("fuse", 1), ("block", 3)]
    outputs = {i: out for kind, i, out in seen if kind == "block"}
    fused = {j: arg for kind, j, arg in seen if kind == "fuse"}
    assert torch.equal(fused[0][..., 48:], outputs[1])  # block 2 hears block 1
    assert torch.equal(fused[1][..., 48:], outputs[0])  # block 3 hears block 0


def test_final_conv_acts_on_each_frame_alone():
    model = wake_up(dit(final_conv=True)).eval()
    video = clips()
    changed = video.clone()
    changed[:, 2] += 1.0
    torch.testing.assert_close(model.smooth(changed)[:, [0, 1, 3]], model.smooth(video)[:, [0, 1, 3]], rtol=0, atol=0)
    assert not torch.allclose(model.smooth(changed)[:, 2], model.smooth(video)[:, 2] + 1.0)


def parameters_without_gradient_after_training(model):
    """Three SGD steps towards a fixed target; the names of the parameters whose last gradient is missing or zero."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (model(clips(), times(), torch.tensor([1, 2])) - clips(seed=5)).pow(2).mean().backward()
        optimizer.step()
    return [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_uvit_options_learn_and_keep_packing_exact(layout):
    model = dit(layout=layout, depth=3, long_skips=True, final_conv=True)
    assert parameters_without_gradient_after_training(model) == []
    model.eval()
    videos = [torch.randn(t, 1, h, w, generator=seeded(i)) for i, (t, h, w) in enumerate(SIZES)]
    packed = model.forward_packed(videos, times(3), torch.tensor([4, 10, 7]))
    for i, video in enumerate(videos):
        torch.testing.assert_close(packed[i], model(video[None], times(3)[i : i + 1], torch.tensor([[4], [10], [7]][i]))[0],
                                   rtol=1e-5, atol=1e-5)


def test_uvit_options_are_refused_when_malformed():
    with pytest.raises(ValueError, match="long_skips must be True or False"):
        VideoDiTConfig(long_skips=1)
    with pytest.raises(ValueError, match="need depth >= 2; got depth=1"):
        VideoDiTConfig(depth=1, long_skips=True)


# The motion stream: the clip cut a second time into long tubelets, in the same attention.

MOTION = {"motion_patch": (4, 8, 8)}  # SMALL's 4 frames in one token, 8x8 squares: 4 motion tokens a 16x16 clip


def test_a_motion_stream_starts_as_nothing_and_adds_its_tubelets_tokens():
    model = dit(**MOTION)
    out = model(clips(), times(), torch.tensor([1, 2]))
    assert torch.equal(out, torch.zeros_like(out))
    assert model.tokens_per_clip(4, 16, 16) == 4 * 4 * 4 + 4
    assert model.tokens_per_clip(6, 16, 16) == 6 * 4 * 4 + 2 * 4  # padded in time to 8 frames: two motion tubelets
    assert model.tokens_per_clip(3, 16, 16) == 3 * 4 * 4  # shorter than a motion tubelet: none


def test_motion_tokens_sit_at_their_tubelets_centres_in_main_token_units():
    # Main tokens 1x4x4 (centres at frames 0..3, rows 1.5, 5.5, ... in pixels); a 4x8x8 tubelet's centre is
    # frame 1.5 and rows 3.5 / 11.5 in pixels: in main-token units frame 1.5, rows (3.5 - 1.5) / 4 = 0.5 and 2.5.
    _, positions = dit(**MOTION)._motion_tokens(clips(), 1.0)
    expected = torch.tensor([[1.5, 0.5, 0.5], [1.5, 0.5, 2.5], [1.5, 2.5, 0.5], [1.5, 2.5, 2.5]])
    torch.testing.assert_close(positions, expected, rtol=0, atol=0)
    _, scaled = dit(**MOTION)._motion_tokens(clips(), 0.5)
    torch.testing.assert_close(scaled, expected * torch.tensor([0.5, 1.0, 1.0]), rtol=0, atol=0)


def test_a_clip_shorter_than_a_motion_tubelet_runs_on_the_main_stream_alone():
    model = wake_up(dit(**MOTION)).eval()
    plain = dit()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("motion_")})
    short = clips(frames=3)
    torch.testing.assert_close(model(short, times(), torch.tensor([1, 2])), plain(short, times(), torch.tensor([1, 2])), rtol=0, atol=0)
    # A full-length clip hears the motion tokens: the same weights give another output.
    assert not torch.allclose(model(clips(), times()), plain(clips(), times()))


def test_each_motion_token_writes_its_whole_tubelet_and_the_padding_is_cut():
    model = dit(**MOTION)
    out = torch.randn(2, 4, 4 * 8 * 8, generator=seeded(3))  # the motion output layer's numbers for 4 tokens
    changed = out.clone()
    changed[:, 1] += 1.0  # the token of rows 0-7, columns 8-15
    video = model._motion_video(out, (3, 1, 16, 16))  # 3 frames kept of the tubelet's 4
    assert video.shape == (2, 3, 1, 16, 16)
    moved = (model._motion_video(changed, (3, 1, 16, 16)) - video) != 0
    assert moved[:, :, :, :8, 8:].all()  # every pixel of every frame of its square...
    moved[:, :, :, :8, 8:] = False
    assert not moved.any()  # ... and nothing else
    torch.testing.assert_close(model._motion_video(out, (4, 1, 16, 16))[:, :3], video, rtol=0, atol=0)


def test_the_motion_stream_learns_with_the_rest_at_any_length():
    model = dit(**MOTION)
    assert parameters_without_gradient_after_training(model) == []
    assert model(clips(frames=6), times()).shape == (2, 6, 1, 16, 16)


@pytest.mark.parametrize("position", ["rope", "sincos+rope"])
def test_a_motion_stream_model_round_trips_through_a_checkpoint(tmp_path, position):
    model = wake_up(dit(position=position, **MOTION)).eval()
    loaded = build_model(save_checkpoint(tmp_path / "dit.safetensors", model)).eval()
    assert loaded.config == model.config and loaded.config.motion_patch == (4, 8, 8)
    torch.testing.assert_close(loaded(clips(), times()), model(clips(), times()), rtol=0, atol=0)


def test_with_motion_means_only_the_motion_stream_sets_each_squares_ink():
    model = wake_up(dit(motion_means=True, **MOTION)).eval()
    with torch.no_grad():
        model.motion_final.linear.weight.zero_()
        model.motion_final.linear.bias.zero_()  # the motion stream silent: what is left is the main stream's
    main = patchify(model(clips(), times()), (1, 4, 4))  # (B, t, h, w, 16): one row per main token
    torch.testing.assert_close(main.mean(-1), torch.zeros(main.shape[:-1]), rtol=0, atol=1e-6)
    assert main.abs().amax() > 0.01
    short = patchify(model(clips(frames=3), times()), (1, 4, 4))  # no motion tokens: the main stream whole
    assert short.mean(-1).abs().amax() > 0.01
    plain = dit(**MOTION)
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(clips(), times()), model(clips(), times()))


def test_a_motion_stream_is_refused_where_it_is_not_built():
    with pytest.raises(ValueError, match=r"motion_patch must be None or a tuple \(mt, mh, mw\) of positive ints; got \[4, 8, 8\]"):
        VideoDiTConfig(motion_patch=[4, 8, 8])
    with pytest.raises(ValueError, match='needs layout="full" \\(got layout=\'stdit\'\\), RoPE in position \\(got position=\'sincos\'\\)'):
        VideoDiTConfig(motion_patch=(4, 8, 8), layout="stdit", position="sincos")
    with pytest.raises(ValueError, match="needs causal=False"):
        VideoDiTConfig(motion_patch=(4, 8, 8), causal=True)
    with pytest.raises(ValueError, match=r"motion_means=True leaves the squares' ink to the motion stream, and there is none"):
        VideoDiTConfig(motion_means=True)
    with pytest.raises(ValueError, match="motion_means must be True or False; got 1"):
        VideoDiTConfig(motion_means=1, motion_patch=(4, 8, 8))
    with pytest.raises(ValueError, match="packing is not built for a model with a motion stream"):
        dit(**MOTION).forward_packed([clips()[0]], times(1))
    with pytest.raises(ValueError, match="does not split into 4x8x8 tubelets: H=12 is not a multiple of 8"):
        dit(**MOTION)(clips(height=12), times())


# One time per frame (diffusion forcing).


@pytest.mark.parametrize("changes", [{}, {"patch": (2, 4, 4)}, MOTION, {"prediction": "x"}])
def test_one_time_per_frame_equal_to_the_clips_time_is_the_clips_time(changes):
    model = wake_up(dit(**changes)).eval()
    per_frame = times()[:, None].expand(2, 4).contiguous()
    torch.testing.assert_close(model(clips(), per_frame, torch.tensor([1, 2])), model(clips(), times(), torch.tensor([1, 2])),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_frames_time_reaches_that_frame_and_what_may_see_it(layout):
    # Causal: frames before k see neither frame k's pixels nor its time, so they keep their output exactly.
    model = wake_up(dit(layout=layout, causal=True)).eval()
    before = torch.full((2, 4), 0.5)
    after = before.clone()
    after[:, 2] = 0.9
    a, b = model(clips(), before), model(clips(), after)
    torch.testing.assert_close(a[:, :2], b[:, :2], rtol=0, atol=0)
    assert not torch.allclose(a[:, 2], b[:, 2])


def test_per_frame_modulation_gives_each_token_its_frames_row_and_motion_tokens_the_mean():
    layout = TokenLayout.build([(2, 1, 3)], packed=False, causal=False, device="cpu")
    params = torch.arange(2 * 2 * 1, dtype=torch.float32).reshape(2, 2, 1)  # (B, t, P)
    torch.testing.assert_close(_per_token(params, layout)[..., 0], torch.tensor([[0.0, 0, 0, 1, 1, 1], [2, 2, 2, 3, 3, 3]]))
    layout = dataclasses.replace(layout, positions=torch.cat([layout.positions, torch.zeros(2, 3)]))  # two motion tokens
    torch.testing.assert_close(_per_token(params, layout)[..., 0], torch.tensor([[0.0, 0, 0, 1, 1, 1, 0.5, 0.5], [2, 2, 2, 3, 3, 3, 2.5, 2.5]]))


def test_per_frame_times_are_refused_when_malformed():
    with pytest.raises(ValueError, match=r"one time per frame \(B, T\) = \(2, 4\); got \(2, 3\)"):
        dit()(clips(), torch.rand(2, 3))
    with pytest.raises(ValueError, match="per-frame times must be equal within each tubelet of pt=2 frames"):
        dit(patch=(2, 4, 4))(clips(), torch.tensor([[0.1, 0.2, 0.3, 0.3], [0.5, 0.5, 0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"t of shape \(B,\) = \(1,\), one time per clip; got \(1, 4\)"):
        dit().forward_packed([clips()[0]], torch.rand(1, 4))


# Clean-clip prediction (JiT).


def test_x_prediction_turns_the_networks_clean_clip_into_the_flow_velocity():
    plain = wake_up(dit())
    x_model = dit(prediction="x")
    x_model.load_state_dict(plain.state_dict())  # the same network, its output read as x0
    x, t, labels = clips(3), torch.tensor([0.01, 0.4, 1.0]), torch.tensor([1, 2, 10])
    x0_hat = plain(x, t, labels)
    velocity = x_model(x, t, labels)
    floor = torch.tensor([0.05, 0.4, 1.0]).view(3, 1, 1, 1, 1)  # t below X_PREDICTION_T_MIN is floored
    torch.testing.assert_close(velocity, (x - x0_hat) / floor)
    # On the flow path x_t = (1 - t) x0 + t eps, a perfect x0 gives exactly the velocity eps - x0.
    eps, t_mid = clips(3, seed=7), torch.tensor([0.3, 0.6, 0.9]).view(3, 1, 1, 1, 1)
    x_t = (1 - t_mid) * x0_hat + t_mid * eps
    torch.testing.assert_close(x_model.to_velocity(x_t, t_mid.flatten(), x0_hat), eps - x0_hat, rtol=1e-5, atol=1e-5)


def test_the_untrained_x_prediction_model_predicts_a_blank_clip():
    x, t = clips(), times()
    torch.testing.assert_close(dit(prediction="x")(x, t), x / t.clamp(min=0.05).view(2, 1, 1, 1, 1))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_x_prediction_keeps_packing_exact(layout):
    model = wake_up(dit(layout=layout, prediction="x")).eval()
    videos = [torch.randn(t, 1, h, w, generator=seeded(i)) for i, (t, h, w) in enumerate(SIZES)]
    t = torch.tensor([0.02, 0.5, 0.9])
    packed = model.forward_packed(videos, t, torch.tensor([4, 10, 7]))
    for i, video in enumerate(videos):
        torch.testing.assert_close(packed[i], model(video[None], t[i : i + 1], torch.tensor([[4], [10], [7]][i]))[0], rtol=1e-5, atol=1e-5)


def test_x_prediction_is_refused_when_malformed_or_off_the_flow_objective():
    with pytest.raises(ValueError, match=r"prediction must be one of \('v', 'x'\); got 'x0'"):
        VideoDiTConfig(prediction="x0")
    from vdmcourse.presets import get_preset

    preset = get_preset("dit-cpu")
    with pytest.raises(ValueError, match="prediction='x'.*trains the 'flow' objective; got objective='eps'"):
        dataclasses.replace(preset, model_config=dataclasses.replace(preset.model_config, prediction="x"), objective="eps")


# Mixed frame noise (PYoCo): a property of the model that training and sampling read.


def test_noise_mix_travels_with_the_checkpoint_and_reaches_training_and_sampling(tmp_path):
    from vdmcourse.diffusion import noise_mix_of, sample

    model = wake_up(dit(noise_mix=2.0)).eval()
    loaded = build_model(save_checkpoint(tmp_path / "mixed.safetensors", model))
    assert loaded.config.noise_mix == 2.0 and noise_mix_of(loaded) == 2.0 and noise_mix_of(dit()) == 0.0
    # The network ignores it: the same weights give the same output with and without.
    plain = dit()
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(plain.eval()(clips(), times()), model(clips(), times()))
    # Training sees noise whose frames correlate 0.8; sampling starts from it (seeded alike).
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    training_loss(model, torch.zeros(64, 4, 1, 16, 16), generator=seeded(0))
    sample(model, (64, 4, 1, 16, 16), steps=1, generator=seeded(0), progress=False)
    hook.remove()
    for x in seen:  # training: x_t = t * eps (x0 = 0), normalised per clip; sampling: x_1 = eps
        eps = x / x.std(dim=(1, 2, 3, 4), keepdim=True)
        assert (eps[:, 0] * eps[:, 3]).mean().item() == pytest.approx(0.8, abs=0.05)


def test_noise_mix_is_refused_when_malformed():
    for bad in (-1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="noise_mix must be a finite number >= 0"):
            VideoDiTConfig(noise_mix=bad)


def test_caption_context_goes_through_cross_attention_and_starts_as_nothing():
    model = dit(context_dim=8)
    wake_up(model)
    with torch.no_grad():
        for block in model.blocks:
            block.cross.out.weight.zero_()
            block.cross.out.bias.zero_()
    x, t, context = clips(), times(), torch.randn(2, 3, 8)
    torch.testing.assert_close(model(x, t, context=context), model(x, t))
    wake_up(model)
    assert not torch.allclose(model(x, t, context=context), model(x, t))
    with pytest.raises(ValueError, match="context_dim"):
        dit()(x, t, context=context)


def test_bad_inputs_are_refused_by_name():
    model = dit()
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\) with C=1"):
        model(torch.randn(2, 1, 16, 16), times())
    with pytest.raises(ValueError, match=r"t of shape \(B,\)"):
        model(clips(), torch.rand(3))
    with pytest.raises(ValueError, match="heads=5 must divide dim=48"):
        VideoDiTConfig(dim=48, heads=5)
    with pytest.raises(ValueError, match="layout must be one of"):
        VideoDiTConfig(layout="diagonal")


# Training and checkpoints.


def test_a_few_steps_of_flow_training_lower_the_loss():
    torch.manual_seed(0)
    model = dit(patch=(2, 4, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x0 = clips(batch=4).clamp(-1, 1)
    losses = []
    for step in range(30):
        loss = training_loss(model, x0, objective="flow", cond=torch.tensor([1, 2, 3, 4]), generator=seeded(step % 3))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path):
    model = wake_up(dit(layout="stdit", max_grid=(8, 8, 8))).eval()
    path = save_checkpoint(tmp_path / "dit.safetensors", model)
    loaded = build_model(path).eval()
    assert loaded.config == model.config
    torch.testing.assert_close(loaded(clips(), times()), model(clips(), times()))


def test_the_shipped_dit_cpu_loads_samples_and_evaluates_through_the_cli(tmp_path, capsys):
    from vdmcourse.cli import main
    from vdmcourse.pretrained import load_pretrained

    model = load_pretrained("dit-cpu", device="cpu")
    assert isinstance(model, VideoDiT) and not model.training
    strip = tmp_path / "dit.png"
    assert main(["sample", "--checkpoint", "dit-cpu", "--out", str(strip), "--num", "2", "--steps", "2"]) == 0
    assert strip.stat().st_size > 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", "dit-cpu", "--num", "65"]) == 0  # 65: the fewest the Fréchet distance takes
    assert "dit-cpu" in capsys.readouterr().out


def test_evaluate_samples_at_the_guidance_it_is_told(monkeypatch, capsys):
    from vdmcourse import cli

    seen = []

    def fake_sample(model, shape, **kwargs):
        seen.append((kwargs["guidance_scale"], kwargs["guidance_interval"]))
        return torch.rand(shape, generator=seeded(0)) * 2 - 1

    monkeypatch.setattr(cli, "sample", fake_sample)
    assert cli.main(["evaluate", "--checkpoint", "dit-cpu", "--num", "65"]) == 0
    assert cli.main(["evaluate", "--checkpoint", "dit-cpu", "--num", "65", "--guidance", "8", "--guidance-interval", "0.2", "1"]) == 0
    assert seen == [(2.0, (0.0, 1.0)), (8.0, [0.2, 1.0])]  # the checkpoint's recorded settings, then the ones asked for
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", "dit-cpu", "--num", "65", "--guidance-interval", "1", "0"]) == 2
    assert "--guidance-interval must be LOW HIGH" in capsys.readouterr().err
    assert cli.main(["evaluate", "--clips", "x.npy", "--guidance", "3"]) == 2
    assert "--clips are scored as they are" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dit-cpu", "dit-x-cpu", "dit-joint-x-cpu", "dit-joint-x2-cpu", "dit-joint-x3-cpu", "dit-joint-x4-cpu"])
def test_the_shipped_dit_is_what_its_preset_trains(name):
    # The manifest's command (`train --preset NAME`) must rebuild the shipped model: a
    # preset changed without retraining (or a checkpoint from another recipe) fails here.
    # The sampler settings the checkpoint records (what `sample` and `evaluate` use) are the preset's.
    from vdmcourse.course import CHECKPOINT_DIR
    from vdmcourse.presets import get_preset
    from vdmcourse.pretrained import load_checkpoint, load_pretrained

    preset = get_preset(name)
    assert load_pretrained(name, device="cpu").config == preset.model_config
    metadata = load_checkpoint(CHECKPOINT_DIR / f"{name}.safetensors").metadata
    assert (metadata["sampler"], metadata["sample_steps"], metadata["guidance_scale"]) == (
        preset.sampler, preset.sample_steps, preset.guidance_scale)
    assert tuple(metadata.get("guidance_interval", (0.0, 1.0))) == preset.guidance_interval


@pytest.mark.parametrize("name", ["dit-x-cpu", "dit-joint-x-cpu", "dit-joint-x2-cpu", "dit-joint-x3-cpu", "dit-joint-x4-cpu"])
def test_the_shipped_clean_clip_dits_denoise_a_real_clip(name, tmp_path):
    from vdmcourse.cli import main
    from vdmcourse.data import MovingMNISTConfig, generate_clips
    from vdmcourse.pretrained import load_pretrained

    model = load_pretrained(name, device="cpu")
    assert model.config.prediction == "x"
    x0 = generate_clips(4, MovingMNISTConfig.cpu(), generator=seeded(3)).video * 2 - 1
    t = torch.full((4,), 0.5)
    x_t = 0.5 * x0 + 0.5 * clips(4, frames=10, height=32, width=32, seed=4)
    with torch.no_grad():
        x0_hat = x_t - 0.5 * model(x_t, t, torch.arange(4))  # the clean clip the network drew
    # Trained, its clean clip is far closer to the real one than the noisy input is.
    assert (x0_hat - x0).pow(2).mean() < 0.1 * (x_t - x0).pow(2).mean()  # about 0.03 shipped; untrained 1.8
    assert main(["sample", "--checkpoint", name, "--out", str(tmp_path / "s.png"), "--num", "2", "--steps", "2"]) == 0


def test_one_frame_tokens_on_the_same_batches_as_dit_joint_x3():
    # dit-joint-x4-cpu changes the tokens only: one frame and an 8x8 square a token (160 a clip
    # where x3's 2x4x4 tubelets make 320), a wider model, the very batches x3 trains on.
    from vdmcourse.presets import get_preset

    x3, x4 = get_preset("dit-joint-x3-cpu"), get_preset("dit-joint-x4-cpu")
    assert (x4.model_config.patch, x4.model_config.dim) == ((1, 8, 8), 96)
    assert dataclasses.replace(x4.model_config, patch=x3.model_config.patch, dim=x3.model_config.dim) == x3.model_config
    assert math.prod(token_grid((10, 1, 32, 32), x4.model_config.patch)) == 160
    draw3, draw4 = x3.batches(), x4.batches()
    for seed in range(4):  # both sizes of the bucketed batches come up
        a, b = draw3(seeded(seed)), draw4(seeded(seed))
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["labels"], b["labels"])
    assert (x4.guidance_scale, x4.guidance_interval, x4.train) == (x3.guidance_scale, x3.guidance_interval, x3.train)
