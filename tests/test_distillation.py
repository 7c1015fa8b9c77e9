"""Guidance distillation (Meng et al. 2023, stage one): the target is the teacher's guided
output, the student starts as its teacher, the samplers call it once per step."""

import dataclasses

import pytest
import torch

from vdmcourse.course import CHECKPOINT_DIR
from vdmcourse.diffusion import model_evaluations, sample
from vdmcourse.diffusion.distillation import GuidedUNet3D, GuidedUNet3DConfig, distillation_target, guidance_distillation_loss
from vdmcourse.diffusion.guidance import guided_output
from vdmcourse.nn.unet3d import UNet3D
from vdmcourse.pretrained import build_model, save_checkpoint

from helpers import VIDEO, seeded, wake_up


def teacher():
    torch.manual_seed(0)
    return wake_up(UNet3D(VIDEO)).eval()


def inputs(batch=3):
    g = seeded(1)
    return torch.randn(batch, 4, 1, 16, 16, generator=g), torch.rand(batch, generator=g), torch.tensor([3, 7, 1][:batch])


def test_the_distillation_target_is_the_teachers_guided_output():
    model, (x, t, labels) = teacher(), inputs()
    for w in (0.0, 1.0, 2.0, 4.5):
        torch.testing.assert_close(distillation_target(model, x, t, labels, w), guided_output(model, x, t, labels, w))
    per_clip = torch.tensor([1.0, 2.0, 3.5])
    target = distillation_target(model, x, t, labels, per_clip)
    for i, w in enumerate(per_clip.tolist()):  # one scale per clip: row i is guided at w_i
        torch.testing.assert_close(target[i : i + 1], guided_output(model, x[i : i + 1], t[i : i + 1], labels[i : i + 1], w))
    cond = model(x, t, cond=labels)
    assert (distillation_target(model, x, t, labels, 2.0) - cond).abs().max() > 1e-3  # guidance moves it


def test_a_student_at_init_reproduces_its_teachers_conditional_output_for_every_scale():
    source, (x, t, labels) = teacher(), inputs()
    student = GuidedUNet3D.from_image_model(source).eval()
    assert isinstance(student.config, GuidedUNet3DConfig) and student.config.video_fields() == dataclasses.asdict(VIDEO)
    with torch.no_grad():
        conditional = source(x, t, cond=labels)
        assert conditional.abs().max() > 0.1  # a woken-up teacher, not a zero-output one
        for w in (None, 1.0, 2.0, torch.tensor([1.0, 3.0, 0.0])):
            assert torch.equal(student(x, t, cond=labels, guidance=w), conditional)
        per_frame_t = t[:, None].expand(-1, 4).contiguous()  # (B, T): one time per frame
        torch.testing.assert_close(student(x, per_frame_t, cond=labels, guidance=2.0), source(x, per_frame_t, cond=labels))


def test_the_guidance_scale_reaches_the_output_once_its_embedding_is_trained():
    student, (x, t, labels) = GuidedUNet3D.from_image_model(teacher()).eval(), inputs()
    with torch.no_grad():
        torch.nn.init.normal_(student.guidance_embed.mlp[2].weight, std=0.5)
        one, three = student(x, t, cond=labels, guidance=1.0), student(x, t, cond=labels, guidance=3.0)
        mixed = student(x, t, cond=labels, guidance=torch.tensor([1.0, 3.0, 1.0]))
    assert (one - three).abs().max() > 1e-3
    torch.testing.assert_close(mixed[1], three[1])
    torch.testing.assert_close(mixed[0], one[0])


def test_samplers_call_a_distilled_model_once_per_step_with_the_scale():
    student, (x, _, labels) = GuidedUNet3D.from_image_model(teacher()).eval(), inputs()
    torch.nn.init.normal_(student.guidance_embed.mlp[2].weight, std=0.5)
    calls = []
    hook = student.register_forward_hook(lambda module, args, kwargs, out: calls.append((args[0].shape[0], kwargs["guidance"])), with_kwargs=True)
    out = sample(student, tuple(x.shape), sampler="euler", steps=3, cond=labels, guidance_scale=2.0, noise=x, progress=False)
    hook.remove()
    assert calls == [(3, 2.0)] * 3  # one call of B clips per step, not a batch of 2B
    expected = x  # Euler on the flow path by hand: x_s = x_t + (s - t) * v
    with torch.no_grad():
        for t, s in ((1.0, 2 / 3), (2 / 3, 1 / 3), (1 / 3, 0.0)):
            expected = expected + (s - t) * student(expected, torch.full((3,), t), cond=labels, guidance=2.0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_the_loss_is_zero_where_the_target_is_the_students_start_and_training_reduces_it():
    source = teacher()
    batch = {"video": torch.rand(3, 4, 1, 16, 16, generator=seeded(3)), "labels": torch.tensor([[3], [7], [1]])}
    at_one = GuidedUNet3D.from_image_model(source, GuidedUNet3DConfig(**VIDEO.__dict__, guidance_range=(1.0, 1.0)))
    # w = 1: the target is the teacher's conditional (or, for dropped labels, unconditional) output,
    # up to rounding (uncond + 1 * (cond - uncond), from a batch of 2B)
    assert guidance_distillation_loss(at_one, batch, seeded(4), teacher=source, p_uncond=0.5) < 1e-10
    student = GuidedUNet3D.from_image_model(source, GuidedUNet3DConfig(**VIDEO.__dict__, guidance_range=(3.0, 3.0)))
    first = guidance_distillation_loss(student, batch, seeded(4), teacher=source, p_uncond=0.0)
    assert first > 0
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-4)
    for _ in range(15):
        loss = guidance_distillation_loss(student, batch, seeded(4), teacher=source, p_uncond=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert guidance_distillation_loss(student, batch, seeded(4), teacher=source, p_uncond=0.0) < 0.3 * first
    assert all(p.grad is None for p in source.parameters())  # the teacher is never trained


def test_a_student_checkpoint_round_trips(tmp_path):
    student, (x, t, labels) = GuidedUNet3D.from_image_model(teacher(), guidance_range=(1.0, 4.0)).eval(), inputs()
    torch.nn.init.normal_(student.guidance_embed.mlp[2].weight, std=0.5)
    save_checkpoint(tmp_path / "student.safetensors", student)
    again = build_model(tmp_path / "student.safetensors").eval()
    assert isinstance(again, GuidedUNet3D) and again.config == student.config and again.config.guidance_range == (1.0, 4.0)
    with torch.no_grad():
        assert torch.equal(again(x, t, cond=labels, guidance=2.5), student(x, t, cond=labels, guidance=2.5))


def test_bad_students_and_scales_are_refused():
    with pytest.raises(ValueError, match="guidance_range"):
        GuidedUNet3DConfig(**VIDEO.__dict__, guidance_range=(3.0, 1.0))
    with pytest.raises(ValueError, match="label-conditional"):
        GuidedUNet3DConfig(**{**VIDEO.__dict__, "num_classes": None})
    with pytest.raises(ValueError, match="differ from the teacher"):
        GuidedUNet3D.from_image_model(teacher(), GuidedUNet3DConfig(**{**VIDEO.__dict__, "frames": 8}))
    student, (x, t, labels) = GuidedUNet3D.from_image_model(teacher()), inputs()
    with pytest.raises(ValueError, match="guidance"):
        student(x, t, cond=labels, guidance=torch.ones(2))
    with pytest.raises(ValueError, match="needs labels"):
        guided_output(student, x, t, None, 2.0)


def test_the_distilled_preset_learns_from_video_cpu():
    from vdmcourse.presets import get_preset

    preset = get_preset("video-distilled-cpu")
    assert preset.teacher == "video-cpu" and preset.init_from == "video-cpu" and preset.metadata()["teacher"] == "video-cpu"
    assert preset.sampler == get_preset("video-cpu").sampler and preset.sample_steps == get_preset("video-cpu").sample_steps
    batch = dataclasses.replace(preset, batch_size=2).batches()(seeded(0))
    loss = preset.loss_fn()(preset.build_model(), batch, seeded(1))
    assert loss.ndim == 0 and 0 < loss < 0.1  # the student starts at the teacher's conditional output: close


def test_the_8_step_preset_continues_the_shipped_student_and_records_dpm_8():
    from vdmcourse.presets import get_preset
    from vdmcourse.pretrained import load_pretrained

    preset, first = get_preset("video-distilled-8-cpu"), get_preset("video-distilled-cpu")
    assert preset.teacher == "video-cpu" and preset.init_from == "video-distilled-cpu"
    assert preset.model_config == first.model_config and preset.train.seed != first.train.seed  # fresh batches
    assert (preset.metadata()["sampler"], preset.metadata()["sample_steps"]) == ("dpm++2m", 8)
    if not (CHECKPOINT_DIR / "video-distilled-cpu.safetensors").is_file():
        pytest.skip("video-distilled-cpu is not shipped")
    model, shipped = preset.build_model(), load_pretrained("video-distilled-cpu")
    assert model.training  # fine-tuned: every weight is the shipped student's
    for (name, value), (_, expected) in zip(model.state_dict().items(), shipped.state_dict().items(), strict=True):
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)


STUDENTS = ["video-distilled-cpu", "video-distilled-8-cpu"]


@pytest.mark.parametrize("name", STUDENTS)
def test_a_shipped_student_samples_with_its_recorded_sampler(name):
    """The checkpoint's metadata, which `sample` in the CLI reads, names its preset's sampler;
    at those settings a student is called once per step with the clips alone."""
    from vdmcourse.pretrained import load_checkpoint, load_pretrained
    from vdmcourse.presets import get_preset

    path = CHECKPOINT_DIR / f"{name}.safetensors"
    if not path.is_file():
        pytest.skip(f"{name} is not shipped")
    info, preset = load_checkpoint(path).metadata, get_preset(name)
    assert (info["sampler"], info["sample_steps"], info["teacher"]) == (preset.sampler, preset.sample_steps, "video-cpu")
    student, batches = load_pretrained(name).eval(), []
    student.register_forward_hook(lambda module, args, kwargs, output: batches.append(args[0].shape[0]), with_kwargs=True)
    clips = sample(student, (2, *preset.sample_shape), sampler=info["sampler"], steps=info["sample_steps"], cond=torch.tensor([3, 7]),
                   guidance_scale=info["guidance_scale"], generator=seeded(0), progress=False)
    assert batches == [2] * model_evaluations(info["sampler"], info["sample_steps"]) and clips.isfinite().all()


@pytest.mark.parametrize("name", STUDENTS)
def test_the_shipped_student_is_closer_to_the_guided_teacher_than_the_teacher_alone(name):
    """At noisy training clips, the shipped student's one call at w = 2 is nearer video-cpu's
    guided output than video-cpu's conditional output is: distillation learned something."""
    from vdmcourse.data import MovingMNISTConfig, generate_clips
    from vdmcourse.pretrained import load_pretrained

    if not (CHECKPOINT_DIR / f"{name}.safetensors").is_file():
        pytest.skip(f"{name} is not shipped")
    source, student = load_pretrained("video-cpu").eval(), load_pretrained(name).eval()
    clips = generate_clips(4, MovingMNISTConfig.cpu(), generator=seeded(5))
    x0, labels = clips.video * 2 - 1, clips.labels
    t = torch.tensor([0.2, 0.4, 0.6, 0.8])
    x_t = (1 - t)[:, None, None, None, None] * x0 + t[:, None, None, None, None] * torch.randn(x0.shape, generator=seeded(6))
    with torch.no_grad():
        target = guided_output(source, x_t, t, labels, 2.0)
        student_error = (student(x_t, t, cond=labels, guidance=2.0) - target).pow(2).mean()
        teacher_error = (source(x_t, t, cond=labels) - target).pow(2).mean()
    assert student_error < 0.7 * teacher_error
