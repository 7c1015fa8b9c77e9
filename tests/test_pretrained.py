"""Checkpoints: safetensors + JSON, refused when they do not fit, never executed."""

import json

import pytest
import torch
from safetensors.torch import save_file

from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig
from vdmcourse.pretrained import (
    atomic_path,
    build_model,
    config_from_dict,
    config_to_dict,
    load_checkpoint,
    load_pretrained,
    load_weights,
    read_manifest,
    save_checkpoint,
)

CONFIG = UNet2DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4)


def model_and_ema():
    torch.manual_seed(0)
    model, ema = UNet2D(CONFIG), UNet2D(CONFIG)
    with torch.no_grad():
        for p in ema.parameters():
            p.normal_()
    return model, ema


def test_round_trip_keeps_weights_ema_config_step_and_metadata(tmp_path):
    model, ema = model_and_ema()
    path = save_checkpoint(tmp_path / "ckpt.safetensors", model, ema=ema, step=12, metadata={"preset": "x"})
    checkpoint = load_checkpoint(path)
    assert checkpoint.step == 12 and checkpoint.metadata == {"preset": "x"}
    assert checkpoint.model_class == "vdmcourse.nn.unet2d.UNet2D"
    rebuilt = build_model(path)  # EMA weights by default
    assert rebuilt.config == CONFIG and not rebuilt.training
    for a, b in zip(rebuilt.state_dict().values(), ema.state_dict().values()):
        assert torch.equal(a, b)
    plain = build_model(path, which="model")
    for a, b in zip(plain.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_the_config_travels_as_json_in_the_safetensors_header(tmp_path):
    from safetensors import safe_open

    model, _ = model_and_ema()
    save_checkpoint(tmp_path / "c.safetensors", model)
    with safe_open(tmp_path / "c.safetensors", "pt") as handle:
        document = json.loads(handle.metadata()["vdmcourse"])
    assert document["config"]["channel_mults"] == [1, 2]
    assert config_from_dict(UNet2DConfig, document["config"]) == CONFIG


def test_a_different_config_is_refused_naming_the_difference(tmp_path):
    model, _ = model_and_ema()
    save_checkpoint(tmp_path / "c.safetensors", model)
    other = UNet2D(UNet2DConfig(**{**CONFIG.__dict__, "base_channels": 16}))
    with pytest.raises(ValueError, match=r"base_channels: checkpoint 8, model 16"):
        load_weights(other, tmp_path / "c.safetensors")


def test_different_shapes_and_names_are_refused_naming_them(tmp_path):
    model, _ = model_and_ema()
    checkpoint = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", model))
    checkpoint.tensors["model.input_conv.weight"] = torch.zeros(3, 1, 3, 3)
    del checkpoint.tensors["model.output.2.bias"]
    with pytest.raises(ValueError, match=r"missing output.2.bias.*input_conv.weight has shape \(3, 1, 3, 3\)"):
        load_weights(UNet2D(CONFIG), checkpoint)


def test_another_model_class_is_refused(tmp_path):
    model, _ = model_and_ema()
    save_checkpoint(tmp_path / "c.safetensors", model)

    class Other(UNet2D):
        pass

    with pytest.raises(ValueError, match="holds a vdmcourse.nn.unet2d.UNet2D"):
        load_weights(Other(CONFIG), tmp_path / "c.safetensors")


def test_truncated_corrupt_and_foreign_files_are_refused_clearly(tmp_path):
    model, _ = model_and_ema()
    data = save_checkpoint(tmp_path / "c.safetensors", model).read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(tmp_path / "truncated.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "garbage.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(tmp_path / "empty.safetensors")
    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ValueError, match="not a vdmcourse checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_only_vdmcourse_classes_are_imported(tmp_path):
    document = {
        "format": "vdmcourse-checkpoint", "version": 1, "model_class": "subprocess.Popen",
        "config_class": "subprocess.Popen", "config": {}, "step": 0, "metadata": {}, "state": {},
    }
    save_file({"model.w": torch.zeros(1)}, tmp_path / "evil.safetensors", metadata={"vdmcourse": json.dumps(document)})
    with pytest.raises(ValueError, match="only classes from the vdmcourse package"):
        build_model(tmp_path / "evil.safetensors")


def test_config_from_dict_refuses_unknown_fields():
    values = config_to_dict(CONFIG)
    values["wings"] = 2
    with pytest.raises(ValueError, match=r"\['wings'\]"):
        config_from_dict(UNet2DConfig, values)


def test_atomic_path_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_save_refuses_a_model_without_a_dataclass_config(tmp_path):
    with pytest.raises(TypeError, match="dataclass `config`"):
        save_checkpoint(tmp_path / "c.safetensors", torch.nn.Linear(2, 2))


def test_load_pretrained_names_the_available_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="no shipped checkpoint named 'nope'"):
        load_pretrained("nope")


def test_every_manifest_entry_is_a_shipped_loadable_checkpoint():
    from vdmcourse.course import CHECKPOINT_DIR

    entries = read_manifest()["checkpoints"]
    assert entries, "data/checkpoints/manifest.json lists no checkpoints"
    for entry in entries:
        assert {"name", "file", "command", "steps", "wall_time_s", "machine", "metrics"} <= set(entry)
        checkpoint = load_checkpoint(CHECKPOINT_DIR / entry["file"])
        assert checkpoint.step == entry["steps"]
        assert (CHECKPOINT_DIR / entry["file"]).stat().st_size < 10 * 2**20, "keep shipped checkpoints small"
    model = load_pretrained(entries[0]["name"], device="cpu")
    assert not model.training
