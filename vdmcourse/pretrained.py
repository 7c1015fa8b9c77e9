"""Save and load checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint is ONE ``.safetensors`` file holding

* tensors ``model.<name>`` (the weights), optionally ``ema.<name>`` (their
  exponential moving average) and, in a training checkpoint written by
  :class:`vdmcourse.train.Trainer`, the optimiser moments, RNG states and loss
  history (``optimizer.*``, ``rng.*``, ``history.*``);
* one JSON document in the safetensors header (``__metadata__["vdmcourse"]``):
  the model's class path, its dataclass config, the step, free-form metadata and
  the trainer's JSON-able state.

Why one file: replacing one file is one atomic ``os.replace``, so a crash while
saving never leaves the weights of one step beside the config of another, and
the previous checkpoint survives intact. Any safetensors tool reads the JSON:
``safetensors.safe_open(path, "pt").metadata()["vdmcourse"]``.

Why no ``torch.load``: a pickle runs code when it is loaded. Here everything is
tensors (safetensors) or JSON -- the optimiser state too -- so opening a
checkpoint from the internet runs no code, and the model class named inside is
imported only from the ``vdmcourse`` package.

Shipped checkpoints live in ``data/checkpoints/NAME.safetensors``;
``data/checkpoints/manifest.json`` records for each the command that made it,
its steps, wall time, machine and metrics. :func:`load_pretrained` loads one.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import struct
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import nn

from vdmcourse.course import CHECKPOINT_DIR, pick_device

__all__ = [
    "Checkpoint",
    "atomic_path",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights",
    "build_model",
    "load_model",
    "load_pretrained",
    "read_manifest",
    "config_to_dict",
    "config_from_dict",
    "class_path",
]

FORMAT = "vdmcourse-checkpoint"
VERSION = 1
_HEADER_KEY = "vdmcourse"
_PACKAGE = "vdmcourse."


@dataclass
class Checkpoint:
    """A checkpoint read from disk (see the module docstring for the layout).

    ``tensors`` holds every tensor by its full key (``"model.conv.weight"``,
    ``"ema.conv.weight"``, ``"rng.data"``, ...); :meth:`weights` strips a prefix.
    ``config`` is the model config as a JSON dict; ``state`` the trainer's JSON
    state (empty for an inference-only checkpoint).
    """

    path: Path
    model_class: str
    config_class: str
    config: dict
    step: int
    metadata: dict
    state: dict
    tensors: dict[str, torch.Tensor] = field(repr=False)

    @property
    def has_ema(self) -> bool:
        return any(key.startswith("ema.") for key in self.tensors)

    def weights(self, which: str = "model") -> dict[str, torch.Tensor]:
        """The state dict stored under ``which`` ("model" or "ema"), prefix removed."""
        if which not in ("model", "ema"):
            raise ValueError(f"Checkpoint.weights: which must be 'model' or 'ema'; got {which!r}")
        prefix = which + "."
        weights = {key[len(prefix) :]: value for key, value in self.tensors.items() if key.startswith(prefix)}
        if not weights:
            raise ValueError(f"checkpoint {self.path} holds no {which!r} weights (it has: {_prefixes(self.tensors)})")
        return weights


def class_path(obj_or_type) -> str:
    """``"vdmcourse.nn.unet2d.UNet2D"`` for the class (or an instance of it)."""
    cls = obj_or_type if isinstance(obj_or_type, type) else type(obj_or_type)
    return f"{cls.__module__}.{cls.__qualname__}"


def config_to_dict(config) -> dict:
    """A model's dataclass config as a plain JSON-able dict (tuples become lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config_to_dict: expected a dataclass instance (a model's config); got {type(config).__name__}")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(config_class: type, values: dict):
    """Rebuild ``config_class`` from :func:`config_to_dict`'s output.

    JSON has no tuples, so lists come back as tuples; a field whose type is itself a
    dataclass is rebuilt recursively. Unknown keys are refused by name.
    """
    hints = typing.get_type_hints(config_class)
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"the stored config has fields {unknown} that {config_class.__name__} does not know; "
            "the checkpoint was made by a different version of vdmcourse"
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[name] = config_from_dict(hint, value)
        else:
            kwargs[name] = _lists_to_tuples(value)
    return config_class(**kwargs)


def _lists_to_tuples(value):
    if isinstance(value, list):
        return tuple(_lists_to_tuples(item) for item in value)
    return value


def _prefixes(tensors: dict) -> list[str]:
    return sorted({key.split(".", 1)[0] for key in tensors})


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one
    ``os.replace``, on any error it is deleted and ``path`` is left untouched.

    >>> with atomic_path("run/loss.csv") as tmp:   # doctest: +SKIP
    ...     tmp.write_text("step,loss\\n")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb") as written:  # make the bytes durable before the rename publishes them
            os.fsync(written.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _model_config(model: nn.Module):
    config = getattr(model, "config", None)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(
            f"{type(model).__name__} has no dataclass `config` attribute; course models are built as "
            "Model(config) and keep that config as model.config, which is what a checkpoint stores"
        )
    return config


def _plain(state_dict: dict, prefix: str) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors that share no memory with each other.
    return {prefix + key: value.detach().to("cpu").contiguous().clone() for key, value in state_dict.items()}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    ema: nn.Module | None = None,
    step: int = 0,
    metadata: dict | None = None,
    state: dict | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (and ``ema``, the trainer's ``state`` and extra ``tensors``) to
    ``path`` atomically; return the path.

    ``model`` must keep its dataclass config as ``model.config``. ``metadata`` and
    ``state`` must be JSON-able. Extra ``tensors`` keys must not start with
    ``model.``/``ema.``.
    """
    path = Path(path)
    config = _model_config(model)
    if ema is not None and type(ema) is not type(model):
        raise TypeError(f"save_checkpoint: ema must be a {type(model).__name__} like model; got {type(ema).__name__}")
    all_tensors = _plain(model.state_dict(), "model.")
    if ema is not None:
        all_tensors.update(_plain(ema.state_dict(), "ema."))
    for key, value in (tensors or {}).items():
        if key.split(".", 1)[0] in ("model", "ema"):
            raise ValueError(f"save_checkpoint: extra tensor key {key!r} clashes with the model/ema weights")
        all_tensors[key] = value.detach().to("cpu").contiguous()
    document = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": class_path(model),
        "config_class": class_path(config),
        "config": config_to_dict(config),
        "step": int(step),
        "metadata": metadata or {},
        "state": state or {},
    }
    header = {_HEADER_KEY: json.dumps(document)}
    with atomic_path(path) as tmp:
        save_file(all_tensors, tmp, metadata=header)
    return path


def _read_header(data: bytes, path: Path) -> dict:
    # The safetensors layout: 8-byte little-endian header length, then a JSON header.
    if len(data) < 8:
        raise ValueError(f"checkpoint {path} is truncated ({len(data)} bytes); delete it and save or download it again")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ValueError(f"checkpoint {path} is truncated or corrupt (its header claims {length} bytes, the file has {len(data)}); delete it and save or download it again")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"checkpoint {path} is corrupt: its header is not valid JSON ({error})") from None
    raw = header.get("__metadata__", {}).get(_HEADER_KEY)
    if raw is None:
        raise ValueError(
            f"{path} is a safetensors file but not a vdmcourse checkpoint (no {_HEADER_KEY!r} entry in its metadata); "
            "checkpoints are written by vdmcourse.pretrained.save_checkpoint or the Trainer"
        )
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"checkpoint {path} is corrupt: its vdmcourse metadata is not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        raise ValueError(
            f"checkpoint {path} has format {document.get('format')!r} version {document.get('version')!r}; "
            f"this vdmcourse reads {FORMAT!r} version {VERSION}"
        )
    missing = [key for key in ("model_class", "config_class", "config", "step", "metadata", "state") if key not in document]
    if missing:
        raise ValueError(f"checkpoint {path} is corrupt: its metadata lacks {missing}")
    return document


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no code is executed).

    A missing, truncated, corrupt or foreign file is refused with a ``ValueError``
    (``FileNotFoundError`` when missing) that says what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    document = _read_header(data, path)
    try:
        tensors = load_safetensors_bytes(data)
    except SafetensorError as error:
        raise ValueError(f"checkpoint {path} is truncated or corrupt ({error}); delete it and save or download it again") from None
    return Checkpoint(
        path=path,
        model_class=document["model_class"],
        config_class=document["config_class"],
        config=document["config"],
        step=document["step"],
        metadata=document["metadata"],
        state=document["state"],
        tensors=tensors,
    )


def _import_class(path: str) -> type:
    if not path.startswith(_PACKAGE):
        raise ValueError(f"refusing to import {path!r} named in a checkpoint: only classes from the vdmcourse package are loaded")
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise ValueError(f"the checkpoint names {path!r}, which this version of vdmcourse does not have") from None


def _differences(stored: dict, current: dict) -> list[str]:
    names = sorted(set(stored) | set(current))
    return [
        f"{name}: checkpoint {stored.get(name, '<absent>')!r}, model {current.get(name, '<absent>')!r}"
        for name in names
        if stored.get(name, "<absent>") != current.get(name, "<absent>")
    ]


def _resolve(checkpoint) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)


def load_weights(model: nn.Module, checkpoint: Checkpoint | str | os.PathLike, *, which: str = "model") -> nn.Module:
    """Copy the checkpoint's ``which`` weights ("model" or "ema") into ``model``; return it.

    Refused with a ``ValueError`` saying what differs when the checkpoint was made
    for another model class, another config, or has other parameter names or shapes.
    """
    checkpoint = _resolve(checkpoint)
    if class_path(model) != checkpoint.model_class:
        raise ValueError(f"checkpoint {checkpoint.path} holds a {checkpoint.model_class}; the model is a {class_path(model)}")
    differences = _differences(checkpoint.config, config_to_dict(_model_config(model)))
    if differences:
        raise ValueError(f"checkpoint {checkpoint.path} was made with another config: " + "; ".join(differences))
    stored = checkpoint.weights(which)
    expected = model.state_dict()
    problems = [f"missing {key}" for key in sorted(set(expected) - set(stored))]
    problems += [f"unexpected {key}" for key in sorted(set(stored) - set(expected))]
    problems += [
        f"{key} has shape {tuple(stored[key].shape)} in the checkpoint, {tuple(value.shape)} in the model"
        for key, value in expected.items()
        if key in stored and stored[key].shape != value.shape
    ]
    if problems:
        raise ValueError(f"checkpoint {checkpoint.path} does not fit the model: " + "; ".join(problems))
    model.load_state_dict(stored)
    return model


def build_model(checkpoint: Checkpoint | str | os.PathLike, *, which: str | None = None) -> nn.Module:
    """Rebuild the model a checkpoint holds: its class (from ``vdmcourse`` only), its
    config, and the ``which`` weights (default: the EMA weights when present, else
    the model weights). Returned in eval mode on the CPU."""
    checkpoint = _resolve(checkpoint)
    model_class = _import_class(checkpoint.model_class)
    config = config_from_dict(_import_class(checkpoint.config_class), checkpoint.config)
    model = model_class(config)
    which = which or ("ema" if checkpoint.has_ema else "model")
    return load_weights(model, checkpoint, which=which).eval()


def load_model(path: str | os.PathLike, *, device: str | torch.device | None = None) -> nn.Module:
    """:func:`build_model` from a checkpoint file, moved to ``device`` (default: :func:`pick_device`)."""
    return build_model(path).to(pick_device(None if device is None else str(device)))


def read_manifest(directory: str | os.PathLike | None = None) -> dict:
    """The shipped checkpoints' manifest: ``{"checkpoints": [{"name", "file", "command",
    "steps", "wall_time_s", "machine", "metrics", ...}, ...]}``."""
    path = Path(directory or CHECKPOINT_DIR) / "manifest.json"
    if not path.is_file():
        return {"checkpoints": []}
    return json.loads(path.read_text())


def load_pretrained(name: str, *, device: str | torch.device | None = None, directory: str | os.PathLike | None = None) -> nn.Module:
    """Load a shipped checkpoint by name (e.g. ``"image-cpu"``) from ``data/checkpoints``,
    in eval mode on ``device`` (default: :func:`pick_device`)."""
    directory = Path(directory or CHECKPOINT_DIR)
    path = directory / f"{name}.safetensors"
    if not path.is_file():
        known = [entry["name"] for entry in read_manifest(directory)["checkpoints"]]
        raise ValueError(
            f"load_pretrained: no shipped checkpoint named {name!r} in {directory}; available: {known or 'none'}. "
            f"Train one with `python -m vdmcourse train --preset {name}`."
        )
    return load_model(path, device=device)
