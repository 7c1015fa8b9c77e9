"""A video autoencoder (VAE) with causal 3-D convolutions, for latent video diffusion.

Every production video model (SVD, Sora, Open-Sora, CogVideoX) diffuses in the
latent space of an autoencoder, not in pixels. Lesson 06 builds this one.

* :class:`CausalConv3d` pads ``k - 1`` frames **in front only**, by replicating the
  first frame, so output frame t sees input frames ``<= t``. Its streaming mode
  keeps the input frames the next chunk still needs, so a clip encoded or decoded
  chunk by chunk gives exactly the output of the whole clip at once.
* :class:`VideoVAE`: encoder and decoder of (2+1)-D causal ResBlocks (a 3x3 conv
  per frame, then a causal conv over ``temporal_kernel`` frames) with GroupNorm per
  frame, spatial down-sampling ``2 ** (len(widths) - 1)`` (x4 by default: 32x32 ->
  8x8) and temporal down-sampling x1, x2 or x4 with the "1 + s·k frames" convention
  (CogVideoX, Open-Sora 1.2): the first frame is its own latent frame, so a single
  image (T = 1) is a valid clip and images and videos share one model.
* The posterior is a diagonal Gaussian (:class:`DiagonalGaussian`: mean and
  log-variance, ``z = mu + exp(logvar / 2) * eps``, closed-form KL to N(0, I)).
* ``scaling_factor`` (a buffer, so it is saved with the weights) is 1 / std of the
  latents over a batch of data clips (:meth:`VideoVAE.fit_scaling_factor`), as
  Stable Diffusion's 0.18215 was: diffusion then sees unit-variance latents
  (:meth:`VideoVAE.encode_latents`, :meth:`VideoVAE.decode_latents`).

Two baselines live in the same class (``VideoVAEConfig.design``), for the lesson's
comparison at equal latent size:

* ``"per_frame"``: an image autoencoder applied to each frame on its own;
* ``"temporal_decoder"``: the per-frame encoder with a decoder that has temporal
  layers -- the design of SVD's ``AutoencoderKLTemporalDecoder`` (Blattmann et al.
  2023). Like SVD's, its temporal convs are centred (they look one frame ahead),
  so it is not causal, and chunked decoding cannot be exact for it.

Layout: videos and latents are ``(B, T, C, H, W)`` at the public boundary; inside,
the conv modules work on ``(B, C, T, H, W)``. Pixels are in ``[-1, 1]``.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.func import functional_call

__all__ = [
    "DESIGNS",
    "RECONSTRUCTION_LOSSES",
    "VideoVAEConfig",
    "VideoVAE",
    "CausalConv3d",
    "CausalResBlock",
    "DiagonalGaussian",
    "PatchDiscriminator",
    "vae_loss",
    "adversarial_terms",
    "evaluator_feature_loss",
    "vae_fingerprint",
]

DESIGNS = ("causal3d", "per_frame", "temporal_decoder")
RECONSTRUCTION_LOSSES = ("l1", "mse")


@dataclass(frozen=True)
class VideoVAEConfig:
    """Everything that defines a :class:`VideoVAE` (and what its checkpoint stores).

    Attributes:
        channels: image channels C (1 for MNIST).
        latent_channels: channels of the latent (4, as Stable Diffusion's).
        widths: channels of each resolution level; each level after the first halves
            H and W, so the spatial down-sampling is ``2 ** (len(widths) - 1)``
            (3 widths: x4, 32x32 -> 8x8; 4 widths: x8, 64x64 -> 8x8).
        blocks_per_level: ResBlocks per level (encoder and decoder).
        temporal_downsample: levels after which T is halved, ``()`` / one / two levels
            for x1 / x2 / x4; each must be below the lowest level. Clips then need
            ``T = 1 + s·k`` frames and give ``1 + k`` latent frames.
        temporal_kernel: frames each causal temporal conv sees.
        design: ``"causal3d"`` (causal temporal convs in encoder and decoder),
            ``"per_frame"`` (no temporal layers: an image VAE per frame) or
            ``"temporal_decoder"`` (per-frame encoder, decoder with centred temporal
            convs, as SVD's). The last two cannot down-sample time.
        groups: GroupNorm groups (must divide every width).
        discriminator: channels of the levels of an optional per-frame patch
            discriminator (:class:`PatchDiscriminator`) trained beside the VAE for the
            adversarial term of :func:`vae_loss`; ``()`` (the default): none.
    """

    channels: int = 1
    latent_channels: int = 4
    widths: tuple[int, ...] = (32, 64, 64)
    blocks_per_level: int = 1
    temporal_downsample: tuple[int, ...] = ()
    temporal_kernel: int = 3
    design: str = "causal3d"
    groups: int = 8
    discriminator: tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("channels", "latent_channels", "blocks_per_level", "temporal_kernel", "groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"VideoVAEConfig: {name} must be a positive int; got {value!r}")
        if not isinstance(self.widths, tuple) or len(self.widths) < 1 or not all(isinstance(w, int) and w > 0 for w in self.widths):
            raise ValueError(f"VideoVAEConfig: widths must be a non-empty tuple of positive ints; got {self.widths!r}")
        if any(w % self.groups for w in self.widths):
            raise ValueError(f"VideoVAEConfig: groups={self.groups} must divide every width; got widths {self.widths}")
        if self.design not in DESIGNS:
            raise ValueError(f"VideoVAEConfig: design must be one of {DESIGNS}; got {self.design!r}")
        levels = len(self.widths) - 1
        td = self.temporal_downsample
        if not isinstance(td, tuple) or not all(isinstance(i, int) and 0 <= i < levels for i in td) or len(set(td)) != len(td):
            raise ValueError(
                f"VideoVAEConfig: temporal_downsample must be a tuple of distinct levels in [0, {levels}) "
                f"(time is halved together with space); got {td!r}"
            )
        if not isinstance(self.discriminator, tuple) or not all(isinstance(w, int) and w > 0 for w in self.discriminator):
            raise ValueError(f"VideoVAEConfig: discriminator must be a tuple of positive ints (its level widths; () for none); got {self.discriminator!r}")
        if td and self.design != "causal3d":
            raise ValueError(f"VideoVAEConfig: design={self.design!r} encodes each frame alone and cannot down-sample time; got temporal_downsample={td}")

    @property
    def spatial_compression(self) -> int:
        """H / h: how much smaller the latent is in height and width."""
        return 2 ** (len(self.widths) - 1)

    @property
    def temporal_compression(self) -> int:
        """s in ``T = 1 + s·k``: how many frames each latent frame after the first stands for."""
        return 2 ** len(self.temporal_downsample)

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip of ``frames`` = 1 + s·k frames: 1 + k."""
        return 1 + (frames - 1) // self.temporal_compression

    def decoded_frames(self, latent_frames: int) -> int:
        """Frames decoded from ``latent_frames`` = 1 + k latent frames: 1 + s·k."""
        return 1 + (latent_frames - 1) * self.temporal_compression

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(T', C_z, h, w)`` of the latent of a ``(T, C, H, W)`` clip."""
        f = self.spatial_compression
        return (self.latent_frames(frames), self.latent_channels, height // f, width // f)

    @property
    def encoder_temporal_kernel(self) -> int:
        return self.temporal_kernel if self.design == "causal3d" else 1

    @property
    def decoder_temporal_kernel(self) -> int:
        return 1 if self.design == "per_frame" else self.temporal_kernel


class CausalConv3d(nn.Module):
    """A 3-D convolution over ``(T, H, W)`` that never looks at future frames.

    Time is padded with ``kt - 1`` copies of the first frame **in front only**
    (``padding="causal"``); with ``padding="centred"`` it is padded ``(kt - 1) / 2``
    frames on both sides instead (replicating the first and last frames), which
    sees the future -- SVD's temporal decoder does that. Space is zero-padded by
    ``kh // 2`` and ``kw // 2`` on both sides.

    With ``stride=(st, ...)`` and causal padding, a clip of ``1 + st·k`` frames gives
    ``1 + k`` frames, and output frame 0 sees only input frame 0.

    Streaming (``streaming = True``, causal only): the module keeps the input frames
    the next output still needs (the last ``kt - st`` ones, when aligned) and
    prepends them to the next chunk, so chunk-by-chunk equals whole-clip to float
    rounding. :meth:`reset_stream` forgets them (a new clip).

    Input ``(B, C_in, T, H, W)``; output ``(B, C_out, T', H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel=3, stride=1, padding: str = "causal"):
        super().__init__()
        kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        if padding not in ("causal", "centred"):
            raise ValueError(f"CausalConv3d: padding must be 'causal' or 'centred'; got {padding!r}")
        if padding == "centred" and (kernel[0] % 2 == 0 or stride[0] != 1):
            raise ValueError(f"CausalConv3d: centred padding needs an odd temporal kernel and stride 1; got kernel {kernel}, stride {stride}")
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=(0, kernel[1] // 2, kernel[2] // 2))
        self.streaming = False
        self._buffer: torch.Tensor | None = None

    def reset_stream(self) -> None:
        self._buffer = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kt, st = self.kernel[0], self.stride[0]
        if self.padding == "centred":
            if self.streaming:
                raise ValueError("CausalConv3d with centred padding needs future frames and cannot stream chunk by chunk")
            half = (kt - 1) // 2
            x = torch.cat([x[:, :, :1].expand(-1, -1, half, -1, -1), x, x[:, :, -1:].expand(-1, -1, half, -1, -1)], dim=2)
            return self.conv(x)
        if not self.streaming:
            front = x[:, :, :1].expand(-1, -1, kt - 1, -1, -1)  # the first frame, repeated
            return self.conv(torch.cat([front, x], dim=2))  # (B, C_out, 1 + (T - 1) // st, H', W')
        if self._buffer is None:  # the first chunk of a clip: pad as the whole clip would be padded
            self._buffer = x[:, :, :1].expand(-1, -1, kt - 1, -1, -1)
        x = torch.cat([self._buffer, x], dim=2)
        outputs = (x.shape[2] - kt) // st + 1 if x.shape[2] >= kt else 0
        self._buffer = x[:, :, outputs * st :].detach()  # frames the next output window starts from
        if outputs == 0:
            raise ValueError(f"CausalConv3d: a chunk of {x.shape[2]} frames (with the cache) is too short for one output of a {kt}-frame kernel")
        return self.conv(x[:, :, : (outputs - 1) * st + kt])


def _frame_norm(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm with statistics per frame: a norm over (C, T, H, W) would mix frames
    (and leak the future into the past)."""
    frames = rearrange(x, "b c t h w -> (b t) c h w")
    return rearrange(norm(frames), "(b t) c h w -> b c t h w", b=x.shape[0])


class CausalResBlock(nn.Module):
    """GroupNorm (per frame) -> SiLU -> 3x3 conv per frame -> causal temporal conv
    (residual, absent when ``temporal_kernel`` is 1) -> GroupNorm -> SiLU -> 3x3 conv,
    plus the (1x1) skip. ``(B, C_in, T, H, W)`` -> ``(B, C_out, T, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, temporal_kernel: int, padding: str = "causal"):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, (1, 3, 3))
        self.temporal = CausalConv3d(out_channels, out_channels, (temporal_kernel, 1, 1), padding=padding) if temporal_kernel > 1 else None
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, (1, 3, 3))
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(_frame_norm(self.norm1, x)))  # (B, C_out, T, H, W)
        if self.temporal is not None:
            h = h + self.temporal(h)  # each frame mixes in its past (its neighbours, if centred)
        h = self.conv2(F.silu(_frame_norm(self.norm2, h)))
        return self.skip(x) + h


class TemporalUpsample(nn.Module):
    """``1 + k`` frames -> ``1 + 2k``: every frame is repeated twice except the clip's
    first, which stays one frame (it was its own latent), then a causal temporal conv.
    In streaming mode only the first chunk of a clip drops the duplicate."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, (kernel, 1, 1))
        self.streaming = False
        self._started = False

    def reset_stream(self) -> None:
        self._started = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.repeat_interleave(2, dim=2)  # (B, C, 2T, H, W)
        if not (self.streaming and self._started):
            h = h[:, :, 1:]  # the first frame of the clip is one frame, not two
        self._started = self.streaming
        return self.conv(h)


class Encoder(nn.Module):
    """``(B, C, T, H, W)`` in [-1, 1] -> moments ``(B, 2 C_z, T', h, w)`` (mean and log-variance)."""

    def __init__(self, config: VideoVAEConfig):
        super().__init__()
        kt, widths = config.encoder_temporal_kernel, config.widths
        self.input = CausalConv3d(config.channels, widths[0], (1, 3, 3))
        layers, channels = [], widths[0]
        for i, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                layers.append(CausalResBlock(channels, width, config.groups, kt))
                channels = width
            if i < len(widths) - 1:
                layers.append(CausalConv3d(width, width, (1, 3, 3), stride=(1, 2, 2)))  # H, W halved per frame
            if i in config.temporal_downsample:
                layers.append(CausalConv3d(width, width, (3, 1, 1), stride=(2, 1, 1)))  # 1 + 2k frames -> 1 + k
        layers.append(CausalResBlock(channels, channels, config.groups, kt))
        self.layers = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(config.groups, channels)
        self.output = CausalConv3d(channels, 2 * config.latent_channels, (1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.input(x))  # (B, c_last, T', h, w)
        return self.output(F.silu(_frame_norm(self.norm, h)))


class Decoder(nn.Module):
    """Latents ``(B, C_z, T', h, w)`` -> ``(B, C, T, H, W)`` (unbounded; [-1, 1] when trained)."""

    def __init__(self, config: VideoVAEConfig):
        super().__init__()
        kt, widths = config.decoder_temporal_kernel, config.widths
        padding = "centred" if config.design == "temporal_decoder" else "causal"
        channels = widths[-1]
        self.input = CausalConv3d(config.latent_channels, channels, (1, 3, 3))
        layers = [CausalResBlock(channels, channels, config.groups, kt, padding)]
        for i in reversed(range(len(widths))):
            if i < len(widths) - 1:
                if i in config.temporal_downsample:
                    layers.append(TemporalUpsample(channels, config.temporal_kernel))  # undoes the encoder's level-i halving of T
                layers.append(nn.Upsample(scale_factor=(1, 2, 2), mode="nearest"))
                layers.append(CausalConv3d(channels, channels, (1, 3, 3)))
            for _ in range(config.blocks_per_level):
                layers.append(CausalResBlock(channels, widths[i], config.groups, kt, padding))
                channels = widths[i]
        self.layers = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(config.groups, channels)
        self.output = CausalConv3d(channels, config.channels, (1, 3, 3))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.input(z))  # (B, c_0, T, H, W)
        return self.output(F.silu(_frame_norm(self.norm, h)))


class DiagonalGaussian:
    """The posterior q(z | x) = N(mean, diag(exp(logvar))), latents ``(B, T', C_z, h, w)``.

    ``sample`` is the reparameterisation ``mean + exp(logvar / 2) * eps`` (so gradients
    flow into mean and logvar); ``kl`` the closed form
    ``KL(q || N(0, I)) = 1/2 sum(mean^2 + var - 1 - logvar)`` over each clip's latent
    elements, ``(B,)``.
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)  # exp stays finite

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        return 0.5 * (self.mean.square() + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class PatchDiscriminator(nn.Module):
    """A per-frame patch discriminator (Isola et al. 2017's PatchGAN, as in VQGAN, Esser
    et al. 2021): frames ``(B, T, C, H, W)`` in [-1, 1] -> logits ``(B, T, 1, H / 2^L, W / 2^L)``,
    one per patch, for ``L = len(config.discriminator)`` stride-2 levels.

    ``updates`` (a buffer, saved with the weights) counts the training steps
    :func:`vae_loss` has seen, so the adversarial term's warm-up survives a resume.
    """

    def __init__(self, config: VideoVAEConfig):
        super().__init__()
        layers, channels = [], config.channels
        for i, width in enumerate(config.discriminator):
            layers.append(nn.Conv2d(channels, width, 4, stride=2, padding=1))
            if i:  # no norm on the first level, as in PatchGAN
                layers.append(nn.GroupNorm(math.gcd(config.groups, width), width))
            layers.append(nn.LeakyReLU(0.2))
            channels = width
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.layers = nn.Sequential(*layers)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b = frames.shape[0]
        logits = self.layers(rearrange(frames, "b t c h w -> (b t) c h w"))  # (B·T, 1, h, w)
        return rearrange(logits, "(b t) c h w -> b t c h w", b=b)


class VideoVAE(nn.Module):
    """A KL-regularised video autoencoder (see the module docstring).

    * ``encode(video, chunk_size=None) -> DiagonalGaussian`` for ``video`` ``(B, T, C, H, W)``
      in ``[-1, 1]`` with ``T = 1 + s·k``; latents ``(B, 1 + k, C_z, H / f, W / f)``.
    * ``decode(latents, chunk_size=None, cache=True) -> (B, 1 + s·k, C, H, W)``.
    * ``model(video, generator=None) -> (reconstruction, posterior)`` (training).
    * ``encode_latents`` / ``decode_latents``: the same with latents scaled by
      ``scaling_factor`` (unit variance over data), what latent diffusion sees.

    ``chunk_size`` streams the clip through the causal convs chunk by chunk (peak
    memory of one chunk); with ``cache=True`` that equals the whole-clip result.
    """

    def __init__(self, config: VideoVAEConfig | None = None):
        super().__init__()
        config = config or VideoVAEConfig()
        if not isinstance(config, VideoVAEConfig):
            raise TypeError(f"VideoVAE expects a VideoVAEConfig; got {type(config).__name__}")
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Trained beside the VAE by vae_loss's adversarial term; sampling never uses it.
        self.discriminator = PatchDiscriminator(config) if config.discriminator else None
        # NaN until fit_scaling_factor measures it; saved with the weights.
        self.register_buffer("scaling_factor", torch.tensor(float("nan")))

    def _check_video(self, video: torch.Tensor, caller: str) -> None:
        c = self.config
        if not isinstance(video, torch.Tensor) or video.dim() != 5:
            got = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
            raise ValueError(f"VideoVAE.{caller} expects a video of shape (B, T, C, H, W) in [-1, 1]; got {got}")
        frames, channels, height, width = video.shape[1:]
        if channels != c.channels:
            raise ValueError(
                f"VideoVAE.{caller} expects (B, T, C, H, W) with C={c.channels}; got {tuple(video.shape)} "
                "(is the layout (B, C, T, H, W)? use video.transpose(1, 2))"
            )
        if (frames - 1) % c.temporal_compression:
            s = c.temporal_compression
            raise ValueError(
                f"VideoVAE.{caller}: with temporal compression {s}, clips need T = 1 + {s}·k frames "
                f"(1, {1 + s}, {1 + 2 * s}, ...); got T={frames}"
            )
        f = c.spatial_compression
        if height % f or width % f:
            raise ValueError(f"VideoVAE.{caller}: H and W must be multiples of {f} (the spatial compression); got {height}x{width}")

    def _check_latents(self, latents: torch.Tensor, caller: str) -> None:
        if not isinstance(latents, torch.Tensor) or latents.dim() != 5 or latents.shape[2] != self.config.latent_channels:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"VideoVAE.{caller} expects latents of shape (B, T', {self.config.latent_channels}, h, w); got {got}")

    @contextmanager
    def _streaming(self, module: nn.Module):
        layers = [m for m in module.modules() if isinstance(m, (CausalConv3d, TemporalUpsample))]
        for layer in layers:
            layer.streaming = True
            layer.reset_stream()
        try:
            yield
        finally:
            for layer in layers:
                layer.streaming = False
                layer.reset_stream()

    def encode(self, video: torch.Tensor, chunk_size: int | None = None) -> DiagonalGaussian:
        """The posterior of ``video`` ``(B, T, C, H, W)`` in [-1, 1]. With ``chunk_size``
        (a multiple of s), the first ``1 + chunk_size`` frames go in together, then
        ``chunk_size`` at a time, through the causal cache (the same result)."""
        self._check_video(video, "encode")
        x = rearrange(video, "b t c h w -> b c t h w")
        if chunk_size is None:
            moments = self.encoder(x)
        else:
            s = self.config.temporal_compression
            if not isinstance(chunk_size, int) or chunk_size < 1 or chunk_size % s:
                raise ValueError(f"VideoVAE.encode: chunk_size must be a positive multiple of {s} (the temporal compression); got {chunk_size!r}")
            with self._streaming(self.encoder):  # the encoder is causal in every design
                starts = [0, *range(1 + chunk_size, x.shape[2], chunk_size)]
                ends = starts[1:] + [x.shape[2]]
                moments = torch.cat([self.encoder(x[:, :, a:b]) for a, b in zip(starts, ends)], dim=2)
        mean, logvar = rearrange(moments, "b (two c) t h w -> two b t c h w", two=2)
        return DiagonalGaussian(mean, logvar)

    def decode(self, latents: torch.Tensor, chunk_size: int | None = None, *, cache: bool = True) -> torch.Tensor:
        """Frames ``(B, 1 + s·k, C, H, W)`` from latents ``(B, 1 + k, C_z, h, w)``.

        ``chunk_size``: decode that many latent frames at a time. ``cache=True`` carries
        the causal convs' state across chunks (exactly the whole-clip output);
        ``cache=False`` decodes each chunk as a clip of its own, as SVD's
        ``decode_chunk_size`` does -- seams appear at chunk boundaries (and, with
        temporal compression, each chunk's first latent frame becomes one frame, not s).
        """
        self._check_latents(latents, "decode")
        z = rearrange(latents, "b t c h w -> b c t h w")
        if chunk_size is None:
            out = self.decoder(z)
        else:
            if not isinstance(chunk_size, int) or chunk_size < 1:
                raise ValueError(f"VideoVAE.decode: chunk_size must be a positive int (latent frames per chunk); got {chunk_size!r}")
            if cache and self.config.design == "temporal_decoder":
                raise ValueError(
                    "VideoVAE.decode: the temporal decoder's centred convs need future frames, so chunks cannot be "
                    "carried over exactly; decode with cache=False (independent chunks, as SVD does) or in one go"
                )
            if cache:
                with self._streaming(self.decoder):
                    out = torch.cat([self.decoder(part) for part in z.split(chunk_size, dim=2)], dim=2)
            else:
                out = torch.cat([self.decoder(part) for part in z.split(chunk_size, dim=2)], dim=2)
        return rearrange(out, "b c t h w -> b t c h w")

    def forward(self, video: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Reconstruction ``(B, T, C, H, W)`` of a posterior sample, and the posterior."""
        posterior = self.encode(video)
        return self.decode(posterior.sample(generator)), posterior

    @torch.no_grad()
    def fit_scaling_factor(self, video: torch.Tensor, generator: torch.Generator | None = None) -> float:
        """Set ``scaling_factor`` to 1 / std of posterior samples of ``video`` (a batch of
        data clips in [-1, 1]) and return it: scaled latents have unit variance."""
        latents = self.encode(video).sample(generator)
        self.scaling_factor.fill_(1.0 / latents.std().item())
        return self.scaling_factor.item()

    def _scale(self) -> torch.Tensor:
        if not torch.isfinite(self.scaling_factor):
            raise ValueError(
                "VideoVAE: scaling_factor has not been measured (it is NaN); call vae.fit_scaling_factor(clips) "
                "on a batch of data clips, or load a trained checkpoint that stores it"
            )
        return self.scaling_factor

    def encode_latents(self, video: torch.Tensor, generator: torch.Generator | None = None, *, sample: bool = True) -> torch.Tensor:
        """Unit-variance latents of ``video`` for diffusion: a posterior sample (or its
        mean with ``sample=False``) times ``scaling_factor``."""
        posterior = self.encode(video)
        latents = posterior.sample(generator) if sample else posterior.mode()
        return latents * self._scale()

    def decode_latents(self, latents: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Frames from unit-variance (diffusion) latents: ``decode(latents / scaling_factor)``."""
        return self.decode(latents / self._scale(), chunk_size)


def vae_loss(
    model: VideoVAE,
    batch: dict,
    generator: torch.Generator | None = None,
    *,
    beta: float = 1e-4,
    reconstruction: str = "l1",
    evaluator: nn.Module | None = None,
    feature_weight: float = 0.0,
    adversarial_weight: float = 0.0,
    adversarial_start: int = 0,
) -> torch.Tensor:
    """The VAE's training loss on ``batch["video"]`` ``(B, T, C, H, W)`` in [0, 1]:

    ``rec + beta * KL / (T·C·H·W) + feature_weight * features``, with ``rec`` the mean
    L1 or squared error in [-1, 1], KL summed over each clip's latent elements and
    averaged over clips (divided by the clip's pixel count, so ``beta`` is per pixel
    as in Rombach et al. 2022), and ``features`` :func:`evaluator_feature_loss` on the
    course's own :class:`~vdmcourse.metrics.Evaluator` (no downloaded LPIPS).

    With ``adversarial_weight > 0`` (the model needs a ``config.discriminator``), after
    ``adversarial_start`` training steps it adds ``lambda * generator + discriminator``
    from :func:`adversarial_terms`: one backward pass trains the VAE against a frozen
    copy of the discriminator and the discriminator on detached reconstructions.
    ``lambda = adversarial_weight * |grad rec| / |grad generator|`` at the decoder's
    last layer (VQGAN's adaptive weight, Esser et al. 2021 eq. 7), so the term keeps
    a fixed share of the reconstruction's pull whatever their scales.
    """
    if reconstruction not in RECONSTRUCTION_LOSSES:
        raise ValueError(f"vae_loss: reconstruction must be one of {RECONSTRUCTION_LOSSES}; got {reconstruction!r}")
    video = batch["video"]
    target = video * 2 - 1
    recon, posterior = model(target, generator)
    error = recon - target
    rec = error.abs().mean() if reconstruction == "l1" else error.square().mean()
    loss = rec + beta * posterior.kl().mean() / video[0].numel()
    if feature_weight:
        if evaluator is None:
            raise ValueError("vae_loss: feature_weight > 0 needs the evaluator whose features are matched")
        loss = loss + feature_weight * evaluator_feature_loss(evaluator, ((recon + 1) / 2).clamp(0, 1), video)
    if adversarial_weight:
        discriminator = model.discriminator
        if discriminator is None:
            raise ValueError("vae_loss: adversarial_weight > 0 needs a VAE built with a discriminator (VideoVAEConfig(discriminator=(32, 64)))")
        steps_seen = int(discriminator.updates)
        if model.training:
            discriminator.updates += 1
        if steps_seen >= adversarial_start:
            generator_loss, discriminator_loss = adversarial_terms(discriminator, recon, target)
            weight = adversarial_weight * _adaptive_weight(rec, generator_loss, model.decoder.output.conv.weight)
            loss = loss + weight * generator_loss + discriminator_loss
    return loss


def adversarial_terms(discriminator: PatchDiscriminator, reconstruction: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hinge GAN losses (Lim & Ye 2017, as in VQGAN) for clips ``(B, T, C, H, W)`` in [-1, 1]:

    * generator: ``-mean D(reconstruction)`` through a frozen copy of ``D`` (its
      gradient reaches the VAE, never the discriminator);
    * discriminator: ``mean relu(1 - D(target)) + mean relu(1 + D(reconstruction))`` on
      detached reconstructions (its gradient reaches the discriminator, never the VAE).
    """
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    generator_loss = -functional_call(discriminator, frozen, (reconstruction,)).mean()
    discriminator_loss = F.relu(1 - discriminator(target)).mean() + F.relu(1 + discriminator(reconstruction.detach())).mean()
    return generator_loss, discriminator_loss


def _adaptive_weight(reconstruction_loss: torch.Tensor, generator_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """``|d rec / d W| / (|d gen / d W| + 1e-4)`` at the decoder's last weights ``W``,
    clamped to [0, 1e4] and detached (VQGAN's ``calculate_adaptive_weight``); 1 without autograd."""
    if not (torch.is_grad_enabled() and last_layer.requires_grad and generator_loss.requires_grad):
        return generator_loss.new_ones(())
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gen_grad.norm() + 1e-4)).clamp(0, 1e4).detach()


def evaluator_feature_loss(evaluator: nn.Module, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the course Evaluator's stage activations (a perceptual
    loss on features trained on Moving MNIST) between clips ``(B, T, 1, H, W)`` in [0, 1]."""
    h_rec = rearrange(evaluator.check_clips(reconstruction, "evaluator_feature_loss") * 2 - 1, "b t c h w -> b c t h w")
    with torch.no_grad():
        h_tgt = rearrange(target * 2 - 1, "b t c h w -> b c t h w")
    loss = reconstruction.new_zeros(())
    for stage in evaluator.stages:
        h_rec = stage(h_rec)
        with torch.no_grad():
            h_tgt = stage(h_tgt)
        loss = loss + (h_rec - h_tgt).square().mean()
    return loss / len(evaluator.stages)


def vae_fingerprint(model: VideoVAE) -> str:
    """SHA-256 (hex) of a VAE's weights and scaling factor: what a latent diffusion
    checkpoint records to refuse any other VAE."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()
