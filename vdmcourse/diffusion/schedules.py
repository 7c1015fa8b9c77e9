"""Noise schedules: where a clean sample sits on its way to pure noise at time t.

Every schedule here is a *path* ``x_t = alpha(t) * x0 + sigma(t) * eps`` with
``eps ~ N(0, I)`` and continuous time ``t`` in ``[0, 1]``: ``t = 0`` is the clean
sample, ``t = 1`` is (all but) pure noise. Models receive exactly this ``t``.

* :class:`VPSchedule` -- the variance-preserving schedules of DDPM (Ho et al. 2020):
  discrete ``betas``, ``alphas = 1 - betas``, ``alpha_bars = cumprod(alphas)``, with
  ``alpha = sqrt(alpha_bar)`` and ``sigma = sqrt(1 - alpha_bar)``. Discrete step ``i``
  of ``N`` is time ``t = i / N``; between grid points ``log alpha_bar`` is interpolated
  linearly (the step's noise spread evenly over its interval), so the continuous
  schedule equals the discrete one at every ``t = i / N``.
  :func:`linear_schedule` (Ho et al. 2020) and :func:`cosine_schedule`
  (Nichol & Dhariwal 2021) build the two classic ones.
* :class:`FlowSchedule` -- the straight path of rectified flow / flow matching
  (Liu et al. 2022; Lipman et al. 2022): ``alpha = 1 - t``, ``sigma = t``.

All of them share the closed-form forward noising :meth:`Schedule.q_sample` and the
Gaussian posterior :meth:`Schedule.posterior` ``q(x_s | x_t, x0)`` for ``s < t``
(Kingma et al. 2021, eq. 29-34), which for ``s = t - 1/N`` on a VP schedule is
DDPM's ``q(x_{t-1} | x_t, x0)``.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = [
    "Schedule",
    "VPSchedule",
    "FlowSchedule",
    "linear_schedule",
    "cosine_schedule",
    "check_time",
    "broadcast_time",
]


def check_time(t: torch.Tensor, name: str = "t") -> torch.Tensor:
    """Return ``t`` unchanged if it is a floating tensor with values in ``[0, 1]``;
    raise a ``TypeError``/``ValueError`` that says what came otherwise.

    The most common way to get this wrong is to pass DDPM's integer step
    (0..1000) where the course passes ``t = i / N``.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a float torch.Tensor with values in [0, 1]; got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor with values in [0, 1] (discrete step i of N is t = i / N); "
            f"got dtype {t.dtype}"
        )
    if t.numel() and not (t.min() >= 0 and t.max() <= 1):  # written so that NaN fails too
        raise ValueError(
            f"{name} must lie in [0, 1] (1 = pure noise; discrete step i of N is t = i / N); "
            f"got values in [{t.min().item():.4g}, {t.max().item():.4g}]"
        )
    return t


def broadcast_time(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample values of shape ``(B,)`` -- or per-frame ``(B, T)`` -- so they
    broadcast over ``x`` of shape ``(B, ...)`` (e.g. ``(B, T, C, H, W)``)."""
    if values.ndim > x.ndim or tuple(values.shape) != tuple(x.shape[: values.ndim]):
        raise ValueError(
            f"time values of shape {tuple(values.shape)} do not match the leading axes of x "
            f"of shape {tuple(x.shape)}; expected (B,) = ({x.shape[0]},) or (B, T)"
        )
    return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))


class Schedule:
    """A noising path ``x_t = alpha(t) x0 + sigma(t) eps``, ``t`` in ``[0, 1]``.

    Subclasses define :meth:`alpha_sigma`; everything else follows from it.
    """

    name = "schedule"

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), sigma(t))``, each with ``t``'s shape and dtype."""
        raise NotImplementedError

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha(t)^2 / sigma(t)^2`` (``inf`` at ``t = 0``)."""
        alpha, sigma = self.alpha_sigma(t)
        return alpha**2 / sigma**2

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Closed-form forward noising: a draw of ``q(x_t | x0)``.

        ``x0`` and ``noise`` have the same shape ``(B, ...)`` (a video: ``(B, T, C, H, W)``
        in ``[-1, 1]``); ``t`` is ``(B,)`` -- one time per clip -- or ``(B, T)`` per frame.
        Returns ``alpha(t) * x0 + sigma(t) * noise`` with ``x0``'s shape.
        """
        if noise.shape != x0.shape:
            raise ValueError(f"q_sample: noise must have x0's shape {tuple(x0.shape)}; got {tuple(noise.shape)}")
        alpha, sigma = self.alpha_sigma(t)
        return broadcast_time(alpha, x0) * x0 + broadcast_time(sigma, x0) * noise

    def posterior(
        self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the Gaussian ``q(x_s | x_t, x0)`` for ``0 <= s < t <= 1``.

        With ``alpha_ts = alpha_t / alpha_s`` and ``var_ts = sigma_t^2 - alpha_ts^2 sigma_s^2``
        (the forward step from s to t):
        ``mean = alpha_ts sigma_s^2 / sigma_t^2 * x_t + alpha_s var_ts / sigma_t^2 * x0`` and
        ``variance = var_ts sigma_s^2 / sigma_t^2``. On a VP schedule with ``s = t - 1/N``
        these are DDPM's ``mu~_t`` and ``beta~_t`` (Ho et al. 2020, eq. 6-7).

        ``x_t``, ``x0``: ``(B, ...)``; ``t``, ``s``: ``(B,)``. Returns the mean with
        ``x_t``'s shape and the variance broadcastable to it.
        """
        if x0.shape != x_t.shape:
            raise ValueError(f"posterior: x0 must have x_t's shape {tuple(x_t.shape)}; got {tuple(x0.shape)}")
        if torch.any(s >= t):
            raise ValueError("posterior: needs s < t (s is the less noisy time); got s >= t")
        alpha_t, sigma_t = self.alpha_sigma(t)
        alpha_s, sigma_s = self.alpha_sigma(s)
        alpha_ts = alpha_t / alpha_s
        var_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
        coef_xt = alpha_ts * sigma_s**2 / sigma_t**2
        coef_x0 = alpha_s * var_ts / sigma_t**2
        variance = var_ts * sigma_s**2 / sigma_t**2
        mean = broadcast_time(coef_xt, x_t) * x_t + broadcast_time(coef_x0, x_t) * x0
        return mean, broadcast_time(variance, x_t)


class VPSchedule(Schedule):
    """A variance-preserving (DDPM) schedule given by its discrete ``betas`` ``(N,)``.

    Attributes (float64, shape ``(N,)``, index ``i - 1`` holds step ``i`` = time ``i / N``):
    ``betas``, ``alphas = 1 - betas``, ``alpha_bars = cumprod(alphas)``.
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) < 1:
            raise ValueError(f"VPSchedule: betas must be a 1-D tensor of length >= 1; got shape {tuple(betas.shape)}")
        if not torch.all((betas > 0) & (betas < 1)):
            raise ValueError("VPSchedule: every beta must lie in (0, 1)")
        betas = betas.clone()  # a private copy: the caller's tensor may change later
        set_attribute = super().__setattr__
        set_attribute("name", name)
        set_attribute("num_steps", len(betas))
        set_attribute("_betas", betas)
        # log alpha_bar at t = 0, 1/N, ..., 1; interpolating in log space keeps the
        # noise rate constant inside each step.
        set_attribute("_log_alpha_bar", torch.cat([torch.zeros(1, dtype=torch.float64), torch.log(torch.cumprod(1 - betas, 0))]))

    # Immutable: linear_schedule() and cosine_schedule() hand the same cached object to
    # every caller, so the tables are returned as copies and attributes cannot be set.
    def __setattr__(self, name, value):
        raise AttributeError(f"VPSchedule is immutable; build a new one (VPSchedule(betas)) instead of setting {name!r}")

    @property
    def betas(self) -> torch.Tensor:
        return self._betas.clone()

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self._betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        return torch.cumprod(1 - self._betas, dim=0)

    def _log_alpha_bar_at(self, t: torch.Tensor) -> torch.Tensor:
        check_time(t)
        table = self._log_alpha_bar.to(device=t.device, dtype=t.dtype)
        position = t * self.num_steps
        index = position.floor().long().clamp(0, self.num_steps - 1)
        frac = position - index
        return table[index] + frac * (table[index + 1] - table[index])

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """Continuous ``alpha_bar(t)`` for ``t`` in ``[0, 1]``: 1 at ``t = 0`` and
        ``alpha_bars[i - 1]`` at ``t = i / N``. Same shape and dtype as ``t``."""
        return torch.exp(self._log_alpha_bar_at(t))

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(alpha_bar(t)), sqrt(1 - alpha_bar(t)))``."""
        log_alpha_bar = self._log_alpha_bar_at(t)
        # expm1 keeps 1 - alpha_bar accurate for t near 0
        return torch.exp(log_alpha_bar / 2), torch.sqrt(-torch.expm1(log_alpha_bar))

    def __repr__(self) -> str:
        return f"VPSchedule(name={self.name!r}, num_steps={self.num_steps})"


class FlowSchedule(Schedule):
    """The straight path of rectified flow: ``x_t = (1 - t) x0 + t eps``.

    Its velocity ``d x_t / dt = eps - x0`` is the flow-matching target; ``t = 1`` is
    pure noise (the minRF convention; Open-Sora's target ``x0 - eps`` runs the other way).
    """

    name = "flow"

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 - t, t)``."""
        check_time(t)
        return 1 - t, t.clone()

    def __repr__(self) -> str:
        return "FlowSchedule()"


@functools.lru_cache(maxsize=None)
def linear_schedule(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> VPSchedule:
    """DDPM's linear schedule (Ho et al. 2020): betas evenly spaced from
    ``beta_start`` to ``beta_end`` over ``num_steps`` steps."""
    _check_steps(num_steps)
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"linear_schedule: need 0 < beta_start <= beta_end < 1; got {beta_start}, {beta_end}")
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return VPSchedule(betas, name="linear")


@functools.lru_cache(maxsize=None)
def cosine_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> VPSchedule:
    """The cosine schedule (Nichol & Dhariwal 2021, eq. 17):
    ``alpha_bar(t) = f(t) / f(0)`` with ``f(t) = cos((t + s) / (1 + s) * pi / 2)^2``,
    turned into betas ``1 - alpha_bar(i/N) / alpha_bar((i-1)/N)`` clipped to ``max_beta``
    (the last step would otherwise be 1, a singular jump to pure noise)."""
    _check_steps(num_steps)
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    return VPSchedule(betas, name="cosine")


def _check_steps(num_steps) -> None:
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be an int >= 1; got {num_steps!r}")
