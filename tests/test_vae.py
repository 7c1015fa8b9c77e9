import dataclasses

import pytest
import torch

from vdmcourse.metrics import Evaluator, EvaluatorConfig
from vdmcourse.nn.vae import (
    CausalConv3d,
    DiagonalGaussian,
    VideoVAE,
    VideoVAEConfig,
    adversarial_terms,
    evaluator_feature_loss,
    vae_fingerprint,
    vae_loss,
)
from vdmcourse.pretrained import build_model, load_checkpoint, save_checkpoint

SMALL = VideoVAEConfig(widths=(8, 16, 16), groups=4)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def vae(seed=0, **fields):
    torch.manual_seed(seed)
    return VideoVAE(dataclasses.replace(SMALL, **fields)).eval()


def clips(batch=2, frames=9, size=16, seed=0):
    return torch.rand(batch, frames, 1, size, size, generator=seeded(seed)) * 2 - 1


def changed_frames(a, b):
    """Which frames (axis 1) differ between two (B, T, ...) tensors."""
    return ((a - b).abs().flatten(2).amax(2).amax(0) > 1e-6).tolist()


# --- CausalConv3d ---------------------------------------------------------------------


def test_causal_conv_output_frame_t_sees_only_input_frames_up_to_t():
    conv = CausalConv3d(2, 3, (3, 3, 3))
    x = torch.randn(1, 2, 7, 5, 5, generator=seeded())
    for k in range(7):
        bumped = x.clone()
        bumped[:, :, k] += 1.0
        reached = ((conv(bumped) - conv(x)).abs().amax(dim=(0, 1, 3, 4)) > 0).tolist()
        assert reached == [k <= t <= k + 2 for t in range(7)]


def test_causal_conv_pads_in_front_with_the_first_frame():
    conv = CausalConv3d(1, 1, (3, 1, 1))
    x = torch.randn(1, 1, 4, 2, 2, generator=seeded())
    padded = torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)
    torch.testing.assert_close(conv(x), conv.conv(padded))


def test_strided_causal_conv_keeps_the_first_frame_as_its_own_output():
    conv = CausalConv3d(1, 1, (3, 1, 1), stride=(2, 1, 1))
    x = torch.randn(1, 1, 9, 2, 2, generator=seeded())
    assert conv(x).shape[2] == 5  # 1 + 2·4 frames -> 1 + 4
    bumped = x.clone()
    bumped[:, :, 1:] += 1.0  # everything but frame 0
    assert torch.equal(conv(bumped)[:, :, 0], conv(x)[:, :, 0])


@pytest.mark.parametrize("stride, chunks", [(1, [1, 2, 4]), (1, [3, 3, 1]), (2, [3, 2, 4])])
def test_causal_conv_streaming_equals_the_whole_clip(stride, chunks):
    conv = CausalConv3d(2, 2, (3, 3, 3), stride=(stride, 1, 1))
    x = torch.randn(1, 2, sum(chunks), 4, 4, generator=seeded())
    whole = conv(x)
    conv.streaming = True
    parts = [conv(part) for part in x.split(chunks, dim=2)]
    torch.testing.assert_close(torch.cat(parts, dim=2), whole)


def test_centred_conv_sees_the_next_frame_and_refuses_to_stream():
    conv = CausalConv3d(1, 1, (3, 1, 1), padding="centred")
    x = torch.randn(1, 1, 5, 2, 2, generator=seeded())
    bumped = x.clone()
    bumped[:, :, 3] += 1.0
    assert ((conv(bumped) - conv(x)).abs().amax(dim=(0, 1, 3, 4)) > 0).tolist() == [False, False, True, True, True]
    conv.streaming = True
    with pytest.raises(ValueError, match="future frames"):
        conv(x)


# --- shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("temporal_downsample", [(), (0,), (0, 1)])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_shapes_for_one_plus_s_k_frames_including_a_single_image(temporal_downsample, k):
    model = vae(temporal_downsample=temporal_downsample)
    s = model.config.temporal_compression
    video = clips(frames=1 + s * k)
    posterior = model.encode(video)
    assert posterior.mean.shape == (2, 1 + k, 4, 4, 4)
    assert model.decode(posterior.mean).shape == video.shape
    assert model.config.latent_shape(1 + s * k, 16, 16) == (1 + k, 4, 4, 4)


def test_eight_times_spatial_compression_maps_64_pixels_to_8():
    model = vae(widths=(8, 8, 16, 16))
    video = clips(batch=1, frames=3, size=64)
    z = model.encode(video).mean
    assert z.shape == (1, 3, 4, 8, 8)
    assert model.decode(z).shape == video.shape


def test_bad_inputs_are_refused_with_clear_errors():
    model = vae(temporal_downsample=(0,))
    with pytest.raises(ValueError, match=r"T = 1 \+ 2·k"):
        model.encode(clips(frames=8))
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\) with C=1"):
        model.encode(clips(frames=9).transpose(1, 2))  # (B, C, T, H, W)
    with pytest.raises(ValueError, match="multiples of 4"):
        model.encode(clips(size=18))
    with pytest.raises(ValueError, match="latents of shape"):
        model.decode(torch.zeros(1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match="multiple of 2"):
        model.encode(clips(), chunk_size=3)
    with pytest.raises(ValueError, match="cannot down-sample time"):
        VideoVAEConfig(design="per_frame", temporal_downsample=(0,))


# --- causality ------------------------------------------------------------------------


@pytest.mark.parametrize("temporal_downsample", [(), (0,), (0, 1)])
def test_perturbing_frame_k_leaves_earlier_latents_and_reconstructions_unchanged(temporal_downsample):
    model = vae(temporal_downsample=temporal_downsample)
    s = model.config.temporal_compression
    video = clips(frames=1 + 3 * s)
    for k in range(1, video.shape[1]):
        bumped = video.clone()
        bumped[:, k] += 0.5
        latent_changed = changed_frames(model.encode(bumped).mean, model.encode(video).mean)
        holder = (k + s - 1) // s  # latent frame j >= 1 stands for input frames 1 + (j - 1)·s ... j·s
        assert latent_changed == [j >= holder for j in range(len(latent_changed))]
        frames_changed = changed_frames(
            model.decode(model.encode(bumped).mean), model.decode(model.encode(video).mean)
        )
        first_decoded = 1 + (holder - 1) * s  # the first frame decoded from latent frame `holder`
        assert frames_changed == [t >= first_decoded for t in range(len(frames_changed))]
        assert first_decoded <= k


def test_per_frame_vae_changes_only_the_perturbed_frame():
    model = vae(design="per_frame")
    video = clips(frames=6)
    bumped = video.clone()
    bumped[:, 3] = -bumped[:, 3] * 5 + 2  # new mean and scale: a norm across frames would spread it
    recon = model.decode(model.encode(bumped).mean)
    assert changed_frames(recon, model.decode(model.encode(video).mean)) == [t == 3 for t in range(6)]


def test_temporal_decoder_looks_one_frame_ahead_as_svds_does():
    model = vae(design="temporal_decoder")
    z = model.encode(clips(frames=6)).mean
    bumped = z.clone()
    bumped[:, 3] += 1.0
    changed = changed_frames(model.decode(bumped), model.decode(z))
    assert changed[2]  # frame 2 is decoded with latent frame 3 in view: not causal


# --- streaming ------------------------------------------------------------------------


@pytest.mark.parametrize("temporal_downsample", [(), (0,), (0, 1)])
def test_chunked_encoding_and_decoding_equal_the_whole_clip(temporal_downsample):
    model = vae(temporal_downsample=temporal_downsample)
    s = model.config.temporal_compression
    video = clips(frames=1 + 4 * s)
    posterior = model.encode(video)
    for chunk in (s, 2 * s):
        torch.testing.assert_close(model.encode(video, chunk_size=chunk).mean, posterior.mean)
        torch.testing.assert_close(model.encode(video, chunk_size=chunk).logvar, posterior.logvar)
    whole = model.decode(posterior.mean)
    for chunk in (1, 2, 3):
        torch.testing.assert_close(model.decode(posterior.mean, chunk_size=chunk), whole)
    torch.testing.assert_close(model.decode(posterior.mean), whole)  # the cache is gone afterwards


def test_chunks_decoded_without_the_cache_differ_from_the_first_boundary_on():
    model = vae()
    z = model.encode(clips(frames=8)).mean
    whole, seamed = model.decode(z), model.decode(z, chunk_size=4, cache=False)
    assert changed_frames(seamed, whole) == [t >= 4 for t in range(8)]


def test_temporal_decoder_refuses_cached_chunks_but_decodes_independent_ones():
    model = vae(design="temporal_decoder")
    z = model.encode(clips(frames=6)).mean
    with pytest.raises(ValueError, match="cache=False"):
        model.decode(z, chunk_size=2)
    assert model.decode(z, chunk_size=2, cache=False).shape == (2, 6, 1, 16, 16)


# --- posterior and KL -----------------------------------------------------------------


def test_kl_matches_the_closed_form_and_a_monte_carlo_estimate():
    mean = torch.randn(3, 2, 4, 2, 2, generator=seeded())
    logvar = torch.randn(3, 2, 4, 2, 2, generator=seeded(1)) * 0.5
    posterior = DiagonalGaussian(mean, logvar)
    var = logvar.exp()
    closed = 0.5 * (mean.square() + var - 1 - logvar).flatten(1).sum(1)
    torch.testing.assert_close(posterior.kl(), closed)
    z = torch.stack([posterior.sample(seeded(i)) for i in range(4000)])  # (N, B, ...)
    log_q = (-0.5 * ((z - mean) ** 2 / var + logvar)).flatten(2).sum(2)
    log_p = (-0.5 * z.square()).flatten(2).sum(2)
    torch.testing.assert_close((log_q - log_p).mean(0), closed, rtol=0.05, atol=0.5)


def test_kl_is_zero_only_for_the_standard_normal():
    zero = torch.zeros(1, 1, 2, 2, 2)
    assert DiagonalGaussian(zero, zero).kl().item() == 0.0
    assert DiagonalGaussian(zero + 0.1, zero).kl().item() > 0
    assert DiagonalGaussian(zero, zero + 0.1).kl().item() > 0


def test_samples_use_the_standard_deviation_exp_half_logvar():
    mean, logvar = torch.zeros(20000), torch.full((20000,), 2.0)
    z = DiagonalGaussian(mean, logvar).sample(seeded())
    assert abs(z.std().item() - torch.e ** 1.0) < 0.05


# --- scaling factor -------------------------------------------------------------------


def moving_clips(batch, seed):
    from vdmcourse.data import MovingMNISTConfig, generate_clips

    data = MovingMNISTConfig.cpu(canvas=16, digit_size=12, frames=5)
    return generate_clips(batch, data, generator=seeded(seed)).video * 2 - 1


def test_normalised_latents_of_fresh_clips_have_unit_std():
    model = vae(widths=(8, 16, 16))
    with torch.no_grad():
        for parameter in model.encoder.output.parameters():
            parameter.mul_(7.0)  # latents far from unit scale
        factor = model.fit_scaling_factor(moving_clips(32, seed=0), seeded(1))
        raw = model.encode(moving_clips(32, seed=2)).sample(seeded(3))
        scaled = model.encode_latents(moving_clips(32, seed=2), seeded(3))
    assert abs(raw.std().item() - 1.0) > 0.5
    assert factor == pytest.approx(model.scaling_factor.item())
    assert abs(scaled.std().item() - 1.0) < 0.1
    torch.testing.assert_close(model.decode_latents(scaled), model.decode(raw))


def test_latents_are_refused_before_the_scaling_factor_is_measured():
    with pytest.raises(ValueError, match="fit_scaling_factor"):
        vae().encode_latents(clips())


# --- checkpoints ----------------------------------------------------------------------


def test_checkpoint_round_trip_keeps_weights_and_scaling_factor(tmp_path):
    model = vae(temporal_downsample=(0,))
    model.fit_scaling_factor(clips(), seeded())
    save_checkpoint(tmp_path / "vae.safetensors", model)
    loaded = build_model(tmp_path / "vae.safetensors")
    assert isinstance(loaded, VideoVAE) and loaded.config == model.config
    assert loaded.scaling_factor.item() == model.scaling_factor.item()
    torch.testing.assert_close(loaded.decode(loaded.encode(clips()).mean), model.decode(model.encode(clips()).mean))
    assert vae_fingerprint(loaded) == vae_fingerprint(model)


def test_a_checkpoint_without_a_scaling_factor_is_refused(tmp_path):
    model = vae()
    model.fit_scaling_factor(clips(), seeded())
    save_checkpoint(tmp_path / "vae.safetensors", model)
    checkpoint = load_checkpoint(tmp_path / "vae.safetensors")
    del checkpoint.tensors["model.scaling_factor"]
    with pytest.raises(ValueError, match="missing scaling_factor"):
        build_model(checkpoint)


def test_a_checkpoint_of_another_vae_config_is_refused(tmp_path):
    save_checkpoint(tmp_path / "vae.safetensors", vae())
    from vdmcourse.pretrained import load_weights

    with pytest.raises(ValueError, match="latent_channels"):
        load_weights(vae(latent_channels=8), tmp_path / "vae.safetensors")


def test_fingerprint_changes_with_the_weights_and_the_scaling_factor():
    a, b = vae(seed=0), vae(seed=1)
    assert vae_fingerprint(a) != vae_fingerprint(b)
    before = vae_fingerprint(a)
    a.scaling_factor.fill_(0.5)
    assert vae_fingerprint(a) != before


# --- losses ---------------------------------------------------------------------------


def test_vae_loss_is_reconstruction_plus_beta_kl_per_pixel():
    model = vae()
    video = (clips() + 1) / 2
    recon, posterior = model(video * 2 - 1, seeded(5))
    for kind, rec in (("l1", (recon - (video * 2 - 1)).abs().mean()), ("mse", (recon - (video * 2 - 1)).square().mean())):
        expected = rec + 0.01 * posterior.kl().mean() / video[0].numel()
        torch.testing.assert_close(vae_loss(model, {"video": video}, seeded(5), beta=0.01, reconstruction=kind), expected)
    with pytest.raises(ValueError, match="reconstruction"):
        vae_loss(model, {"video": video}, reconstruction="l2")


def test_feature_matching_is_zero_for_equal_clips_and_grows_with_the_difference():
    torch.manual_seed(0)
    evaluator = Evaluator(EvaluatorConfig(canvas=16, frames=5, digit_size=12)).eval()
    video = (clips(frames=5) + 1) / 2
    assert evaluator_feature_loss(evaluator, video, video).item() == 0.0
    small = evaluator_feature_loss(evaluator, (video + 0.05).clamp(0, 1), video).item()
    large = evaluator_feature_loss(evaluator, (video + 0.3).clamp(0, 1), video).item()
    assert 0 < small < large
    with pytest.raises(ValueError, match="needs the evaluator"):
        vae_loss(vae(), {"video": video}, feature_weight=1.0)


# --- adversarial term -----------------------------------------------------------------


def grads(module):
    return [p.grad for p in module.parameters()]


def test_the_discriminator_is_off_by_default_and_gives_patch_logits_per_frame():
    assert VideoVAEConfig().discriminator == () and vae().discriminator is None
    model = vae(discriminator=(8, 16))
    logits = model.discriminator(clips(batch=2, frames=5, size=16))
    assert logits.shape == (2, 5, 1, 4, 4)  # two stride-2 levels: 16x16 -> 4x4 patches
    with pytest.raises(ValueError, match="discriminator"):
        VideoVAEConfig(discriminator=(8, 0))


def test_the_default_loss_ignores_a_discriminator_and_asks_for_one_when_weighted():
    video = (clips(frames=5) + 1) / 2
    plain = vae_loss(vae(), {"video": video}, seeded(5), reconstruction="mse")
    with_disc = vae(discriminator=(8, 16))
    torch.testing.assert_close(vae_loss(with_disc, {"video": video}, seeded(5), reconstruction="mse"), plain)
    with pytest.raises(ValueError, match="discriminator"):
        vae_loss(vae(), {"video": video}, adversarial_weight=0.5)


def test_generator_gradient_reaches_the_decoder_and_the_discriminator_step_only_the_discriminator():
    model = vae(discriminator=(8, 16)).train()
    target = clips(frames=5)
    recon, _ = model(target, seeded(1))
    generator_loss, discriminator_loss = adversarial_terms(model.discriminator, recon, target)
    discriminator_loss.backward(retain_graph=True)
    assert all(g is None for g in grads(model.encoder) + grads(model.decoder))
    assert all(g is not None for g in grads(model.discriminator))  # (the last bias's real and fake pulls cancel)
    assert all(layer.weight.grad.abs().sum() > 0 for layer in model.discriminator.layers if isinstance(layer, torch.nn.Conv2d))
    model.zero_grad(set_to_none=True)
    generator_loss.backward()
    assert all(g is None for g in grads(model.discriminator))
    assert model.decoder.output.conv.weight.grad.abs().sum() > 0


def test_discriminator_hinge_loss_is_zero_only_when_it_separates_by_the_margin():
    model = vae(discriminator=(8, 16))
    real, fake = clips(frames=5, seed=0), clips(frames=5, seed=1)
    last = model.discriminator.layers[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)  # D = 0 everywhere: hinge 1 + 1, generator 0
    generator_loss, discriminator_loss = adversarial_terms(model.discriminator, fake, real)
    assert generator_loss.item() == 0.0 and discriminator_loss.item() == pytest.approx(2.0)


def test_the_adversarial_term_waits_for_its_warm_up_and_counts_steps_across_saves(tmp_path):
    video = (clips(frames=5) + 1) / 2
    model = vae(discriminator=(8, 16)).train()
    plain = vae_loss(model, {"video": video}, seeded(5), reconstruction="mse")
    kwargs = dict(reconstruction="mse", adversarial_weight=0.5, adversarial_start=2)
    for _ in range(2):  # steps 0 and 1: warm-up, the plain loss
        torch.testing.assert_close(vae_loss(model, {"video": video}, seeded(5), **kwargs), plain)
    assert int(model.discriminator.updates) == 2
    on = vae_loss(model, {"video": video}, seeded(5), **kwargs)
    assert on.item() > plain.item() + 0.5  # the discriminator's hinge (about 2 at init) joins the loss
    model.discriminator.updates.zero_()
    model.eval()  # evaluation does not advance the warm-up
    vae_loss(model, {"video": video}, seeded(5), **kwargs)
    assert int(model.discriminator.updates) == 0
    model.discriminator.updates.fill_(7)
    save_checkpoint(tmp_path / "vae.safetensors", model)
    loaded = build_model(tmp_path / "vae.safetensors")
    assert loaded.config.discriminator == (8, 16) and int(loaded.discriminator.updates) == 7


def test_the_generator_term_is_weighted_by_the_gradient_ratio_at_the_decoders_last_layer():
    model = vae(discriminator=(8, 16)).train()
    video = (clips(frames=5) + 1) / 2
    target = video * 2 - 1
    loss = vae_loss(model, {"video": video}, seeded(5), beta=0.0, reconstruction="mse", adversarial_weight=0.5)
    recon, _ = model(target, seeded(5))
    rec = (recon - target).square().mean()
    generator_loss, discriminator_loss = adversarial_terms(model.discriminator, recon, target)
    last = model.decoder.output.conv.weight
    ratio = torch.autograd.grad(rec, last, retain_graph=True)[0].norm() / (torch.autograd.grad(generator_loss, last, retain_graph=True)[0].norm() + 1e-4)
    torch.testing.assert_close(loss, rec + 0.5 * ratio * generator_loss + discriminator_loss)
    assert not torch.isclose(ratio, torch.tensor(1.0))  # a fixed weight would not pass
