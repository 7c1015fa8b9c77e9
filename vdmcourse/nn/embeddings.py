"""Embeddings: diffusion time, class labels, and position in space and time.

* :func:`sinusoidal_embedding` -- the Transformer / DDPM sinusoid of a scalar per row.
* :class:`TimestepEmbedding` -- diffusion time ``t`` in ``[0, 1]`` -> a vector (DiT's
  ``TimestepEmbedder``: 256-d sinusoid -> Linear -> SiLU -> Linear).
* :class:`LabelEmbedding` and :func:`drop_labels` -- digit labels, with one extra
  *null* row for classifier-free guidance (Ho & Salimans 2022).
* Sin-cos position tables over 1, 2 or 3 axes (:func:`sincos_table_1d`,
  :func:`sincos_table_2d`, :func:`sincos_table_3d`), computed on the fly so they fit
  any length, and :class:`PositionTable`, a *stored* table of fixed length that
  refuses longer inputs -- the contrast lesson 02 draws.
* Position over time inside attention: rotary embeddings (:func:`apply_rope`,
  Su et al. 2021) and a T5-style :class:`RelativePositionBias` (Raffel et al. 2020),
  both of which work for any number of frames.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "sinusoidal_embedding",
    "TimestepEmbedding",
    "LabelEmbedding",
    "drop_labels",
    "sincos_table_1d",
    "sincos_table_2d",
    "sincos_table_3d",
    "PositionTable",
    "apply_rope",
    "RelativePositionBias",
]


def _check_dim(dim, who: str, *, even: bool = False, minimum: int = 1) -> None:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < minimum or (even and dim % 2):
        kind = "an even int" if even else "an int"
        raise ValueError(f"{who}: dim must be {kind} >= {minimum}; got {dim!r}")


def _check_length(value, name: str, who: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive int; got {value!r}")


def _check_position_scale(value, name: str, who: str) -> float:
    """``value`` as a float if it is a finite number > 0 (a factor on positions), else a
    ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{who}: {name} must be a finite number > 0 (a factor on positions); got {value!r}")
    return float(value)


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of one scalar per row (Vaswani et al. 2017; DDPM; DiT).

    Row ``n`` is ``[cos(t_n f_0), ..., cos(t_n f_{h-1}), sin(t_n f_0), ..., sin(t_n f_{h-1})]``
    with ``h = dim // 2`` frequencies ``f_i = max_period ** (-i / h)``, from 1 down
    to nearly ``1 / max_period``; an odd ``dim`` gets a final zero column.

    Args:
        t: shape ``(N,)``, any real values (positions, or diffusion time already
            scaled to about ``[0, 1000]``).
        dim: width of the embedding.
        max_period: the slowest wavelength.

    Returns:
        ``(N, dim)``, values in ``[-1, 1]``; float32, or float64 for float64 ``t``.
    """
    if not isinstance(t, torch.Tensor) or t.ndim != 1:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"sinusoidal_embedding: t must be a tensor of shape (N,); got {got}")
    _check_dim(dim, "sinusoidal_embedding")
    dtype = torch.promote_types(t.dtype, torch.float32)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=t.device) / half)  # (h,)
    args = t.to(dtype)[:, None] * freqs[None]  # (N, h)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 2h)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)  # (N, dim)
    return embedding


class TimestepEmbedding(nn.Module):
    """Diffusion time -> a conditioning vector (DiT's ``TimestepEmbedder``).

    ``t`` in ``[0, 1]`` (1 = pure noise) is multiplied by 1000 inside, so the
    sinusoid sees the same range as DDPM's integer steps 0..1000; then a
    ``frequency_dim``-wide sinusoid -> Linear -> SiLU -> Linear, both weights drawn
    with std 0.02 and biases zero, as in DiT.

    Input ``t``: float ``(B,)`` in ``[0, 1]``. Output: ``(B, dim)``.
    """

    scale = 1000.0

    def __init__(self, dim: int, frequency_dim: int = 256):
        super().__init__()
        _check_dim(dim, "TimestepEmbedding")
        _check_dim(frequency_dim, "TimestepEmbedding (frequency_dim)")
        self.dim = dim
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.ndim != 1:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"TimestepEmbedding expects t of shape (B,); got {got}")
        if not t.is_floating_point():
            raise TypeError(
                f"TimestepEmbedding expects float t in [0, 1]; got dtype {t.dtype} "
                "(a discrete step i of N is t = i / N)"
            )
        if t.numel() and not (t.min() >= 0 and t.max() <= 1):  # written so that NaN fails too
            raise ValueError(
                f"TimestepEmbedding expects t in [0, 1] (1 = pure noise); got values in "
                f"[{t.min().item():.4g}, {t.max().item():.4g}]"
            )
        frequencies = sinusoidal_embedding(t * self.scale, self.frequency_dim)  # (B, frequency_dim)
        return self.mlp(frequencies.to(self.mlp[0].weight.dtype))  # (B, dim)


def drop_labels(
    labels: torch.Tensor, p: float, *, null_label: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each sample's labels by the null label with probability ``p``.

    This is the label dropout of classifier-free guidance training (DiT uses
    ``p = 0.1``): the model learns the unconditional prediction from the same weights.
    For ``(B, K)`` labels a dropped sample loses all K labels at once.

    Args:
        labels: long ``(B,)`` or ``(B, K)``.
        p: drop probability in ``[0, 1]``.
        null_label: the value meaning "no label" (``LabelEmbedding.null_label``).
        generator: a ``torch.Generator`` for reproducible drops.

    Returns:
        A new tensor of ``labels``' shape; ``labels`` is not changed.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim not in (1, 2):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"drop_labels: labels must have shape (B,) or (B, K); got {got}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop_labels: p must be in [0, 1]; got {p!r}")
    device = generator.device if generator is not None else labels.device
    dropped = torch.rand(labels.shape[0], generator=generator, device=device).to(labels.device) < p  # (B,)
    if labels.ndim == 2:
        dropped = dropped[:, None]  # (B, 1), broadcast over the K labels
    return torch.where(dropped, torch.full_like(labels, null_label), labels)


class LabelEmbedding(nn.Module):
    """Class labels -> a conditioning vector, with a null label for guidance.

    The table has ``num_classes + 1`` rows, drawn with std 0.02 (DiT); row
    ``num_classes`` (:attr:`null_label`) stands for "no label" and is what
    classifier-free guidance conditions on for the unconditional prediction.

    Input: long ``(B,)``, or ``(B, K)`` for K labels per clip (e.g. the K digits of a
    Moving MNIST clip), values in ``[0, num_classes]``. The K embeddings are summed,
    so the digit order does not matter. Output: ``(B, dim)``.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        _check_length(num_classes, "num_classes", "LabelEmbedding")
        _check_dim(dim, "LabelEmbedding")
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor) or labels.ndim not in (1, 2):
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"LabelEmbedding expects labels of shape (B,) or (B, K); got {got}")
        if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise TypeError(f"LabelEmbedding expects integer labels; got dtype {labels.dtype}")
        if labels.numel() and (labels.min() < 0 or labels.max() > self.null_label):
            raise ValueError(
                f"LabelEmbedding expects labels in [0, {self.null_label}] ({self.null_label} = null label); "
                f"got values in [{labels.min().item()}, {labels.max().item()}]"
            )
        embedded = self.table(labels.long())  # (B, dim) or (B, K, dim)
        return embedded.sum(dim=1) if labels.ndim == 2 else embedded  # (B, dim)

    def drop_labels(self, labels: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """:func:`drop_labels` with this table's null label."""
        return drop_labels(labels, p, null_label=self.null_label, generator=generator)


def sincos_table_1d(length: int, dim: int, *, start: int = 0, scale: float = 1.0, device=None) -> torch.Tensor:
    """Sin-cos embedding of positions ``start, ..., start + length - 1``, each times ``scale``.

    Computed on the fly, so any length works (no table to outgrow). ``scale`` below 1
    squeezes the positions together: *position interpolation* (Chen et al. 2023), which
    maps a sequence longer than any trained onto the range of positions training saw
    (``scale = trained / asked``). Returns a float32 ``(length, dim)`` tensor with values
    in ``[-1, 1]``.
    """
    _check_length(length, "length", "sincos_table_1d")
    _check_dim(dim, "sincos_table_1d")
    scale = _check_position_scale(scale, "scale", "sincos_table_1d")
    positions = torch.arange(start, start + length, dtype=torch.float32, device=device)  # (L,)
    return sinusoidal_embedding(positions if scale == 1.0 else positions * scale, dim)  # (L, dim)


def sincos_table_2d(height: int, width: int, dim: int, *, device=None) -> torch.Tensor:
    """Sin-cos position table of an ``height x width`` grid, channels last.

    The first half of the channels encodes the row, the second half the column
    (as in MAE / DiT). ``dim`` must be even. Returns float32 ``(H, W, dim)``.
    """
    _check_length(height, "height", "sincos_table_2d")
    _check_length(width, "width", "sincos_table_2d")
    _check_dim(dim, "sincos_table_2d", even=True, minimum=2)
    rows = sincos_table_1d(height, dim // 2, device=device)  # (H, dim/2)
    cols = sincos_table_1d(width, dim // 2, device=device)  # (W, dim/2)
    return torch.cat(
        [rows[:, None].expand(height, width, -1), cols[None].expand(height, width, -1)], dim=-1
    )  # (H, W, dim)


def sincos_table_3d(frames: int, height: int, width: int, dim: int, *, time_scale: float = 1.0, device=None) -> torch.Tensor:
    """Sin-cos position table of a ``frames x height x width`` grid, channels last.

    The channels are split into three even parts -- rows and columns get
    ``2 * (dim // 6)`` each, time gets the rest -- and each part encodes its own
    axis. ``dim`` must be even and at least 6. ``time_scale`` multiplies the frame
    positions only (position interpolation in time, see :func:`sincos_table_1d`).
    Returns float32 ``(T, H, W, dim)``.
    """
    for value, name in ((frames, "frames"), (height, "height"), (width, "width")):
        _check_length(value, name, "sincos_table_3d")
    _check_dim(dim, "sincos_table_3d", even=True, minimum=6)
    spatial = 2 * (dim // 6)
    shape = (frames, height, width, -1)
    time_scale = _check_position_scale(time_scale, "time_scale", "sincos_table_3d")
    time = sincos_table_1d(frames, dim - 2 * spatial, scale=time_scale, device=device)[:, None, None]  # (T, 1, 1, d_t)
    rows = sincos_table_1d(height, spatial, device=device)[None, :, None]  # (1, H, 1, d_s)
    cols = sincos_table_1d(width, spatial, device=device)[None, None, :]  # (1, 1, W, d_s)
    return torch.cat([time.expand(shape), rows.expand(shape), cols.expand(shape)], dim=-1)  # (T, H, W, dim)


class PositionTable(nn.Module):
    """A *stored* table of ``max_len`` position vectors: frozen sin-cos or learned.

    The kind of table that fixes the longest sequence a model can take: asking
    for more positions than it holds raises ``ValueError``. (The on-the-fly
    :func:`sincos_table_1d` and :func:`apply_rope` have no such limit.)

    ``forward(length)`` returns ``(length, dim)``, rows ``0 .. length - 1``.
    """

    def __init__(self, max_len: int, dim: int, *, learned: bool = False):
        super().__init__()
        _check_length(max_len, "max_len", "PositionTable")
        _check_dim(dim, "PositionTable")
        self.max_len = max_len
        self.learned = learned
        if learned:
            self.table = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        else:
            self.register_buffer("table", sincos_table_1d(max_len, dim), persistent=False)  # (max_len, dim)

    def forward(self, length: int) -> torch.Tensor:
        _check_length(length, "length", "PositionTable")
        if length > self.max_len:
            raise ValueError(
                f"PositionTable holds {self.max_len} positions; got length={length}. "
                "A stored table cannot grow: build it larger, or use an on-the-fly position "
                "(sincos_table_1d or RoPE) that works for any number of frames."
            )
        return self.table[:length]  # (length, dim)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (RoFormer, Su et al. 2021) along the sequence axis.

    Channel pairs ``(i, i + d/2)`` of the vector at position ``m`` are rotated by the
    angle ``m * base ** (-2i / d)``. Applied to queries and keys, the score
    ``<rope(q, m), rope(k, n)>`` depends on the positions only through ``m - n``:
    attention sees *relative* time, for any number of frames.

    Args:
        x: ``(..., N, d)`` with ``d`` even (e.g. ``(B, heads, T, head_dim)``).
        positions: ``(N,)`` positions (frame indices; may be offset or fractional).
        base: the slowest wavelength.

    Returns:
        A tensor of ``x``'s shape and dtype.
    """
    if x.ndim < 2 or x.shape[-1] % 2:
        raise ValueError(f"apply_rope expects x of shape (..., N, d) with even d; got {tuple(x.shape)}")
    if positions.ndim != 1 or positions.shape[0] != x.shape[-2]:
        raise ValueError(
            f"apply_rope: positions must have shape (N,) with N={x.shape[-2]} (x's second-to-last axis); "
            f"got {tuple(positions.shape)}"
        )
    half = x.shape[-1] // 2
    dtype = torch.promote_types(x.dtype, torch.float32)
    freqs = base ** (-torch.arange(half, dtype=dtype, device=x.device) / half)  # (d/2,)
    angles = positions.to(device=x.device, dtype=dtype)[:, None] * freqs[None]  # (N, d/2)
    cos, sin = torch.cos(angles), torch.sin(angles)
    first, second = x.to(dtype)[..., :half], x.to(dtype)[..., half:]  # (..., N, d/2) each
    rotated = torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)  # (..., N, d)
    return rotated.to(x.dtype)


class RelativePositionBias(nn.Module):
    """A learned additive attention bias per head from the offset between frames (T5).

    Offsets ``j - i`` fall in ``num_buckets`` buckets: exact for small ``|j - i|``,
    logarithmic up to ``max_distance``, and every farther offset shares the last
    bucket -- so any number of frames works. Used by the factorised video U-Net of
    Ho et al. 2022 (relative position embeddings over time, not RoPE). Zero-initialised: no bias at the start.

    ``forward(length)`` returns a float ``(heads, length, length)`` bias to add to
    the attention scores (query ``i``, key ``j``).
    """

    def __init__(self, heads: int, *, num_buckets: int = 32, max_distance: int = 128):
        super().__init__()
        _check_length(heads, "heads", "RelativePositionBias")
        if not isinstance(num_buckets, int) or num_buckets < 4 or num_buckets % 2:
            raise ValueError(f"RelativePositionBias: num_buckets must be an even int >= 4; got {num_buckets!r}")
        if not isinstance(max_distance, int) or max_distance <= num_buckets // 4:
            raise ValueError(
                f"RelativePositionBias: max_distance must be an int > num_buckets // 4 = {num_buckets // 4}; "
                f"got {max_distance!r}"
            )
        self.heads = heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bias = nn.Embedding(num_buckets, heads)
        nn.init.zeros_(self.bias.weight)

    def bucket(self, offset: torch.Tensor) -> torch.Tensor:
        """Bucket index in ``[0, num_buckets)`` of each integer offset ``j - i``."""
        half = self.num_buckets // 2  # one half for keys before the query, one for after
        exact = half // 2
        side = (offset > 0).long() * half
        distance = offset.abs()
        far = exact + (
            torch.log(distance.float().clamp(min=1) / exact) / math.log(self.max_distance / exact) * (half - exact)
        ).long()
        far = far.clamp(max=half - 1)
        return side + torch.where(distance < exact, distance, far)

    def forward(self, length: int) -> torch.Tensor:
        _check_length(length, "length", "RelativePositionBias")
        position = torch.arange(length, device=self.bias.weight.device)
        offset = position[None, :] - position[:, None]  # (T, T): key minus query
        return self.bias(self.bucket(offset)).permute(2, 0, 1)  # (heads, T, T)
