"""Checkpoint integrity: a content hash in every header, a SHA-256 per shipped file."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vdmcourse.cli import main
from vdmcourse.course import CHECKPOINT_DIR
from vdmcourse.nn.unet2d import UNet2D, UNet2DConfig
from vdmcourse.pretrained import (
    build_model,
    file_sha256,
    load_checkpoint,
    load_pretrained,
    read_manifest,
    save_checkpoint,
    seal,
)

CONFIG = UNet2DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4)


def saved(tmp_path, name="c.safetensors"):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / name, UNet2D(CONFIG), step=12, metadata={"preset": "x"})


def rewrite(path, edit_document=None, keep_hash=True):
    """Rewrite a checkpoint's header JSON through ``edit_document`` with the same tensors."""
    with safe_open(path, "pt") as handle:
        metadata = handle.metadata()
    document = json.loads(metadata["vdmcourse"])
    if edit_document is not None:
        edit_document(document)
    metadata["vdmcourse"] = json.dumps(document)
    if not keep_hash:
        del metadata["vdmcourse_sha256"]
    save_file(load_file(path), path, metadata=metadata)


def test_a_flipped_byte_in_the_weights_is_refused(tmp_path):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"c\.safetensors is corrupt: its content hash does not match"):
        load_checkpoint(path)


def test_a_header_edit_that_keeps_every_shape_is_refused(tmp_path):
    path = saved(tmp_path)
    rewrite(path, lambda document: document["config"].update(heads=4))  # 8 channels: 2 or 4 heads, same shapes
    with pytest.raises(ValueError, match="content hash does not match"):
        build_model(path)


@pytest.mark.parametrize(
    "field, value, words",
    [("step", "12", "'step' must be an int"), ("step", -1, "'step' must be an int >= 0"), ("config", None, "'config' must be a dict"),
     ("metadata", [], "'metadata' must be a dict"), ("model_class", 3, "'model_class' must be a str")],
)
def test_header_fields_are_checked_by_type(tmp_path, field, value, words):
    path = saved(tmp_path)
    rewrite(path, lambda document: document.update({field: value}), keep_hash=False)
    with pytest.raises(ValueError, match=words):
        load_checkpoint(path)


def test_a_checkpoint_without_a_content_hash_still_loads(tmp_path):
    path = saved(tmp_path)
    rewrite(path, keep_hash=False)
    assert load_checkpoint(path).step == 12


@pytest.mark.parametrize(
    "field, value, words",
    [("model_class", "vdmcourse.course.pick_device", "not an nn.Module subclass"),
     ("config_class", "vdmcourse.nn.unet2d.UNet2D", "not a dataclass"),
     ("model_class", "vdmcourse.nn.unet2d.UNet2DConfig", "not an nn.Module subclass")],
)
def test_only_module_classes_with_dataclass_configs_are_built(tmp_path, field, value, words):
    path = saved(tmp_path)
    rewrite(path, lambda document: document.update({field: value}), keep_hash=False)
    with pytest.raises(ValueError, match=words):
        build_model(path)


def test_a_pickle_is_named_as_a_pickle(tmp_path):
    torch.save(UNet2D(CONFIG).state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model\.pt looks like a PyTorch pickle.*never unpickles.*save_checkpoint"):
        load_checkpoint(tmp_path / "model.pt")


def test_every_shipped_checkpoint_matches_its_manifest_hash():
    entries = read_manifest()["checkpoints"]
    for entry in entries:
        path = CHECKPOINT_DIR / entry["file"]
        assert entry.get("sha256") == file_sha256(path), f"{entry['name']}: run `python -m vdmcourse seal {entry['name']}`"
        assert entry["bytes"] == path.stat().st_size
        with safe_open(path, "pt") as handle:
            assert "vdmcourse_sha256" in handle.metadata()


def shipped_copy(tmp_path, name="evaluator-cpu"):
    shutil.copy(CHECKPOINT_DIR / "manifest.json", tmp_path / "manifest.json")
    shutil.copy(CHECKPOINT_DIR / f"{name}.safetensors", tmp_path / f"{name}.safetensors")
    return tmp_path / f"{name}.safetensors"


def test_load_pretrained_names_the_file_and_both_hashes_on_a_mismatch(tmp_path):
    path = shipped_copy(tmp_path)
    expected = file_sha256(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as error:
        load_pretrained("evaluator-cpu", directory=tmp_path, device="cpu")
    message = str(error.value)
    assert str(path) in message and expected in message and file_sha256(path) in message and "git checkout" in message


def test_seal_adds_a_content_hash_and_records_the_file_hash(tmp_path):
    path = shipped_copy(tmp_path)
    rewrite(path, keep_hash=False)  # as written before content hashes existed
    before = load_file(path)
    entry = seal("evaluator-cpu", tmp_path)
    assert entry["sha256"] == file_sha256(path) == read_manifest(tmp_path)["checkpoints"][0]["sha256"]
    after = load_file(path)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert load_pretrained("evaluator-cpu", directory=tmp_path, device="cpu") is not None
    with pytest.raises(ValueError, match="has no entry"):
        shutil.copy(path, tmp_path / "other.safetensors")
        seal("other", tmp_path)


def test_the_cli_refuses_a_corrupt_checkpoint_with_status_2(tmp_path, capsys):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    assert main(["sample", "--checkpoint", str(path), "--out", str(tmp_path / "x.gif")]) == 2
    assert "content hash does not match" in capsys.readouterr().err
