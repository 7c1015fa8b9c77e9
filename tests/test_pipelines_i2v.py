"""Image-to-video (SVD's conditioning), video-to-video (SDEdit) and sync: model, data, pipelines."""

import json

import pytest
import torch

from vdmcourse.conditioned_training import image_to_video_loss
from vdmcourse.course import to_unit_range
from vdmcourse.data import MovingMNISTConfig
from vdmcourse.data.conditions import (
    BASE_FPS,
    MAX_BUCKET_SPEED,
    apply_brightness,
    bucket_speed,
    clips_at_strides,
    frame_brightness,
    measured_speed,
    motion_bucket,
)
from vdmcourse.diffusion import sample
from vdmcourse.metrics.features import Evaluator, EvaluatorConfig
from vdmcourse.nn.conditioning import (
    ConditionedUNet3D,
    ConditionedUNet3DConfig,
    added_time_ids,
    augment_frame,
    concat_condition,
)
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.pipelines import (
    ImageToVideoPipeline,
    MotionCalibration,
    SignalToVideoPipeline,
    VideoToVideoPipeline,
    frame_guidance,
    guidance_ramp,
)
from vdmcourse.presets import load_latent_vae
from vdmcourse.pretrained import build_model, file_sha256, save_checkpoint

from helpers import randomise as _randomise

TINY = dict(image_size=8, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4, frames=4)


def _tiny_evaluator(canvas=8, frames=4, feature_dim=16):
    torch.manual_seed(0)
    return Evaluator(EvaluatorConfig(canvas=canvas, frames=frames, digit_size=4, widths=(8, 8, 8), feature_dim=feature_dim)).eval()


def _tiny_i2v(seed=0, **fields):
    config = ConditionedUNet3DConfig(**TINY, condition_channels=1, image_embed_dim=16, micro_conditioning=True, **fields)
    return _randomise(ConditionedUNet3D(config), seed)


def _i2v_pipe(seed=0):
    return ImageToVideoPipeline(_tiny_i2v(seed), evaluator=_tiny_evaluator(), sampler="euler")


def _image(seed=0, batch=2):
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


# --- the model ---


def test_a_conditioned_model_made_from_a_video_model_equals_it_at_init():
    torch.manual_seed(0)
    video = _randomise(UNet3D(UNet3DConfig(**TINY)))
    config = ConditionedUNet3DConfig(**TINY, condition_channels=1, image_embed_dim=16, micro_conditioning=True, signal=True)
    model = ConditionedUNet3D.from_image_model(video, config).eval()
    x, t = torch.randn(2, 4, 1, 8, 8), torch.rand(2)
    out = model(concat_condition(x, torch.randn(2, 1, 8, 8)), t, added_time_ids=added_time_ids(6.0, 200.0, 0.3, batch=2),
                image_embedding=torch.randn(2, 16), signal=torch.rand(2, 4))
    torch.testing.assert_close(out, video(x, t))


def test_condition_gain_keeps_init_equality_and_scales_every_conditioning_path(tmp_path):
    torch.manual_seed(0)
    video = _randomise(UNet3D(UNet3DConfig(**TINY)))
    fields = dict(condition_channels=1, image_embed_dim=16, micro_conditioning=True)
    gained = ConditionedUNet3D.from_image_model(video, ConditionedUNet3DConfig(**TINY, **fields, condition_gain=4.0)).eval()
    x, t, frame = torch.randn(2, 4, 1, 8, 8), torch.rand(2), torch.randn(2, 1, 8, 8)
    ids, emb = added_time_ids(6.0, 200.0, 0.3, batch=2), torch.randn(2, 16)
    torch.testing.assert_close(gained(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=emb), video(x, t))
    # gain g on the paths == gain 1 with the paths' first/last weights multiplied by g
    _randomise(gained, seed=1)
    plain = ConditionedUNet3D(ConditionedUNet3DConfig(**TINY, **fields)).eval()
    plain.load_state_dict(gained.state_dict())
    with torch.no_grad():
        plain.input_conv.weight[:, 1:] *= 4.0
        plain.image_embed.weight *= 4.0
        plain.micro_embed.mlp[2].weight *= 4.0
        plain.micro_embed.mlp[2].bias *= 4.0
    out = gained(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=emb)
    torch.testing.assert_close(out, plain(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=emb))
    assert set(gained.state_dict()) == set(plain.state_dict())  # the gain holds no weights
    save_checkpoint(tmp_path / "g.safetensors", gained)
    again = build_model(tmp_path / "g.safetensors")
    assert again.config.condition_gain == 4.0
    torch.testing.assert_close(again(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=emb), out)
    for bad in (0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="condition_gain"):
            ConditionedUNet3DConfig(**TINY, condition_gain=bad)


def test_from_image_model_refuses_a_source_of_another_shape():
    video = UNet3D(UNet3DConfig(**TINY))
    config = ConditionedUNet3DConfig(**{**TINY, "base_channels": 16}, condition_channels=1)
    with pytest.raises(ValueError, match="base_channels"):
        ConditionedUNet3D.from_image_model(video, config)


def test_every_condition_changes_the_output_and_a_checkpoint_round_trips(tmp_path):
    model = _tiny_i2v(signal=True)
    x, t = torch.randn(1, 4, 1, 8, 8), torch.rand(1)
    frame, ids, emb, signal = torch.randn(1, 1, 8, 8), added_time_ids(6.0, 100.0, 0.1), torch.randn(1, 16), torch.rand(1, 4)
    base = model(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=emb, signal=signal)
    changed = {
        "frame": model(concat_condition(x, frame + 1), t, added_time_ids=ids, image_embedding=emb, signal=signal),
        "fps": model(concat_condition(x, frame), t, added_time_ids=added_time_ids(12.0, 100.0, 0.1), image_embedding=emb, signal=signal),
        "bucket": model(concat_condition(x, frame), t, added_time_ids=added_time_ids(6.0, 30.0, 0.1), image_embedding=emb, signal=signal),
        "embedding": model(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=emb + 1, signal=signal),
        "signal": model(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=emb, signal=signal.flip(1)),
    }
    for name, out in changed.items():
        assert (out - base).abs().max() > 1e-4, f"{name} does not reach the output"
    save_checkpoint(tmp_path / "m.safetensors", model)
    again = build_model(tmp_path / "m.safetensors")
    assert type(again) is ConditionedUNet3D and again.config == model.config
    torch.testing.assert_close(again(concat_condition(x, frame), t, added_time_ids=ids, image_embedding=emb, signal=signal), base)


def test_micro_conditioning_is_added_to_the_time_embedding_not_the_input():
    model = _tiny_i2v()
    x, t = concat_condition(torch.randn(3, 4, 1, 8, 8), torch.randn(3, 1, 8, 8)), torch.rand(3)
    ids, emb = added_time_ids(torch.tensor([4.0, 6.0, 12.0]), torch.tensor([0.0, 100.0, 255.0]), 0.02), torch.zeros(3, 16)
    added = model.added_embedding(3, 4, ids, emb)
    torch.testing.assert_close(added, model.micro_embed(ids) + model.image_embed(emb))
    # ... and it reaches the network through UNet3D's time embedding alone
    torch.testing.assert_close(model(x, t, added_time_ids=ids, image_embedding=emb), UNet3D.forward(model, x, t, added=added))
    assert model.input_conv.in_channels == 2  # the noisy frame and the conditioning frame, nothing else
    # Per-frame times (context sampling) with per-clip conditions: the same clip when the times agree.
    per_frame = model(x, t[:, None].expand(-1, 4), added_time_ids=ids, image_embedding=emb)
    torch.testing.assert_close(per_frame, model(x, t, added_time_ids=ids, image_embedding=emb), atol=1e-5, rtol=1e-5)


def test_the_conditioning_frame_is_repeated_over_time_on_the_channel_axis():
    x, frame = torch.randn(2, 5, 1, 8, 8), torch.randn(2, 1, 8, 8)
    out = concat_condition(x, frame)
    assert out.shape == (2, 5, 2, 8, 8)
    torch.testing.assert_close(out[:, :, :1], x)
    for t in range(5):
        torch.testing.assert_close(out[:, t, 1:], frame)


def test_noise_augmentation_is_seeded_and_scaled_by_the_strength():
    frame = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(augment_frame(frame, 0.0, torch.Generator().manual_seed(0)), frame)
    a = augment_frame(frame, 0.5, torch.Generator().manual_seed(0))
    b = augment_frame(frame, 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close((a - frame) / 0.5, augment_frame(frame, 1.0, torch.Generator().manual_seed(0)) - frame)


def test_added_time_ids_are_fps_minus_one_bucket_and_noise_aug():
    ids = added_time_ids(torch.tensor([6.0, 12.0]), 127, 0.02)
    torch.testing.assert_close(ids, torch.tensor([[5.0, 127.0, 0.02], [11.0, 127.0, 0.02]]))


def test_the_model_refuses_missing_or_misshapen_conditions():
    model = _tiny_i2v()
    x, t = torch.randn(1, 4, 1, 8, 8), torch.rand(1)
    with pytest.raises(ValueError, match="C \\+ C_c"):
        model(x, t, added_time_ids=added_time_ids(6, 100, 0.0), image_embedding=torch.zeros(1, 16))
    with pytest.raises(ValueError, match="added_time_ids"):
        model(concat_condition(x, x[:, 0]), t, image_embedding=torch.zeros(1, 16))
    with pytest.raises(ValueError, match="image_embedding"):
        model(concat_condition(x, x[:, 0]), t, added_time_ids=added_time_ids(6, 100, 0.0), image_embedding=torch.zeros(1, 3))
    with pytest.raises(ValueError, match="signal"):
        model(concat_condition(x, x[:, 0]), t, added_time_ids=added_time_ids(6, 100, 0.0), image_embedding=torch.zeros(1, 16),
              signal=torch.rand(1, 4))


# --- the knobs, measured on data ---


def test_motion_buckets_map_speed_linearly_onto_0_to_255():
    speeds = torch.tensor([0.0, MAX_BUCKET_SPEED / 2, MAX_BUCKET_SPEED, 3 * MAX_BUCKET_SPEED])
    assert motion_bucket(speeds).tolist() == [0, 128, 255, 255]
    assert motion_bucket(speeds).dtype == torch.long
    torch.testing.assert_close(bucket_speed(motion_bucket(torch.tensor([5.0]))), torch.tensor([5.0]), atol=MAX_BUCKET_SPEED / 510, rtol=0)
    with pytest.raises(ValueError, match="speed"):
        motion_bucket(torch.tensor([-1.0]))


def test_measured_speed_is_the_mean_centroid_step():
    positions = torch.zeros(1, 3, 1, 2)
    positions[0, :, 0, 1] = torch.tensor([0.0, 3.0, 6.0])  # 3 px/frame along the columns
    positions[0, :, 0, 0] = torch.tensor([0.0, 4.0, 8.0])  # and 4 along the rows: 5 px/frame
    torch.testing.assert_close(measured_speed(positions), torch.tensor([5.0]))
    torch.testing.assert_close(measured_speed(positions, 6.0), torch.tensor([30.0]))


def test_clips_at_strides_move_further_per_frame_at_lower_fps():
    clips = clips_at_strides(64, MovingMNISTConfig.cpu(speed=(1.0, 1.0)), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(clips.fps, BASE_FPS / clips.stride.float())
    torch.testing.assert_close(clips.motion_bucket, motion_bucket(clips.speed))
    per_frame = measured_speed(clips.positions)
    for stride in (1, 2, 3):
        chosen = clips.stride == stride
        assert chosen.any()
        # 1 px per base frame: k px per rendered frame (a little less where a bounce clamps a step)
        assert stride * 0.8 < per_frame[chosen].median() <= stride + 1e-4
    # speed per second is the scene's, whatever the stride: the same for every stride here
    assert clips.speed.median() == pytest.approx(BASE_FPS, rel=0.2)


def test_grouped_clips_share_the_first_frame_and_differ_in_speed_and_stride():
    config = MovingMNISTConfig.cpu(speed=(0.25, 1.25))
    clips = clips_at_strides(32, config, generator=torch.Generator().manual_seed(0), group=4)
    first = clips.video[:, 0].view(8, 4, -1)  # (groups, group, pixels)
    assert (first == first[:, :1]).all()  # one image per group
    assert (clips.labels.view(8, 4) == clips.labels.view(8, 4)[:, :1]).all()
    assert (clips.speed.view(8, 4).std(1) > 0.1).all()  # the speeds differ within every group
    assert len(set(clips.stride.tolist())) == 3
    # the direction is shared: each clip's first step points the same way (away from walls)
    step = clips.positions[:, 1, 0] - clips.positions[:, 0, 0]  # (N, 2)
    unit = step / step.norm(dim=1, keepdim=True)
    clean = (clips.positions[:, 1, 0] > 0).all(1) & (clips.positions[:, 1, 0] < config.free_range).all(1)
    cosines = (unit.view(8, 4, 2) * unit.view(8, 4, 2)[:, :1]).sum(-1)[clean.view(8, 4) & clean.view(8, 4)[:, :1]]
    assert cosines.min() > 0.999
    torch.testing.assert_close(clips.motion_bucket, motion_bucket(clips.speed))
    ungrouped = clips_at_strides(32, config, generator=torch.Generator().manual_seed(0))
    assert not (ungrouped.video[:, 0].view(8, 4, -1) == ungrouped.video[:, 0].view(8, 4, -1)[:, :1]).all()
    for bad in (0, 3, 1.5):
        with pytest.raises(ValueError, match="group"):
            clips_at_strides(32, config, group=bad)


def test_brightness_follows_the_signal_and_is_measured_back():
    video = torch.zeros(2, 5, 1, 8, 8)
    video[:, :, :, 2:6, 2:6] = 1.0
    signal = torch.rand(2, 5, generator=torch.Generator().manual_seed(0))
    bright = frame_brightness(apply_brightness(video, signal))
    torch.testing.assert_close(bright, 0.3 + 0.7 * signal)


# --- image-to-video ---


def test_image_to_video_is_seeded_and_reproducible():
    pipe = _i2v_pipe()
    a = pipe(_image(), num_inference_steps=3, generator=torch.Generator().manual_seed(0)).frames
    b = pipe(_image(), num_inference_steps=3, generator=torch.Generator().manual_seed(0)).frames
    c = pipe(_image(), num_inference_steps=3, generator=torch.Generator().manual_seed(1)).frames
    assert a.shape == (2, 4, 1, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_every_knob_changes_the_clip():
    pipe = _i2v_pipe()

    def run(**knobs):
        return pipe(_image(), num_inference_steps=2, generator=torch.Generator().manual_seed(0), **knobs).frames

    base = run()
    for knobs in ({"fps": 12}, {"motion_bucket_id": 10}, {"noise_aug_strength": 0.3}, {"max_guidance_scale": 5.0}):
        assert (run(**knobs) - base).abs().max() > 1e-4, knobs


def test_the_guidance_ramp_goes_from_min_on_the_first_frame_to_max_on_the_last():
    ramp = guidance_ramp(1.0, 3.0, 5)
    torch.testing.assert_close(ramp, torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))
    cond, uncond = torch.ones(1, 5, 1, 2, 2), torch.zeros(1, 5, 1, 2, 2)
    guided = frame_guidance(cond, uncond, ramp)
    torch.testing.assert_close(guided[0, :, 0, 0, 0], ramp)


def test_without_guidance_the_zero_branch_is_not_used():
    pipe = _i2v_pipe()
    image = _image()
    calls = []
    forward = pipe.model.forward

    def spy(x, t, cond=None, **conditions):
        calls.append(x.shape[0])
        return forward(x, t, cond, **conditions)

    pipe.model.forward = spy
    pipe(image, num_inference_steps=2, max_guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    assert set(calls) == {2}
    calls.clear()
    pipe(image, num_inference_steps=2, max_guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert set(calls) == {4}  # the unconditional (zeros) and the conditional branch, batched


@pytest.mark.parametrize("max_guidance_scale", [1.0, 3.0])
def test_knob_guidance_adds_w_times_the_conditioned_minus_the_neutral_knobs_prediction(monkeypatch, max_guidance_scale):
    import vdmcourse.pipelines as pipelines
    from vdmcourse.conditioned_training import image_embedding
    from vdmcourse.course import to_model_range

    pipe, image, captured = _i2v_pipe(), _image(), {}

    def keep_the_denoiser(denoiser, shape, **settings):
        captured["denoiser"] = denoiser
        return torch.zeros(shape)

    monkeypatch.setattr(pipelines, "sample", keep_the_denoiser)
    x, t = torch.randn(2, 4, 1, 8, 8, generator=torch.Generator().manual_seed(5)), torch.tensor([0.7, 0.3])
    model, frame, embedding = pipe.model, to_model_range(image), image_embedding(image, pipe.evaluator)

    def branch(fps, bucket, with_image=True):
        condition = frame if with_image else torch.zeros_like(frame)
        return model(concat_condition(x, condition), t, added_time_ids=added_time_ids(fps, bucket, 0.0, batch=2),
                     image_embedding=embedding if with_image else torch.zeros_like(embedding))

    call = dict(fps=12, motion_bucket_id=200, noise_aug_strength=0.0, max_guidance_scale=max_guidance_scale, num_inference_steps=1)
    with torch.no_grad():
        cond, neutral = branch(12, 200), branch(6, 127)  # neutral: the call's defaults
        svd = frame_guidance(cond, branch(12, 200, with_image=False), guidance_ramp(1.0, max_guidance_scale, 4)) if max_guidance_scale > 1 else cond
        after_frame0 = torch.tensor([0.0, 1.0, 1.0, 1.0]).reshape(1, 4, 1, 1, 1)  # frame 0 is the image: not pushed
        for scale in (0.0, 2.5):
            pipe(image, knob_guidance_scale=scale, **call)
            torch.testing.assert_close(captured["denoiser"](x, t), svd + scale * after_frame0 * (cond - neutral))
        pipe(image, knob_guidance_scale=2.5, **{**call, "fps": 6, "motion_bucket_id": 127})  # at the neutral knobs: no change
        torch.testing.assert_close(captured["denoiser"](x, t), neutral if max_guidance_scale == 1 else frame_guidance(
            neutral, branch(6, 127, with_image=False), guidance_ramp(1.0, max_guidance_scale, 4)))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"image": torch.rand(1, 1, 16, 16)}, "image"),
        ({"image": torch.rand(1, 3, 8, 8)}, "image"),
        ({"image": torch.rand(1, 1, 8, 8) * 2 - 1}, "image"),
        ({"image": (torch.rand(1, 1, 8, 8) * 255).byte()}, "image"),
        ({"num_frames": 5}, "num_frames"),
        ({"num_frames": 1}, "num_frames"),
        ({"motion_bucket_id": 256}, "motion_bucket_id"),
        ({"motion_bucket_id": -1}, "motion_bucket_id"),
        ({"fps": 0}, "fps"),
        ({"fps": -6}, "fps"),
        ({"noise_aug_strength": -0.1}, "noise_aug_strength"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"decode_chunk_size": 0}, "decode_chunk_size"),
        ({"min_guidance_scale": float("nan")}, "min_guidance_scale"),
        ({"knob_guidance_scale": -1.0}, "knob_guidance_scale"),
    ],
)
def test_image_to_video_refuses_bad_input_naming_the_argument(kwargs, argument):
    pipe = _i2v_pipe()
    kwargs = {"image": _image(batch=1), "num_inference_steps": 1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=argument):
        pipe(kwargs.pop("image"), **kwargs)


def test_decode_chunk_size_gives_the_frames_of_full_decoding():
    vae = load_latent_vae("vae-cpu")
    channels = vae.config.latent_channels
    config = ConditionedUNet3DConfig(**{**TINY, "channels": channels}, condition_channels=channels, image_embed_dim=64, micro_conditioning=True)
    from vdmcourse.metrics.features import load_evaluator

    pipe = ImageToVideoPipeline(_randomise(ConditionedUNet3D(config)), vae=vae, evaluator=load_evaluator(), sampler="euler")
    image = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    full = pipe(image, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert full.shape == (1, 4, 1, 32, 32)
    for chunk in (1, 3):
        chunked = pipe(image, num_inference_steps=2, decode_chunk_size=chunk, generator=torch.Generator().manual_seed(0)).frames
        torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)


# --- calibration: a requested speed -> the bucket that gave it ---


def test_a_calibration_inverts_the_monotone_table_it_was_fitted_on():
    table = MotionCalibration((40, 80, 120, 160, 200, 240), (3.9, 5.2, 8.1, 12.3, 19.2, 21.0), fps=6, knob_guidance_scale=3)
    for bucket, speed in zip(table.buckets, table.speeds):
        assert table.bucket(speed) == pytest.approx(bucket)
        assert table.speed(bucket) == pytest.approx(speed)
    for speed in (4.0, 6.5, 10.0, 17.0):  # between the rows: the two directions are each other's inverse
        assert table.speed(table.bucket(speed)) == pytest.approx(speed)
    assert table.bucket(10.0) == pytest.approx(120 + 40 * (10.0 - 8.1) / (12.3 - 8.1))  # linear between rows
    assert table.reachable == (3.9, 21.0)
    assert (table.bucket(1.0), table.bucket(99.0)) == (40, 240)  # clamped to the table's ends


def test_a_calibration_pools_a_bucket_that_came_out_slower_and_stays_monotone():
    table = MotionCalibration((40, 80, 120, 160, 200, 240), (3.9, 5.2, 8.1, 12.3, 19.2, 18.7))  # i2v-long-cpu's 200 -> 240
    assert table.knots[-1] == pytest.approx((220.0, 18.95))  # the two pooled at their mean bucket and mean speed
    grid = [3.0 + 0.25 * k for k in range(80)]
    buckets = [table.bucket(v) for v in grid]
    assert all(a <= b for a, b in zip(buckets, buckets[1:]))
    low, high = table.reachable
    inside = [v for v in grid if low < v < high]
    assert all(a < b for a, b in zip([table.bucket(v) for v in inside], [table.bucket(v) for v in inside][1:]))
    for speed in inside:
        assert table.speed(table.bucket(speed)) == pytest.approx(speed)
    # the least-squares non-decreasing fit: an inversion in the middle pools those two rows
    assert sum(MotionCalibration((0, 10, 20, 30), (1.0, 3.0, 2.0, 4.0)).knots, ()) == pytest.approx((0, 1.0, 15, 2.5, 30, 4.0))
    assert sum(MotionCalibration((0, 10, 20), (1.0, 3.0, 1.0)).knots, ()) == pytest.approx((0, 1.0, 15, 2.0))


@pytest.mark.parametrize(
    "buckets, speeds, words",
    [
        ((40, 80), (1.0,), "equally long"),
        ((40,), (1.0,), "equally long"),
        ((80, 40), (1.0, 2.0), "increase"),
        ((40, 40), (1.0, 2.0), "increase"),
        ((40, 300), (1.0, 2.0), "buckets"),
        ((40, 80), (1.0, float("nan")), "speeds"),
        ((40, 80, 120), (3.0, 2.0, 1.0), "never grow"),
    ],
)
def test_a_calibration_refuses_a_table_it_cannot_fit(buckets, speeds, words):
    with pytest.raises(ValueError, match=words):
        MotionCalibration(buckets, speeds)


BUCKETS = (40, 80, 120, 160, 200, 240)
AT_4, AT_6, AT_12 = (6.0, 8.0, 12.0, 18.0, 26.0, 27.0), (3.9, 5.2, 8.1, 12.3, 19.2, 21.0), (3.0, 4.0, 6.0, 8.0, 11.0, 12.5)


def _two_axis_table(**fields):
    return MotionCalibration(BUCKETS, AT_6, fps=6, knob_guidance_scale=3, fps_tables=((4, BUCKETS, AT_4), (12, BUCKETS, AT_12)), **fields)


def test_a_calibration_inverts_each_measured_fps_on_its_own_table():
    table = _two_axis_table()
    assert table.measured_fps == (4.0, 6.0, 12.0)
    for fps, speeds in ((4, AT_4), (6, AT_6), (12, AT_12)):
        for bucket, speed in zip(BUCKETS, speeds):
            assert table.bucket(speed, fps=fps) == pytest.approx(bucket)
            assert table.speed(bucket, fps=fps) == pytest.approx(speed)
    assert table.bucket(10.0) == table.bucket(10.0, fps=6)  # the default fps is the base table's
    assert table.bucket(10.0, fps=4) < table.bucket(10.0, fps=6) < table.bucket(10.0, fps=12)  # faster at low fps: a lower bucket
    assert table.knots_at(12)[0] == (40, 3.0) and table.knots_at(12)[-1] == (240, 12.5)


def test_between_measured_fps_a_calibration_interpolates_in_the_frame_interval_and_inverts():
    table = _two_axis_table()
    weight = (1 / 6 - 1 / 8) / (1 / 6 - 1 / 12)  # fps 8: half way from 1/6 to 1/12
    assert weight == pytest.approx(0.5)
    for bucket, slow, fast in zip(BUCKETS, AT_12, AT_6):
        assert table.speed(bucket, fps=8) == pytest.approx(0.5 * slow + 0.5 * fast)
    assert table.speed(100, fps=5) == pytest.approx(0.6 * table.speed(100, fps=6) + 0.4 * table.speed(100, fps=4))  # 1/5 is 0.4 of the way to 1/4
    for fps in (4.5, 5, 8, 10, 11.9):
        low, high = table.knots_at(fps)[0][1], table.knots_at(fps)[-1][1]
        for speed in [low + (high - low) * k / 10 for k in range(11)]:
            assert table.speed(table.bucket(speed, fps=fps), fps=fps) == pytest.approx(speed)
        buckets = [table.bucket(v, fps=fps) for v in range(1, 30)]
        assert buckets == sorted(buckets)
    # the curve moves monotonically with fps: at one bucket, a faster speed at every lower fps
    assert [table.speed(120, fps=f) for f in (4, 5, 6, 8, 12)] == sorted([table.speed(120, fps=f) for f in (4, 5, 6, 8, 12)], reverse=True)


@pytest.mark.parametrize("fps", [3.9, 12.5, 0.0, -6, float("nan"), "6"])
def test_a_calibration_refuses_an_fps_outside_the_measured_range(fps):
    with pytest.raises(ValueError, match=r"fps.*measured at: 4, 6, 12"):
        _two_axis_table().bucket(10.0, fps=fps)
    with pytest.raises(ValueError, match="fps"):
        _two_axis_table().speed(120, fps=fps)


def test_a_calibration_of_one_fps_refuses_every_other_fps():
    table = MotionCalibration(BUCKETS, AT_6, fps=6)
    assert table.measured_fps == (6.0,) and table.bucket(8.1, fps=6) == pytest.approx(120)
    for fps in (4, 12, 6.5):
        with pytest.raises(ValueError, match=r"measured at: 6\b"):
            table.bucket(8.1, fps=fps)


@pytest.mark.parametrize(
    "fps_tables, words",
    [
        (((6, BUCKETS, AT_4),), "measured twice"),
        (((4, BUCKETS),), "fps_tables"),
        (([4, BUCKETS, AT_4],), "fps_tables"),
        (((0, BUCKETS, AT_4),), "fps"),
        (((4, BUCKETS, AT_4[:3]),), "at fps 4.*equally long"),
        (((4, BUCKETS, AT_4[::-1]),), "at fps 4.*never grow"),
    ],
)
def test_a_calibration_refuses_fps_tables_it_cannot_fit(fps_tables, words):
    with pytest.raises(ValueError, match=words):
        MotionCalibration(BUCKETS, AT_6, fps=6, fps_tables=fps_tables)


def test_a_calibration_with_fps_tables_round_trips_and_an_old_file_still_loads(tmp_path):
    table = _two_axis_table(source="a test")
    table.save(tmp_path / "two.json", checkpoint_sha256="abc")
    assert MotionCalibration.load(tmp_path / "two.json") == table
    old = {"buckets": list(BUCKETS), "speeds": list(AT_6), "fps": 6.0, "knob_guidance_scale": 3.0, "source": "old"}  # before fps_tables
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = MotionCalibration.load(tmp_path / "old.json")
    assert loaded.fps_tables == () and loaded.measured_fps == (6.0,) and loaded.bucket(8.1) == pytest.approx(120)
    MotionCalibration(BUCKETS, AT_6).save(tmp_path / "one.json")
    assert "fps_tables" not in (tmp_path / "one.json").read_text()  # a one-fps table is written as before


def test_from_pretrained_loads_the_calibration_beside_the_checkpoint_and_refuses_one_of_other_weights(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, _tiny_i2v())
    assert ImageToVideoPipeline.from_pretrained(str(path), device="cpu", evaluator=_tiny_evaluator()).calibration is None
    table = MotionCalibration((40, 120, 240), (3.0, 6.0, 12.0), fps=6, knob_guidance_scale=3, source="a test")
    table.save(tmp_path / "tiny.calibration.json", checkpoint_sha256=file_sha256(path))
    pipe = ImageToVideoPipeline.from_pretrained(str(path), device="cpu", evaluator=_tiny_evaluator())
    assert pipe.calibration == table and pipe.calibration.bucket(6.0) == 120
    save_checkpoint(path, _tiny_i2v(seed=1))  # other weights under the same name: the table no longer holds
    with pytest.raises(ValueError, match="SHA-256"):
        ImageToVideoPipeline.from_pretrained(str(path), device="cpu", evaluator=_tiny_evaluator())
    with pytest.raises(TypeError, match="calibration"):
        ImageToVideoPipeline(_tiny_i2v(), evaluator=_tiny_evaluator(), calibration={"buckets": (40, 80)})


def test_the_shipped_calibration_matches_its_checkpoint_and_inverts_its_table():
    pipe = ImageToVideoPipeline.from_pretrained("i2v-long-cpu", device="cpu")
    table = pipe.calibration
    assert table is not None and table.knob_guidance_scale > 0 and table.fps == 6
    pooled = {b for b, _ in table.knots} ^ set(table.buckets)  # rows merged by the monotone fit, and their mean buckets
    for bucket, speed in zip(table.buckets, table.speeds):
        if bucket not in pooled:
            assert table.bucket(speed) == pytest.approx(bucket)



@pytest.mark.parametrize("name", ["i2v-long-cpu", "i2v-scratch-cpu"])
def test_the_shipped_calibrations_have_an_fps_axis_and_invert_each_fps_curve(name):
    table = ImageToVideoPipeline.from_pretrained(name, device="cpu").calibration
    assert table is not None and table.measured_fps == (4.0, 6.0, 12.0)
    for fps in table.measured_fps:
        for bucket, speed in table.knots_at(fps):
            assert table.bucket(speed, fps=fps) == pytest.approx(bucket)
    with pytest.raises(ValueError, match="fps"):
        table.bucket(10.0, fps=24)

# --- latent image-to-video ---


def test_the_latent_loss_conditions_on_the_latent_of_the_noised_image():
    vae = load_latent_vae("vae-cpu")
    channels = vae.config.latent_channels
    config = ConditionedUNet3DConfig(**{**TINY, "channels": channels}, condition_channels=channels, image_embed_dim=16, micro_conditioning=True)
    model, seen = _randomise(ConditionedUNet3D(config)), []

    def recording(x, t, **conditions):
        seen.append(x)
        return model(x, t, **conditions)

    video = torch.rand(2, 4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    batch = {"video": video, "fps": torch.tensor([6.0, 12.0]), "motion_bucket": torch.tensor([40.0, 200.0]),
             "noise_aug_strength": torch.tensor([0.0, 0.3]), "image_embedding": torch.randn(2, 16)}
    loss = image_to_video_loss(recording, batch, torch.Generator().manual_seed(1), p_uncond=0.0, vae="vae-cpu")
    assert loss.ndim == 0 and torch.isfinite(loss)
    x = seen[0]
    assert x.shape == (2, 4, 2 * channels, 8, 8)  # latents + the latent frame, concatenated on channels
    frame = augment_frame(video[:, 0] * 2 - 1, batch["noise_aug_strength"], torch.Generator().manual_seed(1))  # noised BEFORE encoding
    expected = vae.encode_latents(frame[:, None], sample=False)[:, 0]
    torch.testing.assert_close(x[:, :, channels:], expected[:, None].expand(-1, 4, -1, -1, -1))
    clean = vae.encode_latents((video[:, :1] * 2 - 1), sample=False)[:, 0]
    assert not torch.allclose(x[1, 0, channels:], clean[1], atol=1e-3)  # the second clip's image was noised (0.3)


def test_the_latent_i2v_preset_starts_as_latent_video_cpu_on_its_latents():
    from vdmcourse.pretrained import load_pretrained
    from vdmcourse.presets import get_preset

    preset = get_preset("i2v-latent-cpu")
    vae = load_latent_vae(preset.vae)
    assert preset.model_config.channels == preset.model_config.condition_channels == vae.config.latent_channels
    model, source = preset.build_model().eval(), load_pretrained("latent-video-cpu", device="cpu")
    x, t = torch.randn(1, 10, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0.4])
    out = model(concat_condition(x, torch.randn(1, 4, 8, 8)), t, added_time_ids=added_time_ids(6.0, 200.0, 0.1),
                image_embedding=torch.randn(1, 64))
    torch.testing.assert_close(out, source(x, t), atol=1e-5, rtol=1e-4)
    assert preset.metadata()["vae"]["name"] == "vae-cpu"


def test_the_scratch_i2v_preset_is_i2v_cpus_model_and_recipe_with_no_pretrained_start():
    import dataclasses

    from vdmcourse.presets import get_preset

    scratch, i2v = get_preset("i2v-scratch-cpu"), get_preset("i2v-cpu")
    assert scratch.init_from is None and scratch.model_config == i2v.model_config
    assert (scratch.data, scratch.batch_size, scratch.loss.keywords) == (i2v.data, i2v.batch_size, i2v.loss.keywords)
    assert dataclasses.replace(scratch.train, warmup_steps=i2v.train.warmup_steps) == i2v.train
    torch.manual_seed(0)
    a = scratch.build_model()
    torch.manual_seed(0)
    b = type(a)(scratch.model_config)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))  # a fresh init, nothing loaded


# --- video-to-video (SDEdit) ---


def _v2v_pipe():
    torch.manual_seed(0)
    return VideoToVideoPipeline(_randomise(UNet3D(UNet3DConfig(**TINY)), seed=3), sampler="heun", guidance_scale=2.0)


def _clip(seed=0):
    return torch.rand(2, 4, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_sdedit_at_strength_one_is_plain_sampling():
    pipe, labels = _v2v_pipe(), torch.tensor([3, 7])
    out = pipe(_clip(), strength=1.0, labels=labels, num_inference_steps=4, generator=torch.Generator().manual_seed(5)).frames
    plain = sample(pipe.model, (2, 4, 1, 8, 8), objective="flow", sampler="heun", steps=4, cond=labels,
                   guidance_scale=2.0, generator=torch.Generator().manual_seed(5), progress=False)
    torch.testing.assert_close(out, to_unit_range(plain))


def test_sdedit_at_strength_near_zero_returns_the_input():
    pipe, clip = _v2v_pipe(), _clip()
    out = pipe(clip, strength=1e-4, labels=torch.tensor([3, 7]), generator=torch.Generator().manual_seed(0)).frames
    torch.testing.assert_close(out, clip, atol=5e-3, rtol=0)
    further = pipe(clip, strength=0.5, labels=torch.tensor([3, 7]), generator=torch.Generator().manual_seed(0)).frames
    assert (further - clip).abs().mean() > 10 * (out - clip).abs().mean()  # more strength departs further


def test_sdedit_starts_at_the_noisy_end_counted_from_the_clean_end():
    assert VideoToVideoPipeline.start(0.25, 20) == (0.25, 5)
    assert VideoToVideoPipeline.start(1.0, 20) == (1.0, 20)
    assert VideoToVideoPipeline.start(0.01, 20) == (0.01, 1)


def test_sdedit_is_seeded():
    pipe, clip = _v2v_pipe(), _clip()
    a = pipe(clip, strength=0.6, labels=torch.tensor([1, 2]), generator=torch.Generator().manual_seed(0)).frames
    b = pipe(clip, strength=0.6, labels=torch.tensor([1, 2]), generator=torch.Generator().manual_seed(0)).frames
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.5}, "strength"),
        ({"strength": -0.2}, "strength"),
        ({"labels": torch.tensor([3])}, "labels"),
        ({"labels": torch.tensor([3, 12])}, "labels"),
        ({"video": torch.rand(2, 4, 1, 16, 16)}, "video"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
    ],
)
def test_video_to_video_refuses_bad_input_naming_the_argument(kwargs, argument):
    pipe = _v2v_pipe()
    kwargs = {"video": _clip(), **kwargs}
    with pytest.raises(ValueError, match=argument):
        pipe(kwargs.pop("video"), **kwargs)


def test_the_sampler_refuses_a_start_time_outside_0_1():
    with pytest.raises(ValueError, match="t_start"):
        sample(lambda x, t, cond=None: x, (1, 2), steps=2, t_start=0.0, progress=False)
    with pytest.raises(ValueError, match="t_start"):
        sample(lambda x, t, cond=None: x, (1, 2), steps=2, t_start=1.5, progress=False)


# --- sync ---


def _sync_pipe():
    config = ConditionedUNet3DConfig(**TINY, signal=True)
    return SignalToVideoPipeline(_randomise(ConditionedUNet3D(config)), sampler="euler", guidance_scale=2.0)


def test_sync_is_seeded_and_follows_the_signal_length():
    pipe, signal = _sync_pipe(), torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.2, 0.0]])
    a = pipe(signal, labels=torch.tensor([1, 2]), num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    b = pipe(signal, labels=torch.tensor([1, 2]), num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    c = pipe(signal.flip(1), labels=torch.tensor([1, 2]), num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert a.shape == (2, 3, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("signal", [torch.rand(1, 9), torch.rand(1, 1), torch.rand(1, 4) + 1, torch.ones(1, 4, dtype=torch.long)])
def test_sync_refuses_bad_signals(signal):
    with pytest.raises(ValueError, match="signal"):
        _sync_pipe()(signal)
