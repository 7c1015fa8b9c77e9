import dataclasses

import pytest
import torch

from vdmcourse.diffusion.context import (
    CONTEXT_MASKS,
    ContextConfig,
    context_mask,
    frame_times,
    masked_training_loss,
    random_context_masks,
    random_context_times,
    forcing_times,
    sample_forcing,
    sample_with_context,
)
from vdmcourse.nn.unet3d import UNet3D

from helpers import VIDEO, seeded
from helpers import wake_up as _wake_up


def wake_up(model, seed=2):
    return _wake_up(model, seed).eval()


class Spy(torch.nn.Module):
    """Records every call; predicts ``bias`` (a parameter of the clip's shape) plus 0 * x."""

    def __init__(self, shape):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.randn(shape, generator=seeded(5)))
        self.calls = []

    def forward(self, x, t, cond=None):
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.bias[: x.shape[0]] + 0 * x


# --- the denoiser takes one time per frame -------------------------------------------------


def test_unet3d_per_frame_time_equal_to_the_clip_time_matches_it():
    model = wake_up(UNet3D(VIDEO))
    x, t = torch.randn(2, 4, 1, 16, 16, generator=seeded()), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t[:, None].expand(2, 4), torch.tensor([1, 2])), model(x, t, torch.tensor([1, 2])))


def test_unet3d_per_frame_time_conditions_each_frame():
    model = wake_up(UNet3D(VIDEO))
    x = torch.randn(1, 4, 1, 16, 16, generator=seeded())
    with torch.no_grad():
        a = model(x, torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
        b = model(x, torch.tensor([[0.0, 0.5, 0.5, 0.5]]))
    assert not torch.allclose(a[:, 0], b[:, 0])


def test_unet3d_per_frame_time_works_with_temporal_downsampling():
    model = wake_up(UNet3D(dataclasses.replace(VIDEO, temporal_downsample=(0,))))
    x = torch.randn(2, 4, 1, 16, 16, generator=seeded())
    with torch.no_grad():
        out = model(x, torch.rand(2, 4, generator=seeded(1)))
    assert out.shape == x.shape


def test_unet3d_refuses_a_per_frame_time_of_the_wrong_length():
    model = UNet3D(VIDEO)
    with pytest.raises(ValueError, match=r"t of shape \(B,\).*\(B, T\)"):
        model(torch.zeros(2, 4, 1, 16, 16), torch.zeros(2, 3))


# --- masks -------------------------------------------------------------------------------


def test_context_mask_kinds():
    assert context_mask("none", 5).tolist() == [False] * 5
    assert context_mask("first", 5).tolist() == [True, False, False, False, False]
    assert context_mask("first_k", 5, k=2).tolist() == [True, True, False, False, False]
    assert context_mask("last_k", 5, k=2).tolist() == [False, False, False, True, True]
    assert context_mask("every_n", 7, n=3).tolist() == [True, False, False, True, False, False, True]


def test_context_mask_refuses_k_that_leaves_nothing_to_generate():
    with pytest.raises(ValueError, match="k must be an int in"):
        context_mask("first_k", 5, k=5)


def test_random_masks_are_seeded_cover_every_kind_and_never_mask_everything():
    masks = random_context_masks(400, 10, generator=seeded(3))
    assert torch.equal(masks, random_context_masks(400, 10, generator=seeded(3)))
    assert not masks.all(dim=1).any()
    rows = {tuple(row) for row in masks.tolist()}
    for kind in ("none", "first"):
        assert tuple(context_mask(kind, 10).tolist()) in rows
    assert tuple(context_mask("every_n", 10, n=9).tolist()) in rows
    assert tuple(context_mask("last_k", 10, k=3).tolist()) in rows


def test_random_context_times_are_zero_or_within_the_augmentation_range():
    config = ContextConfig(noise_probability=0.5, max_noise=0.2)
    levels = random_context_times(1000, config, generator=seeded())
    assert (levels == 0).float().mean().item() == pytest.approx(0.5, abs=0.06)
    assert levels.max().item() <= 0.2


def test_context_config_refuses_probabilities_not_summing_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        ContextConfig(probabilities=(0.5, 0.5, 0.5, 0.0, 0.0))
    assert len(CONTEXT_MASKS) == len(ContextConfig().probabilities)


# --- the masked loss ----------------------------------------------------------------------


def test_frame_times_put_the_context_time_on_context_frames():
    mask = torch.tensor([[True, False, False], [False, False, True]])
    times = frame_times(torch.tensor([0.7, 0.4]), mask, torch.tensor([0.0, 0.1]))
    torch.testing.assert_close(times, torch.tensor([[0.0, 0.7, 0.7], [0.4, 0.4, 0.1]]))


def test_masked_loss_gives_context_frames_no_gradient():
    x0 = torch.rand(3, 5, 1, 4, 4, generator=seeded()) * 2 - 1
    mask = torch.stack([context_mask("first_k", 5, k=2), context_mask("last_k", 5, k=1), context_mask("none", 5)])
    spy = Spy(x0.shape)
    masked_training_loss(spy, x0, mask, generator=seeded(1)).backward()
    grad = spy.bias.grad.abs().flatten(2).sum(-1)  # (B, T)
    assert (grad[mask] == 0).all()
    assert (grad[~mask] > 0).all()


def test_masked_loss_shows_clean_context_frames_at_time_zero():
    x0 = torch.rand(2, 5, 1, 4, 4, generator=seeded()) * 2 - 1
    mask = torch.stack([context_mask("first_k", 5, k=3), context_mask("every_n", 5, n=4)])
    spy = Spy(x0.shape)
    masked_training_loss(spy, x0, mask, generator=seeded(1))
    x_t, t = spy.calls[0]
    assert t.shape == (2, 5)
    assert (t[mask] == 0).all() and (t[~mask] > 0).all()
    assert torch.equal(x_t[mask], x0[mask])
    assert not torch.allclose(x_t[~mask], x0[~mask])


def test_masked_loss_gives_noise_augmented_context_its_level():
    x0 = torch.rand(2, 4, 1, 4, 4, generator=seeded()) * 2 - 1
    mask = context_mask("first", 4).expand(2, 4)
    spy = Spy(x0.shape)
    masked_training_loss(spy, x0, mask, context_t=torch.tensor([0.0, 0.15]), generator=seeded(1))
    x_t, t = spy.calls[0]
    assert t[0, 0].item() == 0.0 and t[1, 0].item() == pytest.approx(0.15)
    assert torch.equal(x_t[0, 0], x0[0, 0]) and not torch.equal(x_t[1, 0], x0[1, 0])


def test_masked_loss_without_context_is_the_plain_loss():
    from vdmcourse.diffusion import training_loss

    model = wake_up(UNet3D(VIDEO))
    x0 = torch.rand(2, 4, 1, 16, 16, generator=seeded()) * 2 - 1
    plain = training_loss(model, x0, generator=seeded(1))
    masked = masked_training_loss(model, x0, torch.zeros(2, 4, dtype=torch.bool), generator=seeded(1))
    torch.testing.assert_close(masked, plain)


def test_masked_loss_refuses_a_mask_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(B, T\)"):
        masked_training_loss(Spy((1, 4, 1, 4, 4)), torch.zeros(1, 4, 1, 4, 4), torch.zeros(1, 3, dtype=torch.bool))


# --- sampling with context ----------------------------------------------------------------


@pytest.mark.parametrize("sampler, guidance", [("euler", 1.0), ("heun", 2.0)])
def test_generated_chunk_keeps_the_context_frames_exactly(sampler, guidance):
    model = wake_up(UNet3D(VIDEO))
    context = torch.rand(2, 4, 1, 16, 16, generator=seeded()) * 2 - 1
    mask = context_mask("first_k", 4, k=2).expand(2, 4)
    out = sample_with_context(model, context, mask, sampler=sampler, steps=3, cond=torch.tensor([1, 2]), guidance_scale=guidance, generator=seeded(1))
    assert torch.equal(out[:, :2], context[:, :2])
    assert not torch.allclose(out[:, 2:], context[:, 2:])


def test_sampling_shows_the_model_the_context_at_its_time_at_every_call():
    context = torch.rand(1, 4, 1, 4, 4, generator=seeded()) * 2 - 1
    mask = context_mask("last_k", 4, k=1)[None]
    spy = Spy(context.shape)
    sample_with_context(spy, context, mask, steps=4, context_t=0.1, generator=seeded(1))
    assert len(spy.calls) == 4
    first_x = spy.calls[0][0][:, 3]
    for x, t in spy.calls:
        assert torch.allclose(t[:, 3], torch.tensor([0.1]))
        assert torch.equal(x[:, 3], first_x)  # noised once, the same at every call
    assert not torch.equal(first_x, context[:, 3])


def test_sampling_with_context_is_reproducible_with_a_seed():
    model = wake_up(UNet3D(VIDEO))
    context = torch.rand(1, 4, 1, 16, 16, generator=seeded()) * 2 - 1
    mask = context_mask("first", 4)[None]
    a = sample_with_context(model, context, mask, steps=2, context_t=0.1, generator=seeded(7))
    b = sample_with_context(model, context, mask, steps=2, context_t=0.1, generator=seeded(7))
    assert torch.equal(a, b)


# --- the video-ctx-cpu preset -------------------------------------------------------------


def test_video_ctx_preset_fine_tunes_the_shipped_video_model():
    from vdmcourse.presets import get_preset
    from vdmcourse.pretrained import load_pretrained

    preset = get_preset("video-ctx-cpu")
    model, shipped = preset.build_model(), load_pretrained("video-cpu", device="cpu")
    assert model.training
    for (name, a), (_, b) in zip(model.state_dict().items(), shipped.state_dict().items()):
        assert torch.equal(a, b), name
    assert preset.metadata()["context"] == dataclasses.asdict(ContextConfig())


def test_video_ctx_batches_carry_masks_fast_keyframe_clips_and_a_masked_loss():
    from vdmcourse.presets import get_preset

    preset = get_preset("video-ctx-cpu")
    batch = preset.batches()(seeded())
    assert batch["mask"].shape == (8, 10) and batch["mask"].dtype == torch.bool
    assert batch["context_t"].shape == (8,)
    spy = Spy(batch["video"].shape)
    preset.loss_fn()(spy, batch, seeded(1)).backward()
    grad = spy.bias.grad.abs().flatten(2).sum(-1)
    assert (grad[batch["mask"]] == 0).all()
    _, t = spy.calls[0]
    context = batch["mask"]
    torch.testing.assert_close(t[context], batch["context_t"][:, None].expand(8, 10)[context])


# --- diffusion forcing ---------------------------------------------------------------------


def test_forcing_times_together_is_the_plain_grid():
    grid = forcing_times(4, 3, "together")
    assert grid.shape == (5, 3)
    torch.testing.assert_close(grid[:, 0], torch.linspace(1, 0, 5, dtype=torch.float64))
    assert torch.equal(grid[:, 0], grid[:, 2])


def test_forcing_times_pyramid_makes_later_frames_noisier_and_ends_clean():
    grid = forcing_times(5, 4, "pyramid", delay=2)
    assert grid.shape == (5 + 2 * 3 + 1, 4)
    assert (grid[0] == 1).all() and (grid[-1] == 0).all()
    assert (grid[1:] <= grid[:-1]).all(), "every frame only ever gets cleaner"
    assert (grid[:, 1:] >= grid[:, :-1]).all(), "a later frame is never cleaner than an earlier one"
    assert grid[5, 0] == 0 and grid[5, 3] == 1, "frame 0 is clean before frame 3 starts"


def test_sample_forcing_together_equals_the_euler_sampler():
    from vdmcourse.diffusion import sample

    model = wake_up(UNet3D(VIDEO))
    shape = (2, 4, 1, 16, 16)
    ours = sample_forcing(model, shape, steps=3, cond=torch.tensor([1, 2]), guidance_scale=2.0, generator=seeded(4))
    euler = sample(model, shape, sampler="euler", steps=3, cond=torch.tensor([1, 2]), guidance_scale=2.0, generator=seeded(4), progress=False)
    torch.testing.assert_close(ours, euler, atol=1e-4, rtol=1e-4)


def test_sample_forcing_pyramid_calls_the_model_with_staggered_times():
    spy = Spy((1, 3, 1, 4, 4))
    out = sample_forcing(spy, (1, 3, 1, 4, 4), schedule="pyramid", steps=2, delay=1, generator=seeded(1), device="cpu")
    assert out.shape == (1, 3, 1, 4, 4)
    times = [t[0].tolist() for _, t in spy.calls]
    assert times == [[1.0, 1.0, 1.0], [0.5, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.5]]


def test_diffusion_forcing_training_runs_on_the_unet3d():
    from vdmcourse.diffusion import training_loss

    model = wake_up(UNet3D(VIDEO)).train()
    loss = training_loss(model, torch.rand(2, 4, 1, 16, 16) * 2 - 1, one_t_per_clip=False, generator=seeded(1))
    loss.backward()
    assert torch.isfinite(loss) and model.output[-1].weight.grad is not None
