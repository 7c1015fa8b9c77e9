"""Self-checks for lesson 04, Diffusion for video.

* :func:`check_add_noise` -- the straight (flow) path ``x_t = (1 - t) x0 + t eps``, one t per clip;
* :func:`check_eps_to_x0` -- the clean clip implied by a noise prediction on a DDPM schedule;
* :func:`check_velocity_to_x0` -- the clean clip implied by a flow velocity;
* :func:`check_flow_loss` -- a whole flow-matching training loss on clips.

Each compares the learner's function with ``vdmcourse.diffusion`` on small inputs
and names the mistakes people really make: time broadcast over the frame axis,
time reversed, the flow sign flipped, the timestep scale of DDPM (0..1000) where the
course uses ``t`` in ``[0, 1]``, a square root forgotten.
"""

from __future__ import annotations

import torch

from vdmcourse.diffusion import FlowSchedule, predict_x0_eps
from vdmcourse.exercises.harness import Wrong, expect_close, expect_shape, self_check

__all__ = [
    "PER_FRAME_T",
    "TIME_REVERSED",
    "FLOW_SIGN",
    "MISSING_SQRT",
    "TIME_SCALE",
    "NOISE_TARGET",
    "NOT_BROADCAST",
    "SUM_NOT_MEAN",
    "GENERATOR_IGNORED",
    "check_add_noise",
    "check_eps_to_x0",
    "check_velocity_to_x0",
    "check_flow_loss",
]

PER_FRAME_T = "noise added per frame with different t (one t per clip was meant)"
TIME_REVERSED = "time reversed (t = 1 treated as the clean clip)"
FLOW_SIGN = "flow sign flipped (target x0 - eps under our convention)"
MISSING_SQRT = "alpha_bar used where sqrt(alpha_bar) belongs"
TIME_SCALE = "timestep scale mismatched (t in [0, 1000] where the model expects [0, 1])"
NOISE_TARGET = "noise eps as the target instead of the velocity eps - x0"
NOT_BROADCAST = "a (B,) tensor multiplied with a (B, T, C, H, W) clip without reshaping"
SUM_NOT_MEAN = "the squared errors summed instead of averaged"
GENERATOR_IGNORED = "the randomness does not come from the generator it was given"


def _call(fn, *args, what: str):
    """Call the learner's ``fn``; a broadcasting error of a (B,) tensor against a clip is
    the exercise's classic trap, so name it instead of showing the raw RuntimeError."""
    try:
        return fn(*args)
    except RuntimeError as error:
        text = str(error)
        if "must match the size" in text or "broadcast" in text:
            raise Wrong(
                f"{what} raised: {text}. A tensor with one value per clip, shape (B,), lines up with the "
                "*last* axis of a (B, T, C, H, W) clip, not the first.",
                mistake=NOT_BROADCAST,
                hint="Reshape it to (B, 1, 1, 1, 1) first: t.view(-1, 1, 1, 1, 1) (or t[:, None, None, None, None]).",
                more="x_t = (1 - t.view(-1, 1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1, 1) * eps.",
            ) from None
        raise

# Four clips of four frames: with B == T, time broadcast over the frame axis runs silently.
_B, _T = 4, 4


def _clips(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(_B, _T, 1, 3, 3, generator=g) * 2 - 1  # (B, T, C, H, W) in [-1, 1]
    eps = torch.randn(_B, _T, 1, 3, 3, generator=g)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])  # (B,)
    return x0, eps, t


def _per_frame(t: torch.Tensor) -> torch.Tensor:
    """What ``t.view(-1, 1, 1, 1)`` does to a (B, T, C, H, W) clip: t indexed by frame."""
    return t.view(1, -1, 1, 1, 1)


@self_check(
    "Noising a clip on the flow path", reference="vdmcourse.diffusion.FlowSchedule().q_sample",
    more="The likely slips are t not reshaped (a (B,) tensor against (B, T, C, H, W)), one t per frame, or"
         " the roles of x0 and eps swapped. Reshape once, tb = t.view(-1, 1, 1, 1, 1), and return (1 - tb)"
         " * x0 + tb * eps: t = 0 is the clean clip, t = 1 pure noise.",
)
def check_add_noise(add_noise):
    """``add_noise(x0, t, eps) -> x_t``: clips ``(B, T, C, H, W)``, ``t`` of shape ``(B,)`` in [0, 1];
    ``x_t = (1 - t) x0 + t eps`` with each clip's t shared by all of its frames."""
    x0, eps, t = _clips()
    out = _call(add_noise, x0.clone(), t.clone(), eps.clone(), what="add_noise(x0, t, eps)")
    expect_shape(out, tuple(x0.shape), "add_noise(x0, t, eps)", hint="x_t has the clip's shape.")
    out = out.float()
    if torch.allclose(out, (1 - _per_frame(t)) * x0 + _per_frame(t) * eps, atol=1e-6):
        raise Wrong(
            "The noise level changes from frame to frame inside a clip: t landed on the frame axis.",
            mistake=PER_FRAME_T,
            hint="t has shape (B,); reshape it to (B, 1, 1, 1, 1) -- one axis per clip dimension -- before multiplying.",
        )
    tb = t.view(-1, 1, 1, 1, 1)
    if torch.allclose(out, tb * x0 + (1 - tb) * eps, atol=1e-6):
        raise Wrong(
            "At t = 0.95 your clip is almost clean and at t = 0.1 almost noise: time runs backwards.",
            mistake=TIME_REVERSED,
            hint="In the course t = 1 is pure noise: x_t = (1 - t) * x0 + t * eps.",
        )
    expect_close(out, FlowSchedule().q_sample(x0, t, eps), "x_t", hint="x_t = (1 - t) * x0 + t * eps, t reshaped to (B, 1, 1, 1, 1).")
    return "x_t = (1 - t) x0 + t eps, one t per clip."


@self_check(
    "From a noise prediction to the clean clip", reference="vdmcourse.diffusion.predict_x0_eps",
    more="The likely slips are alpha_bar where sqrt(alpha_bar) belongs and a (B,) alpha_bar not reshaped. "
         "Solve x_t = sqrt(ab) x0 + sqrt(1 - ab) eps for x0: ab = alpha_bar.view(-1, 1, 1, 1, 1); x0 = "
         "(x_t - (1 - ab).sqrt() * eps_hat) / ab.sqrt().",
)
def check_eps_to_x0(eps_to_x0):
    """``eps_to_x0(eps_hat, x_t, alpha_bar) -> x0_hat`` on a DDPM (variance-preserving) path
    ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps``; ``alpha_bar`` has shape ``(B,)``."""
    x0, eps, _ = _clips(1)
    alpha_bar = torch.tensor([0.9, 0.5, 0.2, 0.05])  # (B,)
    ab = alpha_bar.view(-1, 1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    out = _call(eps_to_x0, eps.clone(), x_t.clone(), alpha_bar.clone(), what="eps_to_x0(eps_hat, x_t, alpha_bar)")
    expect_shape(out, tuple(x0.shape), "eps_to_x0(eps_hat, x_t, alpha_bar)")
    out = out.float()
    if torch.allclose(out, (x_t - (1 - ab) * eps) / ab, atol=1e-5):
        raise Wrong(
            "The recovered clip is off by a factor that grows with the noise.",
            mistake=MISSING_SQRT,
            hint="The signal's coefficient is sqrt(alpha_bar), the noise's is sqrt(1 - alpha_bar).",
        )
    ab_frames = alpha_bar.view(1, -1, 1, 1, 1)
    if torch.allclose(out, (x_t - (1 - ab_frames).sqrt() * eps) / ab_frames.sqrt(), atol=1e-5):
        raise Wrong("alpha_bar was applied per frame instead of per clip.", mistake=PER_FRAME_T,
                    hint="Reshape alpha_bar (B,) to (B, 1, 1, 1, 1).")
    expect_close(out, x0, "x0_hat", atol=1e-4, hint="Solve x_t = sqrt(ab) x0 + sqrt(1 - ab) eps for x0.")
    return "x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar): exact."


@self_check(
    "From a flow velocity to the clean clip", reference="vdmcourse.diffusion.predict_x0_eps",
    more="The likely slips are the sign of the velocity (u = eps - x0 here) and a (B,) t not reshaped. "
         "Since x_t = x0 + t * u, x0 = x_t - t.view(-1, 1, 1, 1, 1) * u.",
)
def check_velocity_to_x0(velocity_to_x0):
    """``velocity_to_x0(u, x_t, t) -> x0_hat`` for the flow path ``x_t = (1 - t) x0 + t eps`` and
    velocity ``u = eps - x0``; ``t`` has shape ``(B,)``."""
    x0, eps, t = _clips(2)
    tb = t.view(-1, 1, 1, 1, 1)
    x_t = (1 - tb) * x0 + tb * eps
    u = eps - x0
    out = _call(velocity_to_x0, u.clone(), x_t.clone(), t.clone(), what="velocity_to_x0(u, x_t, t)")
    expect_shape(out, tuple(x0.shape), "velocity_to_x0(u, x_t, t)")
    out = out.float()
    if torch.allclose(out, x_t + tb * u, atol=1e-5):
        raise Wrong(
            "You stepped *along* the velocity, further into the noise.",
            mistake=FLOW_SIGN,
            hint="u = eps - x0 points from data to noise; to reach x0 from x_t go back by t: x0 = x_t - t * u.",
        )
    if torch.allclose(out, x_t - _per_frame(t) * u, atol=1e-5):
        raise Wrong("t was applied per frame instead of per clip.", mistake=PER_FRAME_T,
                    hint="Reshape t (B,) to (B, 1, 1, 1, 1).")
    want, _ = predict_x0_eps(u, x_t, t, objective="flow")
    expect_close(out, want, "x0_hat", atol=1e-5, hint="x_t - x0 = t (eps - x0) = t u.")
    return "x0 = x_t - t u: exact on the straight path."


class _Probe(torch.nn.Module):
    """Knows the clean clips (constant ``level`` per clip), remembers what it is given, and
    answers with one objective's exact target read off ``x_t`` -- an oracle."""

    def __init__(self, level: torch.Tensor, answer: str):
        super().__init__()
        self.level, self.answer = level, answer
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x_t, t, cond=None):
        t = torch.as_tensor(t)
        self.seen.append((x_t.detach(), t.detach()))
        if tuple(t.shape) != (len(self.level),) or x_t.shape[0] != len(self.level):
            return torch.zeros_like(x_t) + self.bias  # the check reports the shape mistake
        tb = t.to(x_t.dtype).clamp(1e-4, 1).view(-1, 1, 1, 1, 1)
        x0 = self.level.view(-1, 1, 1, 1, 1).expand_as(x_t)
        eps = (x_t - (1 - tb) * x0) / tb
        out = {"flow": eps - x0, "flipped": x0 - eps, "eps": eps, "off by 0.5": eps - x0 + 0.5}[self.answer]
        return out + self.bias


def _probe_clips() -> tuple[torch.Tensor, torch.Tensor]:
    level = torch.linspace(-0.8, 0.8, 32)  # (B,): each clip is one constant grey level
    return level, level.view(-1, 1, 1, 1, 1).expand(32, 4, 1, 24, 24).clone()  # (B, T, C, H, W)


def _loss(flow_loss, answer: str, seed: int = 0):
    level, x0 = _probe_clips()
    probe = _Probe(level, answer)
    loss = _call(flow_loss, probe, x0.clone(), torch.Generator().manual_seed(seed), what="flow_loss(model, x0, generator)")
    return probe, loss


@self_check(
    "A flow-matching loss on clips", reference="vdmcourse.diffusion.training_loss",
    more="The likely slips are a sum for the mean, global randomness instead of the generator, and the "
         "wrong target. Compare with these five lines, one at a time: t = torch.rand(B, "
         "generator=generator) (one t per clip); eps = torch.randn(x0.shape, generator=generator); x_t = "
         "(1 - tb) * x0 + tb * eps with tb = t.view(-1, 1, 1, 1, 1); prediction = model(x_t, t); return "
         "((prediction - (eps - x0)) ** 2).mean().",
)
def check_flow_loss(flow_loss):
    """``flow_loss(model, x0, generator) -> scalar``: clips ``x0`` ``(B, T, C, H, W)`` in [-1, 1];
    draw one ``t ~ U[0, 1]`` per clip and ``eps ~ N(0, I)`` (with ``generator``), build
    ``x_t = (1 - t) x0 + t eps``, call ``model(x_t, t)`` and return the MSE to ``eps - x0``."""
    probe, loss = _loss(flow_loss, "flow")
    if not probe.seen:
        raise Wrong("flow_loss never called the model.", hint="Call model(x_t, t) and compare its output with the target.")
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise Wrong("flow_loss should return a scalar tensor (the mean squared error).",
                    hint="Use F.mse_loss(output, target) or ((output - target) ** 2).mean().")
    x_t, t = probe.seen[0]
    if not t.is_floating_point() or t.max() > 1.5:
        raise Wrong(
            f"The model was given t up to {t.max().item():.4g}; the course's models take t in [0, 1].",
            mistake=TIME_SCALE,
            hint="Draw t with torch.rand (in [0, 1)), not torch.randint(0, 1000); DDPM's step i of N is t = i / N.",
        )
    if t.ndim != 1 or t.shape[0] != x_t.shape[0]:
        raise Wrong(
            f"The model was given t of shape {tuple(t.shape)}; one t per clip has shape ({x_t.shape[0]},).",
            mistake=PER_FRAME_T,
            hint="t = torch.rand(B, generator=generator): one noise level per clip, shared by its frames.",
        )
    # Each clean clip is constant, so a frame's spread over its pixels is its noise level t.
    frame_t = x_t.std(dim=(2, 3, 4))  # (B, T)
    if (frame_t.amax(1) - frame_t.amin(1)).max() > 0.15:
        raise Wrong("Frames of one clip carry different noise levels.", mistake=PER_FRAME_T,
                    hint="Reshape t (B,) to (B, 1, 1, 1, 1) when mixing x0 and eps.")
    if (frame_t - t[:, None]).abs().max() > 0.1:
        reversed_time = (frame_t - (1 - t[:, None])).abs().max() < 0.1
        raise Wrong(
            "x_t does not carry the noise level t that the model was given.",
            mistake=TIME_REVERSED if reversed_time else None,
            hint="Noise with x_t = (1 - t) x0 + t eps (t = 1 is noise) and pass that same t to the model.",
        )
    if loss.item() < 1e-3:
        _check_loss_scale_and_generator(flow_loss, x_t)
        return "One t per clip in [0, 1], x_t = (1 - t) x0 + t eps, target eps - x0: the perfect model scores zero."
    if _loss(flow_loss, "flipped")[1].item() < 1e-3:
        raise Wrong("A model predicting eps - x0 scores badly with your loss; one predicting x0 - eps scores zero.",
                    mistake=FLOW_SIGN, hint="Our convention: t = 1 is noise and the target is eps - x0.")
    if _loss(flow_loss, "eps")[1].item() < 1e-3:
        raise Wrong("Your loss rewards predicting the noise eps.", mistake=NOISE_TARGET,
                    hint="The flow target is the velocity d x_t / dt = eps - x0.")
    raise Wrong(f"A perfect velocity model still scores {loss.item():.3g} with your loss (it should be 0).",
                hint="target = eps - x0 with the same eps that built x_t; loss = mean((model(x_t, t) - target) ** 2).")


def _check_loss_scale_and_generator(flow_loss, x_t: torch.Tensor) -> None:
    """A perfect model scores 0 under a sum as under a mean, and whatever the noise:
    probe the scale with a model that is off by 0.5 everywhere (a mean squared error
    of exactly 0.25), and the randomness with two equally seeded generators."""
    _, off = _loss(flow_loss, "off by 0.5")
    if abs(off.item() - 0.25) > 1e-3:
        summed = abs(off.item() - 0.25 * x_t.numel()) < 1e-3 * x_t.numel()
        raise Wrong(
            f"A model that is off by 0.5 at every value should score 0.25 (the mean squared error); yours gives {off.item():.4g}.",
            mistake=SUM_NOT_MEAN if summed else None,
            hint="Average, don't sum: ((output - target) ** 2).mean() or F.mse_loss(output, target). A sum grows "
                 "with the batch and clip size, and so would the learning rate you need.",
        )
    seen = []
    with torch.random.fork_rng():  # leave the learner's global random state as it was
        for global_seed in (11, 12):  # a different global seed each time: only the generator may matter
            torch.manual_seed(global_seed)
            probe, _ = _loss(flow_loss, "flow", seed=7)
            seen.append(probe.seen[0])
    (x_a, t_a), (x_b, t_b) = seen
    if not (torch.equal(t_a, t_b) and torch.equal(x_a, x_b)):
        raise Wrong(
            "Two calls with generators seeded the same way drew different t or noise: your draws ignore `generator`.",
            mistake=GENERATOR_IGNORED,
            hint="Pass it to every draw: torch.rand(B, generator=generator) and torch.randn(x0.shape, generator=generator).",
        )
