"""Self-checks for lesson 06, the video VAE and latent video diffusion.

* :func:`check_causal_conv` -- ``causal_conv(x, weight)``: a convolution over frames
  whose output frame t sees input frames ``<= t`` only, padded with the first frame.
* :func:`check_reparameterize` -- ``reparameterize(mean, logvar, eps)``: a posterior
  sample ``mean + std * eps``.
* :func:`check_kl` -- ``kl_divergence(mean, logvar)``: KL(q || N(0, I)) per clip.
* :func:`check_scaling_factor` -- ``scaling_factor(latents)``: the number latents are
  multiplied by before diffusion.
* :func:`check_encode_chunks` -- ``encode_chunks(video, chunk_size)``: the chunks a
  clip of 1 + s·k frames is streamed through a causal encoder in.

Each names the real mistakes: symmetric temporal padding (the encoder sees the
future), log-variance used as a standard deviation, a KL with the wrong sign or
summed over the wrong axes, latents not scaled (or scaled the wrong way up), and
a chunk boundary that drops or duplicates a frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check

__all__ = [
    "SEES_THE_FUTURE",
    "ZERO_PADDED_PAST",
    "LOGVAR_AS_STD",
    "VARIANCE_AS_STD",
    "KL_WRONG_SIGN",
    "KL_WRONG_AXES",
    "LATENTS_NOT_SCALED",
    "SCALE_INVERTED",
    "CHUNK_DUPLICATES_FRAME",
    "CHUNK_DROPS_FRAME",
    "CHUNKS_MISALIGNED",
    "reference_causal_conv",
    "reference_reparameterize",
    "reference_kl_divergence",
    "reference_scaling_factor",
    "reference_encode_chunks",
    "check_causal_conv",
    "check_reparameterize",
    "check_kl",
    "check_scaling_factor",
    "check_encode_chunks",
]

SEES_THE_FUTURE = "symmetric temporal padding: the encoder sees the future"
ZERO_PADDED_PAST = "the past padded with zeros instead of copies of the first frame"
LOGVAR_AS_STD = "log-variance used as a standard deviation"
VARIANCE_AS_STD = "variance used as a standard deviation"
KL_WRONG_SIGN = "KL with the wrong sign"
KL_WRONG_AXES = "KL summed over the wrong axes"
LATENTS_NOT_SCALED = "latents not scaled before diffusion"
SCALE_INVERTED = "scaling factor inverted (the std instead of 1 / std)"
CHUNK_DUPLICATES_FRAME = "a chunk boundary that duplicates a frame"
CHUNK_DROPS_FRAME = "a chunk boundary that drops a frame"
CHUNKS_MISALIGNED = "chunks not aligned to 1 + s·k frames"


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- causal temporal conv -------------------------------------------------------------


def reference_causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Causal conv over frames at each pixel: x ``(B, T, C, H, W)``, weight ``(C_out, C, k)``
    -> ``(B, T, C_out, H, W)``; output frame t sees input frames ``t - k + 1 .. t``, the
    missing past being copies of frame 0."""
    k, (height, width) = weight.shape[-1], x.shape[-2:]
    sequences = rearrange(x, "b t c h w -> (b h w) c t")  # one sequence of T frames per pixel
    past = sequences[:, :, :1].expand(-1, -1, k - 1)  # k - 1 copies of the first frame, in front only
    out = F.conv1d(torch.cat([past, sequences], dim=2), weight)  # (B*H*W, C_out, T)
    return rearrange(out, "(b h w) c t -> b t c h w", h=height, w=width)


@self_check(
    "causal temporal convolution", reference="vdmcourse.nn.vae.CausalConv3d",
    more="The likely slips are symmetric padding (output frame t sees t + 1) and zeros as the past. "
         "Rearrange to '(b h w) c t', prepend k - 1 copies of frame 0 (torch.cat([seq[..., :1]] * (k - 1) "
         "+ [seq], dim=-1)), F.conv1d with no padding, and back.",
)
def check_causal_conv(causal_conv):
    """``causal_conv(x, weight)``: x ``(B, T, C, H, W)``, weight ``(C_out, C, 3)`` -> ``(B, T, C_out, H, W)``."""
    g = _generator(1)
    x = torch.randn(2, 6, 3, 4, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    out = causal_conv(x, weight)
    expect_shape(out, (2, 6, 2, 4, 5), "causal_conv(x, weight) for x (2, 6, 3, 4, 5), weight (2, 3, 3)",
                 hint="Pad k - 1 frames in front so that T frames come out.")
    probe = torch.randn(1, 7, 3, 1, 1, generator=_generator(2), dtype=torch.float64)
    bumped = probe.clone()
    bumped[:, 4] += 1.0  # perturb frame 4
    reached = (causal_conv(bumped, weight) - causal_conv(probe, weight)).detach().abs().sum(dim=(0, 2, 3, 4)) > 1e-12
    frames = [t for t in range(7) if reached[t]]
    if any(t < 4 for t in frames):
        raise Wrong(
            f"Perturbing input frame 4 changed output frames {frames}: frames before 4 moved, so the "
            "conv looks at frames it should not have seen yet.",
            mistake=SEES_THE_FUTURE,
            hint="Pad all k - 1 frames in front (none behind): output frame t then sees frames t - k + 1 .. t. "
                 "Padding k // 2 on both sides is the centred conv of lesson 05, not a causal one.",
        )
    flat = torch.ones(1, 4, 3, 1, 1, dtype=torch.float64)
    edge = causal_conv(flat, weight).detach()
    if not torch.allclose(edge[:, 0], edge[:, 3], atol=1e-9):
        raise Wrong(
            "On a clip whose frames are all equal, your output frame 0 differs from frame 3: the frames "
            "padded in front are not copies of the first frame.",
            mistake=ZERO_PADDED_PAST,
            hint="Pad with x[:, :1] repeated k - 1 times (replicate padding), not zeros: a still clip then "
                 "encodes to a still latent, and a single image is a valid clip.",
        )
    expect_close(out, reference_causal_conv(x, weight), "causal_conv(x, weight)", atol=1e-9, rtol=1e-7,
                 hint="Rearrange to '(b h w) c t', prepend k - 1 copies of frame 0, F.conv1d without padding, and back.")
    return "Output frame t sees frames t - 2 .. t only, and a still clip stays still."


# --- reparameterisation and KL --------------------------------------------------------


def reference_reparameterize(mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``z = mean + exp(logvar / 2) * eps``: a sample of N(mean, exp(logvar)) that gradients pass through."""
    return mean + torch.exp(0.5 * logvar) * eps


@self_check(
    "reparameterisation", reference="vdmcourse.nn.vae.DiagonalGaussian.sample",
    more="The likely slip is the spread: logvar is log(std**2), so std = torch.exp(0.5 * logvar) -- not "
         "logvar itself and not exp(logvar) (the variance). z = mean + std * eps.",
)
def check_reparameterize(reparameterize):
    """``reparameterize(mean, logvar, eps)`` -> z, all of one shape."""
    g = _generator(3)
    mean = torch.randn(2, 3, 4, 2, 2, generator=g, dtype=torch.float64)
    logvar = torch.randn(2, 3, 4, 2, 2, generator=g, dtype=torch.float64) - 1.0
    eps = torch.randn(2, 3, 4, 2, 2, generator=g, dtype=torch.float64)
    z = reparameterize(mean, logvar, eps)
    expect_shape(z, mean.shape, "reparameterize(mean, logvar, eps)")
    z = z.detach()
    for wrong_std, mistake, hint in (
        (logvar, LOGVAR_AS_STD, "logvar is log(sigma^2): sigma = exp(logvar / 2), which is always positive."),
        (logvar.exp(), VARIANCE_AS_STD, "exp(logvar) is the variance sigma^2; the standard deviation is its square root, exp(logvar / 2)."),
    ):
        if torch.allclose(z, mean + wrong_std * eps, atol=1e-9):
            raise Wrong("Your sample spreads around the mean by the wrong amount.", mistake=mistake, hint=hint)
    if torch.allclose(z, mean, atol=1e-9):
        raise Wrong("Your sample is the mean: no noise was added, so the latent space is not regularised.",
                    hint="z = mean + std * eps.")
    expect_close(z, reference_reparameterize(mean, logvar, eps), "reparameterize(mean, logvar, eps)", atol=1e-9, rtol=1e-7,
                 hint="z = mean + exp(logvar / 2) * eps.")
    return "z = mean + exp(logvar / 2) * eps."


def reference_kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per clip: ``1/2 sum(mean^2 + var - 1 - logvar)``
    over every latent element of the clip; latents ``(B, T, C, h, w)`` -> ``(B,)``."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


@self_check(
    "KL divergence", reference="vdmcourse.nn.vae.DiagonalGaussian.kl",
    more="The likely slips are a sign and the axes. Per element: 0.5 * (mean**2 + logvar.exp() - 1 - "
         "logvar); then sum over everything but the batch axis: .flatten(1).sum(1), shape (B,).",
)
def check_kl(kl_divergence):
    """``kl_divergence(mean, logvar)``: latents ``(B, T, C, h, w)`` -> ``(B,)``."""
    g = _generator(4)
    mean = torch.randn(3, 2, 4, 2, 2, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 2, 4, 2, 2, generator=g, dtype=torch.float64)
    kl = kl_divergence(mean, logvar)
    expected = reference_kl_divergence(mean, logvar)
    if isinstance(kl, torch.Tensor) and kl.numel() == 1 and not torch.allclose(kl.reshape(()), expected.sum()):
        if torch.allclose(kl.reshape(()).abs(), expected.mean(), rtol=1e-6) or torch.allclose(kl.reshape(()).abs(), expected.sum() / mean.numel(), rtol=1e-6):
            raise Wrong("Your KL is one number for the whole batch, averaged.", mistake=KL_WRONG_AXES,
                        hint="Sum over each clip's latent elements (T, C, h, w), keep the batch axis: shape (B,).")
    expect_shape(kl, (3,), "kl_divergence(mean, logvar) for latents (3, 2, 4, 2, 2)", mistake=KL_WRONG_AXES,
                 hint="One KL per clip: sum over every axis but the batch axis (.flatten(1).sum(1)).")
    kl = kl.detach()
    if torch.allclose(kl, -expected, rtol=1e-6):
        raise Wrong("Your KL is negative; a KL divergence is never below zero.", mistake=KL_WRONG_SIGN,
                    hint="KL = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar): the +mean^2 pulls the mean to 0.")
    if (kl < 0).any():
        raise Wrong(f"Your KL has negative values {kl.tolist()}; a KL divergence is never below zero.",
                    mistake=KL_WRONG_SIGN, hint="Check each sign: + mean^2, + exp(logvar), - 1, - logvar.")
    terms = (mean.square(), logvar.exp(), -torch.ones_like(mean), -logvar)
    for flipped in range(4):  # one term with the wrong sign
        variant = 0.5 * sum(-term if i == flipped else term for i, term in enumerate(terms)).flatten(1).sum(1)
        if torch.allclose(kl, variant, rtol=1e-6):
            raise Wrong("One term of your KL has the wrong sign.", mistake=KL_WRONG_SIGN,
                        hint="KL = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar); it is 0 for N(0, 1) and positive otherwise.")
    per_element = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
    if torch.allclose(kl, per_element.mean(dim=(1, 2, 3, 4)), rtol=1e-6):
        raise Wrong("Your KL averages over each clip's latent elements instead of summing them.",
                    mistake=KL_WRONG_AXES, hint="Sum, as the ELBO's log-likelihood does: KL grows with the size of the latent.")
    zero = torch.zeros(1, 1, 1, 2, 2, dtype=torch.float64)
    standard = kl_divergence(zero, zero).detach()
    if standard.abs().max() > 1e-9:
        raise Wrong(f"The KL of N(0, 1) to itself should be 0; yours is {standard.tolist()}.",
                    hint="1/2 (0 + 1 - 1 - 0) = 0 per element.")
    expect_close(kl, expected, "kl_divergence(mean, logvar)", atol=1e-9, rtol=1e-7,
                 hint="1/2 sum(mean^2 + exp(logvar) - 1 - logvar) per clip.")
    return "1/2 sum(mean^2 + var - 1 - logvar), one number per clip, zero for N(0, I)."


# --- scaling factor -------------------------------------------------------------------


def reference_scaling_factor(latents: torch.Tensor) -> float:
    """1 / std of latents over a batch of data clips: latents times it have unit variance."""
    return 1.0 / latents.std().item()


@self_check(
    "latent scaling factor", reference="vdmcourse.nn.vae.VideoVAE.fit_scaling_factor",
    more="The likely slips are the std itself instead of 1 / std, and a std per channel or clip. One "
         "number for the whole batch: return 1 / latents.std() as a float.",
)
def check_scaling_factor(scaling_factor):
    """``scaling_factor(latents)`` -> a float: latents ``(B, T, C, h, w)`` times it have std 1."""
    latents = torch.randn(16, 3, 4, 4, 4, generator=_generator(5), dtype=torch.float64) * 5.5 + 0.3
    factor = scaling_factor(latents)
    if isinstance(factor, torch.Tensor):
        if factor.numel() != 1:
            raise Wrong(f"The scaling factor is one number for the whole latent space; yours has shape {tuple(factor.shape)}.",
                        hint="Standardising each channel or clip separately changes the latents diffusion must learn; "
                             "Stable Diffusion multiplies every latent by one number (0.18215).")
        factor = factor.item()
    std = latents.std().item()
    if abs(factor - 1.0) < 1e-9:
        raise Wrong(f"A factor of 1 leaves latents of std {std:.2f}: diffusion's noise (std 1) would be "
                    "small next to them, and its schedule would be wrong for this data.",
                    mistake=LATENTS_NOT_SCALED, hint="Measure the std of the latents over the batch; the factor makes it 1.")
    if abs(factor - std) < 1e-3 * std:
        raise Wrong(f"Latents times your factor have std {std * factor:.1f}, not 1.", mistake=SCALE_INVERTED,
                    hint="Multiplying by the std makes them larger still; multiply by 1 / std.")
    if abs(std * factor - 1.0) > 1e-3:
        raise Wrong(f"Latents times your factor have std {std * factor:.3g}; they should have std 1.",
                    hint="factor = 1 / latents.std() over all elements of the batch.")
    return f"Latents of std {std:.2f} times {factor:.4f} have unit variance, as diffusion assumes."


# --- chunked encoding -----------------------------------------------------------------


def reference_encode_chunks(video: torch.Tensor, chunk_size: int) -> list[torch.Tensor]:
    """Split ``(B, T, C, H, W)`` with T = 1 + s·k into the chunks a causal encoder streams:
    frames ``0 .. chunk_size`` (the first frame and ``chunk_size`` more), then
    ``chunk_size`` at a time; each frame exactly once."""
    chunks = [video[:, : 1 + chunk_size]]
    for start in range(1 + chunk_size, video.shape[1], chunk_size):
        chunks.append(video[:, start : start + chunk_size])
    return chunks


@self_check(
    "chunks for streaming", reference="vdmcourse.nn.vae.VideoVAE.encode",
    more="The likely slips are at the boundaries: a frame repeated or dropped, or chunks that do not start"
         " at 1 + s * k. The first chunk is video[:, :1 + chunk_size]; then chunk_size frames at a time, "
         "each starting where the previous one ended, until T.",
)
def check_encode_chunks(encode_chunks):
    """``encode_chunks(video, chunk_size)`` -> list of ``(B, T_i, C, H, W)`` chunks."""
    video = torch.arange(13, dtype=torch.float32).view(1, 13, 1, 1, 1).expand(1, 13, 1, 2, 2).clone()  # frame t holds t
    chunks = encode_chunks(video, 4)
    if not isinstance(chunks, (list, tuple)) or not all(isinstance(c, torch.Tensor) for c in chunks):
        raise Wrong(f"encode_chunks should return a list of tensors; got {type(chunks).__name__}.")
    order = [int(t) for chunk in chunks for t in chunk[0, :, 0, 0, 0].tolist()]
    if len(order) > len(set(order)):
        twice = sorted({t for t in order if order.count(t) > 1})
        raise Wrong(f"Frames {twice} appear in two chunks: the decoded clip would stutter at the seam.",
                    mistake=CHUNK_DUPLICATES_FRAME,
                    hint="The causal cache already carries the frames a chunk needs from the past; chunks must not overlap.")
    missing = sorted(set(range(13)) - set(order))
    if missing:
        raise Wrong(f"Frames {missing} are in no chunk: the clip would jump at the seam.", mistake=CHUNK_DROPS_FRAME,
                    hint="Start each chunk where the previous one ended (range(1 + chunk_size, T, chunk_size)).")
    if order != list(range(13)):
        raise Wrong(f"The chunks hold the frames in the order {order}.", hint="Keep the frames in time order.")
    lengths = [chunk.shape[1] for chunk in chunks]
    if lengths[0] != 5 or any(n != 4 for n in lengths[1:]):
        raise Wrong(
            f"Your chunks have {lengths} frames; with s = 4 they should have [5, 4, 4]. The first frame is its "
            "own latent, so a chunk of 4 after it is one latent frame; chunks of 4 from frame 0 cut every "
            "latent's frames in two.",
            mistake=CHUNKS_MISALIGNED,
            hint="Take 1 + chunk_size frames first, then chunk_size at a time.",
        )
    return "Every frame exactly once, and every chunk ends on a latent frame's last frame."
