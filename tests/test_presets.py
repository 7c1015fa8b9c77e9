"""The preset registry: every preset builds, draws batches and computes its loss."""

import dataclasses
import json

import pytest
import torch

from vdmcourse.course import CHECKPOINT_DIR
from vdmcourse.presets import PRESETS, Preset, get_preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_consistent(name):
    preset = PRESETS[name]
    assert preset.name == name
    assert 0 < preset.quick_steps <= preset.steps
    if preset.vae is not None and not (CHECKPOINT_DIR / f"{preset.vae}.safetensors").is_file():
        pytest.skip(f"{name} diffuses in {preset.vae}'s latents, which is not shipped (a GPU preset)")
    json.dumps(preset.metadata())  # stored in every checkpoint
    if preset.vae is not None:
        frames, channels, size, _ = preset.latent_shape
        assert (preset.model_config.image_size, preset.model_config.channels, preset.model_config.frames) == (size, channels, frames)
        assert preset.metadata()["latent_shape"] == list(preset.latent_shape)
    elif preset.generative:
        assert preset.model_config.image_size == preset.data.canvas
        assert preset.sample_shape == (preset.data.frames, 1, preset.data.canvas, preset.data.canvas)


@pytest.mark.parametrize("name", ["image-tiny", "image-cpu"])
def test_batches_are_reproducible_clips_in_the_unit_range(name):
    preset = PRESETS[name]
    batch = preset.batches()(torch.Generator().manual_seed(0))
    again = preset.batches()(torch.Generator().manual_seed(0))
    assert batch["video"].shape == (preset.batch_size, *preset.sample_shape)
    assert batch["labels"].shape == (preset.batch_size, preset.data.digits)
    assert 0 <= batch["video"].min() and batch["video"].max() <= 1
    assert torch.equal(batch["video"], again["video"]) and torch.equal(batch["labels"], again["labels"])


def test_the_loss_is_a_reproducible_finite_scalar():
    preset = get_preset("image-tiny")
    torch.manual_seed(0)
    model = preset.build_model()
    batch = preset.batches()(torch.Generator().manual_seed(0))
    loss = preset.loss_fn()(model, batch, torch.Generator().manual_seed(1))
    again = preset.loss_fn()(model, batch, torch.Generator().manual_seed(1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.equal(loss, again)
    # An untrained flow model predicts 0, so the loss is E|eps - x0|^2 = 1 + E[x0^2] > 1.
    assert loss > 1


@pytest.mark.parametrize("name", [name for name, preset in PRESETS.items() if preset.init_from in PRESETS])
def test_a_preset_inflated_from_another_shares_its_image_fields(name):
    preset = PRESETS[name]
    image = PRESETS[preset.init_from].model_config
    if type(image) is type(preset.model_config):  # fine-tuned from a model of its own kind: the same config
        assert preset.model_config == image
        return
    if hasattr(preset.model_config, "video_fields"):  # a conditioned video model made from a video model
        assert preset.model_config.video_fields() == dataclasses.asdict(image)
        return
    if not hasattr(preset.model_config, "image_fields"):  # another kind of start (a captioner from the evaluator's trunk)
        assert isinstance(preset.build_model(), preset.model_class)
        return
    assert preset.model_config.image_fields() == dataclasses.asdict(image), (
        f"{name} starts from {preset.init_from}'s checkpoint: its image fields must equal that preset's model config"
    )


def test_quick_mode_uses_quick_steps(monkeypatch):
    preset = get_preset("image-cpu")
    monkeypatch.setenv("VDM_QUICK", "1")
    assert preset.budget_steps() == preset.quick_steps
    monkeypatch.setenv("VDM_QUICK", "0")
    assert preset.budget_steps() == preset.steps


def test_a_preset_can_bring_its_own_loss_and_batches():
    tiny = get_preset("image-tiny")

    def batch_source(generator, batch_size):
        return torch.rand(batch_size, 3, generator=generator)

    def loss(model, batch, generator):
        return batch.sum()

    custom = Preset(name="x", description="", model_class=tiny.model_class, model_config=tiny.model_config,
                    data=tiny.data, objective=None, loss=loss, batch_source=batch_source, batch_size=5)
    assert not custom.generative
    assert custom.loss_fn() is loss
    assert custom.batches()(torch.Generator().manual_seed(0)).shape == (5, 3)


def test_unknown_names_and_objectives_are_refused():
    with pytest.raises(ValueError, match="known presets: image-tiny"):
        get_preset("image-huge")
    tiny = get_preset("image-tiny")
    fields = dict(name="x", description="", model_class=tiny.model_class, model_config=tiny.model_config, data=tiny.data)
    with pytest.raises(ValueError, match="objective"):
        Preset(**fields, objective="score")
    with pytest.raises(ValueError, match="objective=None"):
        Preset(**fields, loss=lambda model, batch, generator: batch)
    with pytest.raises(ValueError, match="t_distribution"):
        Preset(**fields, t_distribution="beta")
    with pytest.raises(ValueError, match="t_mean shifts logit-normal times only"):
        Preset(**fields, t_mean=1.0)
    with pytest.raises(ValueError, match="Preset 'x': guidance_interval must be"):
        Preset(**fields, guidance_interval=(0.9, 0.1))
    with pytest.raises(ValueError, match="Preset 'x': motion_weight must be a finite number >= 0; got -1"):
        Preset(**fields, motion_weight=-1)
    with pytest.raises(ValueError, match="Preset 'x': motion_weight and frame_t_share shape the plain diffusion loss"):
        Preset(**fields, objective=None, loss=lambda model, batch, generator: batch, motion_weight=0.5)
    with pytest.raises(ValueError, match="Preset 'x': frame_t_share must be a number in \\[0, 1\\]"):
        Preset(**fields, frame_t_share=1.5)
    with pytest.raises(ValueError, match="Preset 'x': motion_weight and frame_t_share shape the plain diffusion loss"):
        Preset(**fields, objective=None, loss=lambda model, batch, generator: batch, frame_t_share=0.5)


def test_frame_t_share_reaches_the_loss_and_is_recorded_only_when_set():
    tiny = get_preset("dit-cpu")
    assert "frame_t_share" not in tiny.metadata()
    shared = dataclasses.replace(tiny, frame_t_share=1.0)
    assert shared.metadata()["frame_t_share"] == 1.0
    model = TimeRecorder()
    batch = {"video": torch.rand(3, 4, 1, 8, 8), "labels": torch.zeros(3, 1, dtype=torch.long)}
    shared.loss_fn()(model, batch, torch.Generator().manual_seed(0))
    assert model.t.shape == (3, 4) and model.t.std(dim=1).min() > 0


def test_a_guidance_interval_is_recorded_only_when_it_is_not_every_call():
    tiny = get_preset("image-tiny")
    assert "guidance_interval" not in tiny.metadata()  # checkpoints made before the interval existed read the same
    assert dataclasses.replace(tiny, guidance_interval=(0.3, 1.0)).metadata()["guidance_interval"] == [0.3, 1.0]


class TimeRecorder(torch.nn.Module):
    """Predicts zeros and remembers the training times it was given."""

    def forward(self, x, t, cond=None):
        self.t = t
        return torch.zeros_like(x)


def test_the_preset_decides_how_training_times_are_drawn():
    tiny = dataclasses.replace(get_preset("image-tiny"), batch_size=2000)
    batch = tiny.batches()(torch.Generator().manual_seed(0))
    model = TimeRecorder()
    tiny.loss_fn()(model, batch, torch.Generator().manual_seed(1))
    assert model.t.mean().item() == pytest.approx(0.5, abs=0.02) and model.t.std().item() == pytest.approx(0.289, abs=0.01)
    shifted = dataclasses.replace(tiny, t_distribution="logit_normal", t_mean=1.0)
    shifted.loss_fn()(model, batch, torch.Generator().manual_seed(1))
    assert torch.logit(model.t.double()).mean().item() == pytest.approx(1.0, abs=0.06)
    assert shifted.metadata()["t_distribution"] == "logit_normal" and shifted.metadata()["t_mean"] == 1.0


def test_the_preset_passes_its_motion_weight_to_the_loss_and_records_it():
    clips = dataclasses.replace(get_preset("dit-cpu"), batch_size=4)
    batch = clips.batches()(torch.Generator().manual_seed(0))
    model = TimeRecorder()  # predicts zeros: the loss is the target's square, plus the weight times its differences'

    def loss(weight):
        return dataclasses.replace(clips, motion_weight=weight).loss_fn()(model, batch, torch.Generator().manual_seed(1)).item()

    plain, half, whole = loss(0.0), loss(0.5), loss(1.0)
    # Flow target eps - x0, the frames' noise independent: the differences' square is about twice the noise's.
    assert whole - plain == pytest.approx(2 * (half - plain), rel=1e-5) and 1.5 < whole - plain < 2.5
    assert "motion_weight" not in clips.metadata()  # checkpoints made before the weight existed read the same
    assert dataclasses.replace(clips, motion_weight=0.5).metadata()["motion_weight"] == 0.5
