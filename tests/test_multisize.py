import dataclasses

import pytest
import torch

from vdmcourse.course import CHECKPOINT_DIR
from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.metrics.physics import fit_bounces, physics_scores, track_digits
from vdmcourse.multisize import background_level, bucketed_batch, evaluator_window, generate_sized_clips
from vdmcourse.nn.dit import SizeEmbedding, VideoDiT, VideoDiTConfig, token_grid
from vdmcourse.presets import MULTISIZE_BUCKETS, get_preset
from vdmcourse.pretrained import load_checkpoint, load_pretrained

from helpers import wake_up

CPU = MovingMNISTConfig.cpu()


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sized_clips_on_the_config_canvas_are_generate_clips_draw_for_draw():
    ours = generate_sized_clips(6, CPU, frames=10, height=32, width=32, generator=_seeded(3))
    theirs = generate_clips(6, CPU, generator=_seeded(3))
    assert torch.equal(ours.video, theirs.video) and torch.equal(ours.positions, theirs.positions)


@pytest.mark.parametrize("height, width", [(24, 48), (48, 24), (40, 40)])
def test_sized_clips_bounce_on_their_own_walls_and_keep_the_whole_digit(height, width):
    clips = generate_sized_clips(16, CPU, frames=24, height=height, width=width, generator=_seeded(1))
    assert clips.video.shape == (16, 24, 1, height, width)
    free = torch.tensor([height - 16, width - 16], dtype=torch.float32)
    assert (clips.positions >= 0).all() and (clips.positions <= free).all()
    # a velocity component flips only where that axis meets one of its walls, and each axis meets its own
    flips = (clips.velocities[:, 1:] * clips.velocities[:, :-1] < 0)[..., 0, :]  # (N, T-1, 2)
    at_wall = ((clips.positions[:, 1:, 0] <= 0) | (clips.positions[:, 1:, 0] >= free))  # (N, T-1, 2)
    assert flips.any(0).any(0).all() and not (flips & ~at_wall).any()
    assert (clips.positions[..., 0, 0] == free[0]).any() and (clips.positions[..., 0, 1] == free[1]).any()
    # nothing cut off: every frame holds all of the digit's ink
    ink = clips.video.sum((-1, -2, -3))  # (N, T)
    torch.testing.assert_close(ink, clips.digits.sum((-1, -2, -3))[:, None].expand_as(ink))


def test_sized_clips_refuse_what_they_cannot_draw():
    with pytest.raises(ValueError, match="cannot hold a digit of 16 px"):
        generate_sized_clips(1, CPU, frames=4, height=12, width=32)
    with pytest.raises(ValueError, match="needs bounce='deterministic'"):
        generate_sized_clips(1, MovingMNISTConfig.cpu(bounce="stochastic"), frames=4, height=24, width=48)
    with pytest.raises(ValueError, match="frames must be a positive int"):
        generate_sized_clips(1, CPU, frames=0, height=32, width=32)


def test_bucketed_batches_are_one_size_each_with_about_the_reference_tokens():
    sizes = [(6, 24, 24), (12, 32, 32), (10, 24, 48)]
    target = 8 * 320  # 8 clips of 10x32x32 under 2x4x4 patches
    draw = _seeded(0)
    seen = set()
    for _ in range(30):
        batch = bucketed_batch(draw, batch_size=8, data=CPU, sizes=sizes, patch=(2, 4, 4))
        b, t, c, h, w = batch["video"].shape
        seen.add((t, h, w))
        assert (t, h, w) in sizes and c == 1 and batch["labels"].shape == (b, 1)
        tokens = b * torch.tensor(token_grid((t, 1, h, w), (2, 4, 4))).prod().item()
        assert 0.85 * target <= tokens <= 1.15 * target
    assert seen == set(sizes)
    again = bucketed_batch(_seeded(4), batch_size=8, data=CPU, sizes=sizes, patch=(2, 4, 4))
    assert torch.equal(again["video"], bucketed_batch(_seeded(4), batch_size=8, data=CPU, sizes=sizes, patch=(2, 4, 4))["video"])


def test_the_multisize_preset_trains_a_step_on_its_buckets():
    preset = get_preset("dit-multisize-cpu")
    batch = preset.batches()(_seeded(2))
    assert tuple(batch["video"].shape[1:2] + batch["video"].shape[3:]) in MULTISIZE_BUCKETS
    torch.manual_seed(0)
    model = preset.build_model()
    loss = preset.loss_fn()(model, batch, _seeded(0))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("frames, height, width", [(12, 40, 40), (10, 32, 64), (10, 24, 24), (16, 24, 48)])
def test_evaluator_window_keeps_the_digit_whole_at_the_evaluator_size(frames, height, width):
    clips = generate_sized_clips(8, CPU, frames=frames, height=height, width=width, generator=_seeded(5))
    window = evaluator_window(clips.video)
    assert window.shape == (8, 10, 1, 32, 32)
    # a 16 px digit moving 2 px a frame spans up to 34 px in 10 frames: a window centred on its
    # path keeps nearly all of its ink (a corner of the canvas would lose most of it)
    kept = window.sum((-1, -2, -3)) / clips.video[:, :10].sum((-1, -2, -3))  # (8, 10)
    assert kept.min() > 0.95 and kept.mean() > 0.995


def test_evaluator_window_is_the_clip_itself_at_the_evaluator_size():
    clips = generate_clips(4, CPU, generator=_seeded(6))
    assert torch.equal(evaluator_window(clips.video), clips.video)
    with pytest.raises(ValueError, match="first 10 frames; got clips of T=8"):
        evaluator_window(clips.video[:, :8])


def test_physics_fits_the_bounce_law_on_a_two_to_one_canvas():
    clips = generate_sized_clips(24, CPU, frames=12, height=24, width=48, generator=_seeded(7))
    scores = physics_scores(clips.video, 1, 16)
    assert scores.residual_px.nanmean() < 0.6 and scores.bounce_accuracy > 0.9
    # the same tracks fitted with the walls swapped between the axes do not fit
    tracks = track_digits(clips.video, 1)
    low, high = torch.zeros(24, 2), torch.full((24, 2), 16.0)
    right = fit_bounces(tracks.centres[:, :, 0], tracks.clean[:, :, 0], low, high, (8, 32))
    swapped = fit_bounces(tracks.centres[:, :, 0], tracks.clean[:, :, 0], low, high, (32, 8))
    assert swapped.residual.mean() > 2 * right.residual.mean()


def test_fit_bounces_takes_a_square_range_as_a_number_or_a_pair():
    clips = generate_clips(6, CPU, generator=_seeded(8))
    tracks = track_digits(clips.video, 1)
    args = (tracks.centres[:, :, 0], tracks.clean[:, :, 0], torch.zeros(6, 2), torch.full((6, 2), 16.0))
    torch.testing.assert_close(fit_bounces(*args, 16).centres, fit_bounces(*args, (16, 16)).centres)


@pytest.mark.parametrize("name", ["dit-multisize-cpu", "dit-multisize-sizecond-cpu"])
def test_the_shipped_multisize_checkpoint_is_what_its_preset_trains(name):
    from vdmcourse.pretrained import read_manifest

    preset = get_preset(name)
    assert load_pretrained(name, device="cpu").config == preset.model_config
    entry = next(e for e in read_manifest()["checkpoints"] if e["name"] == name)
    assert entry["steps"] == preset.steps == load_checkpoint(CHECKPOINT_DIR / f"{name}.safetensors").step


# Size conditioning (VideoDiTConfig.size_conditioning): the model is told each clip's (frames, height, width).

SIZED = VideoDiTConfig(patch=(2, 4, 4), dim=48, depth=2, heads=4, position="sincos+rope", frames=6, image_size=24, size_conditioning=True)


def test_size_embedding_gives_one_vector_per_clip_zero_at_init_and_apart_once_trained():
    embed = SizeEmbedding(48)
    sizes = torch.tensor([[10, 32, 32], [10, 40, 40], [16, 32, 32]])
    assert embed(sizes).shape == (3, 48) and not embed(sizes).any()
    wake_up(embed)
    out = embed(sizes)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2]) and not torch.allclose(out[1], out[2])


def test_the_model_embeds_each_clip_s_own_size_batched_and_packed():
    model = VideoDiT(SIZED)
    seen = []
    model.size_embed.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].tolist()))
    model(torch.randn(2, 6, 1, 24, 48), torch.rand(2))
    model.forward_packed([torch.randn(6, 1, 24, 24), torch.randn(4, 1, 16, 32)], torch.rand(2))
    assert seen == [[[6, 24, 48]], [[6, 24, 24], [4, 16, 32]]]


def test_two_sizes_change_the_output_and_packed_clips_still_equal_each_clip_alone():
    model = wake_up(VideoDiT(SIZED)).eval()
    plain = VideoDiT(dataclasses.replace(SIZED, size_conditioning=False)).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    x, t, label = torch.randn(1, 6, 1, 24, 24, generator=_seeded(1)), torch.rand(1, generator=_seeded(2)), torch.tensor([3])
    # the same tokens told another canvas: the difference is the size embedding alone
    assert not torch.allclose(model(x, t, label), plain(x, t, label), atol=1e-4)
    clips = [torch.randn(6, 1, 24, 24, generator=_seeded(3)), torch.randn(4, 1, 16, 32, generator=_seeded(4))]
    packed = model.forward_packed(clips, torch.tensor([0.3, 0.7]), torch.tensor([1, 2]))
    for clip, out, time, digit in zip(clips, packed, (0.3, 0.7), (1, 2)):
        torch.testing.assert_close(out, model(clip[None], torch.tensor([time]), torch.tensor([digit]))[0], atol=1e-5, rtol=1e-4)


def test_old_checkpoints_load_and_behave_the_same_inside_a_size_conditioned_model():
    stored = load_checkpoint(CHECKPOINT_DIR / "dit-multisize-cpu.safetensors")
    assert "size_conditioning" not in stored.config  # saved before the field existed
    old = load_pretrained("dit-multisize-cpu", device="cpu")
    assert old.config.size_conditioning is False and old.size_embed is None
    new = VideoDiT(dataclasses.replace(old.config, size_conditioning=True)).eval()
    missing = new.load_state_dict(old.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("size_embed.") for key in missing)
    x, t = torch.randn(2, 6, 1, 24, 48, generator=_seeded(5)), torch.rand(2, generator=_seeded(6))
    torch.testing.assert_close(new(x, t, torch.tensor([4, 7])), old(x, t, torch.tensor([4, 7])))


def test_size_conditioning_must_be_a_bool():
    with pytest.raises(ValueError, match="size_conditioning must be True or False; got 'yes'"):
        VideoDiTConfig(size_conditioning="yes")


def test_the_size_conditioned_preset_is_the_multisize_recipe_plus_the_size_embedding():
    plain, sized = get_preset("dit-multisize-cpu"), get_preset("dit-multisize-sizecond-cpu")
    assert sized.model_config == dataclasses.replace(plain.model_config, size_conditioning=True)
    assert sized.batch_source == plain.batch_source and sized.train == plain.train and sized.batch_size == plain.batch_size


def test_background_level_is_about_zero_on_real_clips_and_measures_a_haze_behind_the_digit():
    clips = generate_sized_clips(4, CPU, frames=6, height=24, width=48, generator=_seeded(9)).video
    clean = background_level(clips)
    assert clean.shape == (4, 6) and clean.max() < 1e-3  # only a digit's faint stray pixels
    hazy = (clips + 0.05).clamp(max=1)
    torch.testing.assert_close(background_level(hazy), clean + 0.05, atol=2e-3, rtol=0)
