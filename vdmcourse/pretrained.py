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

Integrity: the header also holds ``__metadata__["vdmcourse_sha256"]``, a SHA-256
of the JSON document and of every tensor (name, dtype, shape, bytes), checked on
every load, so a flipped byte or an edited header (say ``heads`` 2 -> 4, which keeps
every shape) is refused instead of loading as another model. Files written before
the hash existed still load (without that check). The manifest records the SHA-256
of each shipped file, checked by :func:`load_pretrained`; :func:`seal` adds both
to a checkpoint (``python -m vdmcourse seal NAME``).

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
import hashlib
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
    "content_hash",
    "file_sha256",
    "seal",
    "verify_shipped",
    "remove_stale_temporaries",
]

FORMAT = "vdmcourse-checkpoint"
VERSION = 1
_HEADER_KEY = "vdmcourse"
_HASH_KEY = "vdmcourse_sha256"
_DOCUMENT_TYPES = {"model_class": str, "config_class": str, "config": dict, "step": int, "metadata": dict, "state": dict}
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
        _fsync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` leaves in ``directory`` when its
    process is killed mid-write (``.NAME.tmp-PID`` with PID no longer running); return
    them. POSIX only (elsewhere nothing is removed)."""
    if os.name != "posix":
        return []
    removed = []
    for tmp in Path(directory).glob(".*.tmp-*"):
        pid = tmp.name.rpartition(".tmp-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: fsync the folder's entry table (POSIX; Windows cannot open folders)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def content_hash(document: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a checkpoint's JSON ``document`` (the exact string stored) and
    of every tensor: its name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256(document.encode())
    for key in sorted(tensors):
        value = tensors[key].detach().to("cpu").contiguous()
        digest.update(json.dumps([key, str(value.dtype), list(value.shape)]).encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, as recorded in ``manifest.json``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    text = json.dumps(document)
    header = {_HEADER_KEY: text, _HASH_KEY: content_hash(text, all_tensors)}
    with atomic_path(path) as tmp:
        save_file(all_tensors, tmp, metadata=header)
    return path


_PICKLE_STARTS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _refuse_pickle(data: bytes, path: Path) -> None:
    if data.startswith(_PICKLE_STARTS):
        raise ValueError(
            f"{path} looks like a PyTorch pickle (torch.save), not a safetensors checkpoint; vdmcourse never "
            "unpickles files, because loading a pickle runs code. If you trust it, convert it once: "
            "model.load_state_dict(torch.load(PATH, weights_only=True)), then "
            "vdmcourse.pretrained.save_checkpoint('NAME.safetensors', model)"
        )


def _read_header(data: bytes, path: Path) -> tuple[dict, str, str | None]:
    """The checkpoint's JSON document (checked field by field), its exact text, and the
    stored content hash (None for a file written before hashes existed)."""
    # The safetensors layout: 8-byte little-endian header length, then a JSON header.
    _refuse_pickle(data, path)
    if len(data) < 8:
        raise ValueError(f"checkpoint {path} is truncated ({len(data)} bytes); delete it and save or download it again")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ValueError(f"checkpoint {path} is truncated or corrupt (its header claims {length} bytes, the file has {len(data)}); delete it and save or download it again")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"checkpoint {path} is corrupt: its header is not valid JSON ({error})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    raw = metadata.get(_HEADER_KEY) if isinstance(metadata, dict) else None
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
    missing = [key for key in _DOCUMENT_TYPES if key not in document]
    if missing:
        raise ValueError(f"checkpoint {path} is corrupt: its metadata lacks {missing}")
    for key, kind in _DOCUMENT_TYPES.items():
        value = document[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (key == "step" and value < 0):
            raise ValueError(
                f"checkpoint {path} is corrupt: its {key!r} must be {'an int >= 0' if kind is int else 'a ' + kind.__name__}; "
                f"got {value!r:.60}"
            )
    return document, raw, metadata.get(_HASH_KEY)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no code is executed).

    A missing, truncated, corrupt or foreign file is refused with a ``ValueError``
    (``FileNotFoundError`` when missing) that says what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    document, text, stored_hash = _read_header(data, path)
    try:
        tensors = load_safetensors_bytes(data)
    except SafetensorError as error:
        raise ValueError(f"checkpoint {path} is truncated or corrupt ({error}); delete it and save or download it again") from None
    if stored_hash is not None and content_hash(text, tensors) != stored_hash:
        raise ValueError(
            f"checkpoint {path} is corrupt: its content hash does not match (a changed byte or an edited header); "
            "delete it and save it again, or get a good copy (git checkout -- data/checkpoints for a shipped one)"
        )
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


def _import_class(path: str, kind: str) -> type:
    """The class a checkpoint names: from the vdmcourse package only, and only an
    ``nn.Module`` subclass (``kind="model_class"``) or a dataclass (``"config_class"``)."""
    if not path.startswith(_PACKAGE):
        raise ValueError(f"refusing to import {path!r} named in a checkpoint: only classes from the vdmcourse package are loaded")
    module_name, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise ValueError(f"the checkpoint names {path!r}, which this version of vdmcourse does not have") from None
    if kind == "model_class":
        fits = isinstance(found, type) and issubclass(found, nn.Module)
    else:
        fits = isinstance(found, type) and dataclasses.is_dataclass(found)
    if not fits:
        expected = "an nn.Module subclass" if kind == "model_class" else "a dataclass"
        raise ValueError(f"the checkpoint's {kind} {path!r} is not {expected}; refusing to build it")
    return found


def _differences(stored: dict, current: dict, defaults: dict | None = None) -> list[str]:
    # A field the checkpoint lacks was added to the config after it was saved: it matches
    # when the model keeps that field's default (which is what the checkpoint computed).
    names = sorted(set(stored) | set(current))
    defaults = defaults or {}
    return [
        f"{name}: checkpoint {stored.get(name, '<absent>')!r}, model {current.get(name, '<absent>')!r}"
        for name in names
        if stored.get(name, "<absent>") != current.get(name, "<absent>")
        and not (name not in stored and name in defaults and defaults[name] == current.get(name))
    ]


def _field_defaults(config) -> dict:
    """A config's field defaults, in :func:`config_to_dict`'s JSON form."""
    defaults = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = json.loads(json.dumps(f.default))
    return defaults


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
    config = _model_config(model)
    differences = _differences(checkpoint.config, config_to_dict(config), _field_defaults(config))
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
    model_class = _import_class(checkpoint.model_class, "model_class")
    config = config_from_dict(_import_class(checkpoint.config_class, "config_class"), checkpoint.config)
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
    verify_shipped(path)
    return load_model(path, device=device)


def _manifest_entry(path: Path) -> dict | None:
    for entry in read_manifest(path.parent)["checkpoints"]:
        if entry.get("file") == path.name:
            return entry
    return None


def verify_shipped(path: str | os.PathLike) -> Path:
    """Check a file in a checkpoint folder against the SHA-256 its ``manifest.json``
    records; a file with no recorded hash passes. Returns the path."""
    path = Path(path)
    entry = _manifest_entry(path)
    expected = entry.get("sha256") if entry else None
    if expected is not None:
        actual = file_sha256(path)
        if actual != expected:
            raise ValueError(
                f"shipped checkpoint {path} is damaged: SHA-256 {actual}, manifest.json expects {expected}; "
                f"get a good copy with `git checkout -- {path}` (or download the repository again)"
            )
    return path


def seal(name: str, directory: str | os.PathLike | None = None) -> dict:
    """Record a shipped checkpoint's integrity: give ``directory/NAME.safetensors`` a
    content hash in its header if it has none (same tensors and JSON, rewritten
    atomically), then write its file SHA-256 and size into its ``manifest.json`` entry.
    Returns the entry. The command line: ``python -m vdmcourse seal NAME``."""
    directory = Path(directory or CHECKPOINT_DIR)
    path = directory / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"seal: no checkpoint {path}")
    manifest_path = directory / "manifest.json"
    manifest = read_manifest(directory)
    entry = _manifest_entry(path)
    if entry is None:
        raise ValueError(f"seal: {manifest_path} has no entry with file {path.name!r}; add the entry (command, steps, ...) first")
    data = path.read_bytes()
    document, text, stored_hash = _read_header(data, path)
    if stored_hash is None:
        tensors = load_safetensors_bytes(data)
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata={_HEADER_KEY: text, _HASH_KEY: content_hash(text, tensors)})
    load_checkpoint(path)  # checks the content hash
    for stored in manifest["checkpoints"]:
        if stored.get("file") == path.name:
            stored["sha256"] = file_sha256(path)
            stored["bytes"] = path.stat().st_size
            entry = stored
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return entry
