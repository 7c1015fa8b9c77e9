"""Lesson 07 self-checks: the references pass; each planted bug fails, naming its mistake."""

import math

import torch
from einops import rearrange
from torch import nn

from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson07 as l07
from vdmcourse.nn.dit import modulate, patchify


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted():
    for check in (l07.check_patchify, l07.check_modulate, l07.check_dit_block, l07.check_packing_mask, l07.check_frame_noise):
        assert check(stub).status == NOT_ATTEMPTED


# Patchify ---------------------------------------------------------------------------------


def test_patchify_reference_and_a_reshape_permute_version_pass():
    def with_reshape(x, patch):
        b, frames, c, height, width = x.shape
        pt, ph, pw = patch
        x = x.reshape(b, frames // pt, pt, c, height // ph, ph, width // pw, pw)  # b t pt c h ph w pw
        x = x.permute(0, 1, 4, 6, 2, 5, 7, 3)  # b t h w pt ph pw c
        return x.reshape(b, frames // pt, height // ph, width // pw, -1)

    expect_pass(l07.check_patchify, patchify)
    expect_pass(l07.check_patchify, with_reshape)


def test_patchify_with_the_wrong_split_order_is_named():
    def strided(x, patch):
        pt, ph, pw = patch
        return rearrange(x, "b (pt t) c (ph h) (pw w) -> b t h w (pt ph pw c)", pt=pt, ph=ph, pw=pw)

    expect_mistake(l07.check_patchify, strided, l07.PATCHES_SCRAMBLED)


def test_patchify_with_channels_first_inside_the_token_is_named():
    def channels_first(x, patch):
        pt, ph, pw = patch
        return rearrange(x, "b (t pt) c (h ph) (w pw) -> b t h w (c pt ph pw)", pt=pt, ph=ph, pw=pw)

    expect_mistake(l07.check_patchify, channels_first, l07.TOKEN_ORDER)


def test_patchify_that_returns_the_input_fails():
    expect_mistake(l07.check_patchify, lambda x, patch: x, None)


# Modulate ---------------------------------------------------------------------------------


def test_modulate_reference_passes():
    expect_pass(l07.check_modulate, modulate)


def test_modulate_without_one_plus_is_named():
    expect_mistake(l07.check_modulate, lambda x, shift, scale: x * scale + shift, l07.NO_ONE_PLUS)


def test_modulate_that_drops_the_shift_fails():
    expect_mistake(l07.check_modulate, lambda x, shift, scale: x * (1 + scale), None)


# The DiT block ----------------------------------------------------------------------------


class Block(nn.Module):
    """The lesson's answer, with switches that plant each mistake."""

    def __init__(self, dim, heads, cond_dim, *, norm=True, one_plus=True, gate=True, zero=True, batch_first=True):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False) if norm else nn.Identity()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=batch_first)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))
        self.one_plus, self.gate = one_plus, gate
        if zero:
            nn.init.zeros_(self.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def _modulate(self, x, shift, scale):
        return x * ((1 if self.one_plus else 0) + scale) + shift

    def forward(self, x, c):
        params = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)
        shift, scale, gate, shift2, scale2, gate2 = params
        if not self.gate:
            gate = gate2 = 1.0
        h = self._modulate(self.norm(x), shift, scale)
        x = x + gate * self.attn(h, h, h, need_weights=False)[0]
        return x + gate2 * self.mlp(self._modulate(self.norm(x), shift2, scale2))


def test_the_lesson_block_passes():
    expect_pass(l07.check_dit_block, Block)


def test_a_block_with_the_package_attention_passes():
    from vdmcourse.nn.dit import DiTAttention, TokenLayout

    class PackageAttentionBlock(Block):
        def __init__(self, dim, heads, cond_dim):
            super().__init__(dim, heads, cond_dim)
            self.attn = DiTAttention(dim, heads)

        def forward(self, x, c):
            shift, scale, gate, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=-1)
            layout = TokenLayout.build([(x.shape[1], 1, 1)], packed=False, causal=False, device=x.device)
            x = x + gate * self.attn(modulate(self.norm(x), shift, scale), "full", layout)
            return x + gate2 * self.mlp(modulate(self.norm(x), shift2, scale2))

    expect_pass(l07.check_dit_block, PackageAttentionBlock)


def test_the_reference_block_passes_and_is_the_package_block():
    """What lesson 07 goes on with when the learner's block has not passed: it must pass the same check,
    and be the package's DiTBlock (the same output as calling it directly)."""
    expect_pass(l07.check_dit_block, l07.reference_make_block)
    from vdmcourse.nn.dit import DiTBlock, TokenLayout

    torch.manual_seed(0)
    block = l07.reference_make_block(16, 4, 8)
    assert isinstance(block.block, DiTBlock) and block.adaLN_modulation is block.block.adaLN_modulation
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x, c = torch.randn(2, 6, 16), torch.randn(2, 8)
    layout = TokenLayout.build([(6, 1, 1)], packed=False, causal=False, device="cpu")
    torch.testing.assert_close(block(x, c), block.block(x, c, layout))
    assert not torch.allclose(block(x, c), x)  # woken up, it does something


def test_no_zero_init_is_named():
    expect_mistake(l07.check_dit_block, lambda *a: Block(*a, zero=False), l07.GATE_NOT_ZERO)


def test_gate_not_applied_is_named():
    expect_mistake(l07.check_dit_block, lambda *a: Block(*a, gate=False), l07.GATE_NOT_ZERO)


def test_the_batch_first_trap_is_named():
    expect_mistake(l07.check_dit_block, lambda *a: Block(*a, batch_first=False), l07.BATCH_FIRST)


def test_modulation_without_one_plus_in_the_block_is_named():
    expect_mistake(l07.check_dit_block, lambda *a: Block(*a, one_plus=False), l07.NO_ONE_PLUS)


def test_modulation_without_the_norm_is_named():
    expect_mistake(l07.check_dit_block, lambda *a: Block(*a, norm=False), l07.NO_NORM)


def test_a_block_without_the_modulation_attribute_fails():
    class Plain(nn.Module):
        def forward(self, x, c):
            return x

    expect_mistake(l07.check_dit_block, lambda *a: Plain(), None)


# Packing mask -----------------------------------------------------------------------------


def test_packing_mask_reference_and_a_block_diag_version_pass():
    expect_pass(l07.check_packing_mask, l07.reference_packing_mask)
    expect_pass(l07.check_packing_mask, lambda lengths: torch.block_diag(*[torch.ones(n, n) for n in lengths]).bool())


def test_a_mask_that_lets_clips_see_each_other_is_named():
    def all_true(lengths):
        return torch.ones(sum(lengths), sum(lengths), dtype=torch.bool)

    def one_block_too_wide(lengths):
        mask = l07.reference_packing_mask(lengths).clone()
        mask[:4, :4] = True  # the first clip's block swallows the second clip
        return mask

    expect_mistake(l07.check_packing_mask, all_true, l07.CLIPS_SEE_EACH_OTHER)
    expect_mistake(l07.check_packing_mask, one_block_too_wide, l07.CLIPS_SEE_EACH_OTHER)


def test_a_flipped_mask_is_named():
    expect_mistake(l07.check_packing_mask, lambda lengths: ~l07.reference_packing_mask(lengths), l07.MASK_INVERTED)


def test_a_float_or_diagonal_mask_fails():
    expect_mistake(l07.check_packing_mask, lambda lengths: l07.reference_packing_mask(lengths).float(), None)
    expect_mistake(l07.check_packing_mask, lambda lengths: torch.eye(sum(lengths), dtype=torch.bool), None)


# Noise the frames share ------------------------------------------------------------------


def mixed(shared_shape, norm=lambda mix: math.sqrt(1 + mix * mix)):
    """A frame_noise answer whose shared part has ``shared_shape(shape)`` and whose sum is divided by ``norm(mix)``."""
    return lambda shape, mix, g: (torch.randn(shape, generator=g) + mix * torch.randn(shared_shape(shape), generator=g)) / norm(mix)


def per_clip(shape):  # the right shape of the shared part
    return (shape[0], 1, *shape[2:])


def test_frame_noise_reference_and_a_shared_first_version_pass():
    def shared_first(shape, mix, g):
        shared = torch.randn(per_clip(shape), generator=g)
        return (mix * shared + torch.randn(shape, generator=g)) / math.sqrt(1 + mix**2)

    expect_pass(l07.check_frame_noise, lambda shape, mix, g: l07.reference_frame_noise(shape, mix=mix, generator=g))
    expect_pass(l07.check_frame_noise, shared_first)


def test_frame_noise_without_renormalising_is_named():
    expect_mistake(l07.check_frame_noise, mixed(per_clip, norm=lambda mix: 1.0), l07.NOISE_NOT_UNIT)
    expect_mistake(l07.check_frame_noise, mixed(per_clip, norm=lambda mix: 1 + mix), l07.NOISE_NOT_UNIT)


def test_frame_noise_drawn_per_frame_is_named():
    expect_mistake(l07.check_frame_noise, mixed(lambda shape: shape), l07.NOT_SHARED)
    expect_mistake(l07.check_frame_noise, lambda shape, mix, g: torch.randn(shape, generator=g), l07.NOT_SHARED)  # mix ignored


def test_frame_noise_shared_by_the_whole_batch_is_named():
    expect_mistake(l07.check_frame_noise, mixed(lambda shape: (1, 1, *shape[2:])), l07.SHARED_ACROSS_CLIPS)


def test_frame_noise_with_the_wrong_share_fails():
    expect_mistake(l07.check_frame_noise, lambda shape, mix, g: l07.reference_frame_noise(shape, mix=mix / 2, generator=g), None)
    expect_mistake(l07.check_frame_noise, lambda shape, mix, g: torch.randn(shape[:2], generator=g), None)
    expect_mistake(l07.check_frame_noise, lambda shape, mix, g: torch.zeros(shape), None)
