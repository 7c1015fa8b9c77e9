"""Lesson 06 self-checks: the references pass; each planted bug fails, naming its mistake."""

import torch
import torch.nn.functional as F
from einops import rearrange

from vdmcourse.exercises import NOT_ATTEMPTED, expect_mistake, expect_pass
from vdmcourse.exercises import lesson06 as l06
from vdmcourse.nn.vae import CausalConv3d, DiagonalGaussian


def stub(*args):
    raise NotImplementedError


CHECKS = (l06.check_causal_conv, l06.check_reparameterize, l06.check_kl, l06.check_scaling_factor, l06.check_encode_chunks)


def test_stubs_are_not_attempted():
    for check in CHECKS:
        assert check(stub).status == NOT_ATTEMPTED


# causal conv --------------------------------------------------------------------------


def test_causal_conv_reference_and_the_package_layer_pass():
    def with_package(x, weight):
        conv = CausalConv3d(weight.shape[1], weight.shape[0], (weight.shape[2], 1, 1)).double()
        with torch.no_grad():
            conv.conv.weight.copy_(weight[:, :, :, None, None])
            conv.conv.bias.zero_()
        return rearrange(conv(rearrange(x, "b t c h w -> b c t h w")), "b c t h w -> b t c h w")

    expect_pass(l06.check_causal_conv, l06.reference_causal_conv)
    expect_pass(l06.check_causal_conv, with_package)


def test_symmetric_padding_is_named_the_encoder_sees_the_future():
    def centred(x, weight):
        height, width = x.shape[-2:]
        out = F.conv1d(rearrange(x, "b t c h w -> (b h w) c t"), weight, padding=1)
        return rearrange(out, "(b h w) c t -> b t c h w", h=height, w=width)

    result = expect_mistake(l06.check_causal_conv, centred, l06.SEES_THE_FUTURE)
    assert result.mistake == "symmetric temporal padding: the encoder sees the future"


def test_zero_padding_in_front_is_named():
    def zero_past(x, weight):
        height, width = x.shape[-2:]
        sequences = F.pad(rearrange(x, "b t c h w -> (b h w) c t"), (weight.shape[-1] - 1, 0))
        return rearrange(F.conv1d(sequences, weight), "(b h w) c t -> b t c h w", h=height, w=width)

    expect_mistake(l06.check_causal_conv, zero_past, l06.ZERO_PADDED_PAST)


def test_returning_zeros_is_wrong():
    expect_mistake(l06.check_causal_conv, lambda x, w: torch.zeros(x.shape[0], x.shape[1], w.shape[0], *x.shape[3:], dtype=x.dtype), None)


# reparameterisation -------------------------------------------------------------------


def test_reparameterize_reference_and_the_package_sample_pass():
    expect_pass(l06.check_reparameterize, l06.reference_reparameterize)
    expect_pass(l06.check_reparameterize, lambda mean, logvar, eps: DiagonalGaussian(mean, logvar).mean + DiagonalGaussian(mean, logvar).std * eps)


def test_logvar_used_as_std_is_named():
    expect_mistake(l06.check_reparameterize, lambda mean, logvar, eps: mean + logvar * eps, l06.LOGVAR_AS_STD)


def test_variance_used_as_std_is_named():
    expect_mistake(l06.check_reparameterize, lambda mean, logvar, eps: mean + logvar.exp() * eps, l06.VARIANCE_AS_STD)


def test_returning_the_mean_is_wrong():
    expect_mistake(l06.check_reparameterize, lambda mean, logvar, eps: mean, None)


# KL -----------------------------------------------------------------------------------


def test_kl_reference_and_the_package_pass():
    expect_pass(l06.check_kl, l06.reference_kl_divergence)
    expect_pass(l06.check_kl, lambda mean, logvar: DiagonalGaussian(mean, logvar).kl())


def test_kl_with_the_wrong_sign_is_named():
    expect_mistake(l06.check_kl, lambda mean, logvar: -l06.reference_kl_divergence(mean, logvar), l06.KL_WRONG_SIGN)
    flipped = lambda mean, logvar: 0.5 * (mean.square() + logvar.exp() - 1 + logvar).flatten(1).sum(1)  # noqa: E731
    expect_mistake(l06.check_kl, flipped, l06.KL_WRONG_SIGN)


def test_kl_over_the_wrong_axes_is_named():
    def whole_batch(mean, logvar):
        return 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean()

    def over_batch(mean, logvar):
        return 0.5 * (mean.square() + logvar.exp() - 1 - logvar).sum(0)

    def averaged(mean, logvar):
        return 0.5 * (mean.square() + logvar.exp() - 1 - logvar).flatten(1).mean(1)

    expect_mistake(l06.check_kl, whole_batch, l06.KL_WRONG_AXES)
    expect_mistake(l06.check_kl, over_batch, l06.KL_WRONG_AXES)
    expect_mistake(l06.check_kl, averaged, l06.KL_WRONG_AXES)


# scaling factor -----------------------------------------------------------------------


def test_scaling_factor_reference_passes():
    expect_pass(l06.check_scaling_factor, l06.reference_scaling_factor)
    expect_pass(l06.check_scaling_factor, lambda latents: 1 / latents.std())


def test_unscaled_and_inverted_factors_are_named():
    expect_mistake(l06.check_scaling_factor, lambda latents: 1.0, l06.LATENTS_NOT_SCALED)
    expect_mistake(l06.check_scaling_factor, lambda latents: latents.std().item(), l06.SCALE_INVERTED)


def test_a_per_channel_factor_is_wrong():
    expect_mistake(l06.check_scaling_factor, lambda latents: 1 / latents.std(dim=(0, 1, 3, 4)), None)


# chunks -------------------------------------------------------------------------------


def test_chunk_reference_passes_and_streams_like_the_whole_clip():
    expect_pass(l06.check_encode_chunks, l06.reference_encode_chunks)
    from vdmcourse.nn.vae import VideoVAE, VideoVAEConfig

    torch.manual_seed(0)
    vae = VideoVAE(VideoVAEConfig(widths=(4, 4), groups=2, temporal_downsample=(0,))).eval()
    video = torch.randn(1, 9, 1, 8, 8)
    torch.testing.assert_close(vae.encode(video, chunk_size=4).mean, vae.encode(video).mean)
    assert [c.shape[1] for c in l06.reference_encode_chunks(video, 4)] == [5, 4]


def test_overlapping_chunks_are_named():
    def overlapping(video, chunk_size):
        return [video[:, : 1 + chunk_size]] + [video[:, s - 1 : s + chunk_size] for s in range(1 + chunk_size, video.shape[1], chunk_size)]

    expect_mistake(l06.check_encode_chunks, overlapping, l06.CHUNK_DUPLICATES_FRAME)


def test_skipping_a_frame_at_each_boundary_is_named():
    def skipping(video, chunk_size):
        return [video[:, : 1 + chunk_size]] + [video[:, s + 1 : s + 1 + chunk_size] for s in range(1 + chunk_size, video.shape[1], chunk_size + 1)]

    expect_mistake(l06.check_encode_chunks, skipping, l06.CHUNK_DROPS_FRAME)


def test_chunks_from_frame_zero_are_named_misaligned():
    expect_mistake(l06.check_encode_chunks, lambda video, chunk_size: list(video.split(chunk_size, dim=1)), l06.CHUNKS_MISALIGNED)
