import pytest
import torch

from vdmcourse.diffusion import NULL_LABEL
from vdmcourse.diffusion.objectives import (
    OBJECTIVES,
    check_frame_t_share,
    check_motion_weight,
    convert,
    frame_noise,
    model_target,
    noise_mix_of,
    predict_x0_eps,
    resolve_schedule,
    sample_timesteps,
    training_loss,
)
from vdmcourse.diffusion.schedules import FlowSchedule, cosine_schedule, linear_schedule

PATHS = [("flow", FlowSchedule()), ("cosine", cosine_schedule()), ("linear", linear_schedule())]


def batch(seed=0, shape=(6, 3, 1, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.rand(shape[0], generator=g, dtype=torch.float64) * 0.98 + 0.01
    return x0, eps, t


def objectives_on(schedule):
    return [o for o in OBJECTIVES if o != "flow" or isinstance(schedule, FlowSchedule)]


@pytest.mark.parametrize("name, schedule", PATHS, ids=[p[0] for p in PATHS])
def test_every_objective_round_trips_exactly_to_x0_and_eps(name, schedule):
    x0, eps, t = batch()
    x_t = schedule.q_sample(x0, t, eps)
    for objective in objectives_on(schedule):
        target = model_target(x0, eps, t, objective=objective, schedule=schedule)
        x0_hat, eps_hat = predict_x0_eps(target, x_t, t, objective=objective, schedule=schedule)
        torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-9, msg=f"{objective}: x0")
        torch.testing.assert_close(eps_hat, eps, rtol=0, atol=1e-9, msg=f"{objective}: eps")


@pytest.mark.parametrize("name, schedule", PATHS, ids=[p[0] for p in PATHS])
def test_convert_between_any_two_objectives_gives_the_other_target(name, schedule):
    x0, eps, t = batch(1)
    x_t = schedule.q_sample(x0, t, eps)
    for source in objectives_on(schedule):
        for target in objectives_on(schedule):
            out = convert(model_target(x0, eps, t, objective=source, schedule=schedule), x_t, t,
                          source=source, target=target, schedule=schedule)
            expected = model_target(x0, eps, t, objective=target, schedule=schedule)
            torch.testing.assert_close(out, expected, rtol=0, atol=1e-9, msg=f"{source} -> {target}")


def test_targets_are_the_published_definitions():
    x0, eps, t = batch(2)
    alpha, sigma = cosine_schedule().alpha_sigma(t)
    alpha, sigma = alpha[:, None, None, None, None], sigma[:, None, None, None, None]
    torch.testing.assert_close(model_target(x0, eps, t, objective="v", schedule="cosine"), alpha * eps - sigma * x0)
    torch.testing.assert_close(model_target(x0, eps, t, objective="eps"), eps)
    torch.testing.assert_close(model_target(x0, eps, t, objective="x0"), x0)
    # flow: the velocity of x_t = (1 - t) x0 + t eps is eps - x0 (minRF sign; t = 1 is noise)
    velocity = model_target(x0, eps, t, objective="flow")
    torch.testing.assert_close(velocity, eps - x0)
    dt = 1e-6
    x_a = FlowSchedule().q_sample(x0, t, eps)
    x_b = FlowSchedule().q_sample(x0, t + dt, eps)
    torch.testing.assert_close((x_b - x_a) / dt, velocity, rtol=1e-6, atol=1e-6)


def test_velocity_converts_to_x0_and_eps_by_hand_formulas():
    x0, eps, t = batch(3)
    tb = t[:, None, None, None, None]
    x_t = (1 - tb) * x0 + tb * eps
    u = eps - x0
    x0_hat, eps_hat = predict_x0_eps(u, x_t, t, objective="flow")
    torch.testing.assert_close(x0_hat, x_t - tb * u)
    torch.testing.assert_close(eps_hat, x_t + (1 - tb) * u)


def test_resolve_schedule_defaults_and_refusals():
    assert isinstance(resolve_schedule(None, "flow"), FlowSchedule)
    assert resolve_schedule(None, "eps") is cosine_schedule()
    assert resolve_schedule("linear", "v") is linear_schedule()
    with pytest.raises(ValueError, match="objective must be one of"):
        resolve_schedule(None, "score")
    with pytest.raises(ValueError, match="straight path"):
        resolve_schedule("cosine", "flow")
    with pytest.raises(ValueError, match="schedule must be"):
        resolve_schedule("quadratic", "eps")
    with pytest.raises(TypeError, match="schedule must be"):
        resolve_schedule(3, "eps")


def test_sample_timesteps_uniform_and_logit_normal():
    g = torch.Generator().manual_seed(0)
    uniform = sample_timesteps(20_000, generator=g)
    assert uniform.shape == (20_000,) and 0 <= uniform.min() and uniform.max() < 1
    assert uniform.mean().item() == pytest.approx(0.5, abs=0.01)
    ln = sample_timesteps(20_000, distribution="logit_normal", mean=0.5, std=1.0, generator=g)
    assert 0 < ln.min() and ln.max() < 1
    assert ln.median().item() == pytest.approx(torch.sigmoid(torch.tensor(0.5)).item(), abs=0.01)
    assert torch.logit(ln).std().item() == pytest.approx(1.0, abs=0.02)
    again = sample_timesteps(5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, sample_timesteps(5, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="distribution"):
        sample_timesteps(5, distribution="beta")
    with pytest.raises(ValueError, match="n must be"):
        sample_timesteps(0)
    with pytest.raises(ValueError, match="logit-normal distribution only"):
        sample_timesteps(5, mean=1.0)  # a shift that uniform times would silently ignore


class Recorder(torch.nn.Module):
    """Returns a fixed guess and remembers what it was given."""

    def __init__(self, answer=None):
        super().__init__()
        self.answer = answer
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond=None):
        self.x, self.t, self.cond = x, t, cond
        out = self.answer(x, t) if self.answer is not None else torch.zeros_like(x)
        return out + self.weight


def oracle(x0, objective, schedule):
    """A model that knows the clean clip, so it can read the noise off x_t."""

    def answer(x_t, t):
        alpha, sigma = schedule.alpha_sigma(t)
        eps = (x_t - alpha[:, None, None, None, None] * x0) / sigma[:, None, None, None, None]
        return model_target(x0, eps, t, objective=objective, schedule=schedule)

    return answer


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_training_loss_is_zero_for_the_oracle_and_positive_otherwise(objective):
    schedule = resolve_schedule(None, objective)
    x0 = batch(4)[0].float()
    g = torch.Generator().manual_seed(0)
    loss = training_loss(Recorder(oracle(x0, objective, schedule)), x0, objective=objective, generator=g)
    assert loss.ndim == 0 and loss.item() < 1e-8
    assert training_loss(Recorder(), x0, objective=objective, generator=g).item() > 0.1


def test_flipped_flow_sign_is_penalised():
    x0 = batch(5)[0].float()
    right = oracle(x0, "flow", FlowSchedule())
    loss = training_loss(Recorder(lambda x, t: -right(x, t)), x0, objective="flow", generator=torch.Generator().manual_seed(0))
    assert loss.item() > 1.0


def test_training_loss_uses_one_time_per_clip_and_reaches_the_model_in_zero_one():
    model = Recorder()
    x0 = torch.zeros(8, 5, 1, 16, 16)
    training_loss(model, x0, objective="flow", generator=torch.Generator().manual_seed(0))
    assert model.t.shape == (8,) and model.t.dtype == torch.float32
    assert 0 <= model.t.min() and model.t.max() <= 1
    # x0 = 0, so x_t = t * eps: every frame of a clip carries the same noise level
    frame_std = model.x.std(dim=(2, 3, 4))  # (B, T)
    torch.testing.assert_close(frame_std, model.t[:, None].expand(8, 5), rtol=0.2, atol=0.02)


def test_training_loss_per_frame_times_when_asked():
    model = Recorder()
    training_loss(model, torch.zeros(3, 4, 1, 8, 8), one_t_per_clip=False, generator=torch.Generator().manual_seed(0))
    assert model.t.shape == (3, 4)
    assert model.t.std(dim=1).min() > 0


def test_frame_t_share_gives_that_share_of_clips_a_time_per_frame():
    x0 = torch.zeros(400, 4, 1, 8, 8)
    plain, mixed, every = Recorder(), Recorder(), Recorder()
    training_loss(plain, x0, generator=torch.Generator().manual_seed(0))
    training_loss(mixed, x0, frame_t_share=0.25, generator=torch.Generator().manual_seed(0))
    training_loss(every, x0, frame_t_share=1.0, generator=torch.Generator().manual_seed(0))
    assert plain.t.shape == (400,) and mixed.t.shape == every.t.shape == (400, 4)
    own = mixed.t.std(dim=1) > 0
    assert own.float().mean().item() == pytest.approx(0.25, abs=0.06)
    torch.testing.assert_close(mixed.t[~own, 0], plain.t[~own], rtol=0, atol=0)  # the others keep their clip's time
    assert (every.t.std(dim=1) > 0).all()
    # x0 = 0: x_t = t * eps, so every frame carries its own noise level
    torch.testing.assert_close(every.x.std(dim=(2, 3, 4)), every.t, rtol=0.4, atol=0.02)
    # share 0 draws exactly what training drew before it existed
    again = Recorder()
    training_loss(again, x0, frame_t_share=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.t, plain.t) and torch.equal(again.x, plain.x)


def test_frame_t_share_refuses_bad_values_and_clips_without_frames():
    assert check_frame_t_share(1) == 1.0 and isinstance(check_frame_t_share(1), float)
    model = Recorder()
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"frame_t_share must be a number in \[0, 1\]"):
            training_loss(model, torch.zeros(2, 3, 1, 4, 4), frame_t_share=bad)
    with pytest.raises(ValueError, match=r"needs one_t_per_clip=True and clips \(B, T, C, H, W\); got one_t_per_clip=True, x0 of shape \(2, 16\)"):
        training_loss(model, torch.zeros(2, 16), frame_t_share=0.5)
    with pytest.raises(ValueError, match="got one_t_per_clip=False"):
        training_loss(model, torch.zeros(2, 3, 1, 4, 4), frame_t_share=0.5, one_t_per_clip=False)


def test_training_loss_is_seeded_and_differentiable():
    x0 = batch(6)[0].float()
    model = Recorder()
    a = training_loss(model, x0, objective="v", generator=torch.Generator().manual_seed(3))
    b = training_loss(model, x0, objective="v", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.backward()
    assert model.weight.grad is not None and model.weight.grad.abs() > 0


def test_logit_normal_times_reach_the_model():
    model = Recorder()
    training_loss(model, torch.zeros(4000, 1), t_distribution="logit_normal", generator=torch.Generator().manual_seed(0))
    assert model.t.median().item() == pytest.approx(0.5, abs=0.03)
    assert ((model.t > 0.2) & (model.t < 0.8)).float().mean() > 0.7  # uniform would give 0.6


@pytest.mark.parametrize("one_t_per_clip", [True, False])
def test_logit_normal_mean_and_std_reach_the_times(one_t_per_clip):
    model = Recorder()
    x0 = torch.zeros(1000, 4, 1, 1, 1)
    generator = torch.Generator().manual_seed(0)
    training_loss(model, x0, t_distribution="logit_normal", t_mean=1.0, t_std=0.5, generator=generator, one_t_per_clip=one_t_per_clip)
    logits = torch.logit(model.t.double())
    assert logits.mean().item() == pytest.approx(1.0, abs=0.05)
    assert logits.std().item() == pytest.approx(0.5, abs=0.03)


def test_condition_dropout_replaces_whole_clips_with_the_null_label():
    model = Recorder()
    x0 = torch.zeros(4000, 1, 1, 2, 2)
    cond = torch.randint(0, 10, (4000, 2))
    original = cond.clone()
    training_loss(model, x0, cond=cond, p_uncond=0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cond, original)  # the caller's labels are untouched
    dropped = (model.cond == NULL_LABEL).all(dim=1)
    kept = (model.cond == original).all(dim=1)
    assert torch.all(dropped | kept)
    assert dropped.float().mean().item() == pytest.approx(0.25, abs=0.03)
    training_loss(model, x0, cond=cond, p_uncond=0.0)
    assert torch.equal(model.cond, cond)
    training_loss(model, x0, cond=cond, p_uncond=1.0)
    assert torch.all(model.cond == NULL_LABEL)


def test_training_loss_refuses_bad_input():
    model = Recorder()
    x0 = torch.zeros(2, 3, 1, 4, 4)
    with pytest.raises(ValueError, match="objective must be one of"):
        training_loss(model, x0, objective="epsilon")
    with pytest.raises(ValueError, match="the model returned shape"):
        training_loss(Recorder(lambda x, t: x[:, :1]), x0)
    with pytest.raises(ValueError, match="needs labels"):
        training_loss(model, x0, p_uncond=0.1)
    with pytest.raises(ValueError, match=r"p_uncond must lie in \[0, 1\]"):
        training_loss(model, x0, cond=torch.zeros(2, dtype=torch.long), p_uncond=1.5)
    with pytest.raises(TypeError, match="LongTensor"):
        training_loss(model, x0, cond=torch.zeros(2))
    with pytest.raises(ValueError, match="B = 2"):
        training_loss(model, x0, cond=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="model output must have"):
        predict_x0_eps(torch.zeros(2, 3), torch.zeros(2, 4), torch.rand(2), objective="eps")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model_target(x0, x0, torch.tensor([0.5, 1000.0]), objective="flow")


def test_frame_noise_is_standard_with_the_promised_frame_correlation():
    for mix, correlation in ((0.0, 0.0), (1.0, 0.5), (2.0, 0.8)):
        noise = frame_noise((4000, 3, 1, 2, 2), mix=mix, generator=torch.Generator().manual_seed(0))
        assert noise.mean().item() == pytest.approx(0.0, abs=0.02) and noise.std().item() == pytest.approx(1.0, abs=0.02)
        for a, b in ((0, 1), (0, 2), (1, 2)):
            measured = (noise[:, a] * noise[:, b]).mean().item()
            assert measured == pytest.approx(correlation, abs=0.03), (mix, a, b)
        across_clips = (noise[:-1] * noise[1:]).mean().item()  # clips stay independent
        assert across_clips == pytest.approx(0.0, abs=0.03)


def test_frame_noise_without_mix_is_the_plain_draw_and_refuses_bad_mixes():
    plain = torch.randn((2, 3, 1, 4, 4), generator=torch.Generator().manual_seed(5))
    assert torch.equal(frame_noise((2, 3, 1, 4, 4), generator=torch.Generator().manual_seed(5)), plain)
    assert frame_noise((5, 2), mix=0.0).shape == (5, 2)
    for bad in (-0.5, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="mix must be a finite number >= 0"):
            frame_noise((2, 3, 4), mix=bad)
    with pytest.raises(ValueError, match=r"needs shape \(B, T, ...\); got \(5, 2\)"):
        frame_noise((5, 2), mix=1.0)


def test_training_loss_draws_the_models_frame_noise():
    class Mixed(Recorder):
        class config:  # noqa: N801 -- stands in for a model config with the field
            noise_mix = 3.0

    assert noise_mix_of(Mixed()) == 3.0 and noise_mix_of(Recorder()) == 0.0 and noise_mix_of(lambda x, t: x) == 0.0
    x0 = torch.zeros(200, 4, 1, 4, 4)  # x0 = 0: x_t = t * eps, so x_t / t is the noise drawn
    for model, correlation in ((Recorder(), 0.0), (Mixed(), 0.9)):
        training_loss(model, x0, generator=torch.Generator().manual_seed(0))
        eps = model.x / model.t[:, None, None, None, None]
        assert (eps[:, 0] * eps[:, 3]).mean().item() == pytest.approx(correlation, abs=0.05)


def test_motion_weight_weighs_errors_that_change_from_frame_to_frame():
    x0 = batch(7)[0].float()
    frame_sign = torch.tensor([1.0, -1.0, 1.0]).view(1, 3, 1, 1, 1)  # batch() clips have 3 frames
    right = oracle(x0, "flow", FlowSchedule())

    def loss(error, weight):
        model = Recorder(lambda x, t: right(x, t) + error)
        return training_loss(model, x0, motion_weight=weight, generator=torch.Generator().manual_seed(0)).item()

    # An error the same in every frame has no frame-to-frame part: the weight changes nothing.
    for weight in (0.0, 1.0, 3.0):
        assert loss(torch.full_like(x0, 0.1), weight) == pytest.approx(0.01, rel=1e-4)
    # An error flipping sign every frame (jitter): its differences are 0.2, squared 0.04.
    for weight in (0.0, 1.0, 3.0):
        assert loss(0.1 * frame_sign.expand_as(x0), weight) == pytest.approx(0.01 + 0.04 * weight, rel=1e-4)
    assert loss(torch.zeros_like(x0), 2.0) < 1e-8  # the oracle still scores zero


def test_motion_weight_refuses_bad_values_and_clips_without_frames():
    assert check_motion_weight(2) == 2.0 and isinstance(check_motion_weight(2), float) and check_motion_weight(0.0) == 0.0
    model = Recorder()
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="motion_weight must be a finite number >= 0"):
            training_loss(model, torch.zeros(2, 3, 1, 4, 4), motion_weight=bad)
    for shape in ((2, 1, 1, 4, 4), (2, 16)):
        with pytest.raises(ValueError, match=r"motion_weight needs clips of shape \(B, T, C, H, W\) with T >= 2"):
            training_loss(model, torch.zeros(shape), motion_weight=0.5)
