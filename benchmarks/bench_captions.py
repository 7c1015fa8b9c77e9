"""Lesson 09's measurements: the captioner, the prompt-following metrics, recaptioning, control.

    python benchmarks/bench_captions.py ladder       # the metrics on real clips and a ladder of wrong ones
    python benchmarks/bench_captions.py recaption    # short vs recaptioned captions, equal compute
    python benchmarks/bench_captions.py control      # caption +- first frame +- motion path

``ladder`` validates the prompt-following metrics (:mod:`vdmcourse.metrics.prompts`): real
test clips scored against their own ground-truth captions (the metrics' ceiling), then
clips made deliberately wrong (wrong digit, + reversed direction, + wrong speed), which
must score monotonically worse; uniform noise is the chance reference. It also re-measures
the shipped captioner's held-out accuracy per attribute.

``recaption`` samples the two text-to-video models trained at equal compute -- on short
captions (``text-video-short-cpu``) and on captions written by the captioner
(``text-video-cpu``) -- from the same held-out descriptive prompts (ground-truth captions
of test-digit clips, canonical wording), same seeds, caption only, and scores digit,
direction, speed class and bounce walls. With ``--styles short`` (or both, the default)
it also prompts both models with the *short* captions of the same clips ("a 3"): the
short model's own vocabulary, so the digit column compares the two models fairly
(a model prompted in words it never saw in training is not measured on what it knows).

``control`` samples ``text-video-cpu`` from the same prompts with and without the first
frame of the prompt's clip and its motion path (the ink centroid per frame), and scores
the trajectory error (px) against that path, frame 0's PSNR against the clip's, and
digit / direction accuracy.

``alignment`` measures the mini-CLIP (``miniclip-cpu``, :mod:`vdmcourse.metrics.alignment`):
held-out retrieval accuracy and attribute probes, then the text-video alignment score of
real clips with their own captions, with shuffled captions and with deliberately wrong
ones, and of the two text-to-video models' samples for the same descriptive prompts
(same seeds as ``recaption``, so the same clips).

``textpath`` compares how the text reaches the U-Net, at equal compute: ``text-pooled-cpu``
(pooled text vector through the timestep embedding only) against ``text-cross-cpu``
(cross-attention only), both trained from ``video-ctx-cpu`` on ground-truth descriptive
captions, text only, at the same steps, batch and seed (run folders ``runs/<name>`` and their
snapshots ``runs/<name>-snap<steps>``, or ``--folders``); with lesson 13's caption-quality arms
(``text-pooled-noisy-cpu`` / ``text-cross-noisy-cpu``: 30 % of the captions wrong). Sampled
from the same held-out prompts and noise, scored with the prompt-following metrics (counts,
Wilson intervals) and the mini-CLIP, and compared prompt by prompt (paired differences).

Results: ``benchmarks/results/captions.md`` / ``.json`` and ``captions_strips.png``.
Run with one torch thread (``OMP_NUM_THREADS=1``), at most one such job per core.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import time
from pathlib import Path

import torch

from vdmcourse.course import CHECKPOINT_DIR
from vdmcourse.data import MovingMNISTConfig
from vdmcourse.data.captions import caption
from vdmcourse.metrics.alignment import held_out_prompts as alignment_prompts
from vdmcourse.metrics.alignment import load_miniclip, prompt_report, retrieval_accuracy, text_video_alignment
from vdmcourse.metrics.captioner import captioner_accuracy
from vdmcourse.metrics.features import load_evaluator
from vdmcourse.metrics.prediction import psnr
from vdmcourse.metrics.prompts import LADDER, measure_clips, prompt_ladder, prompt_scores, trajectory_error
from vdmcourse.pipelines import TextToVideoPipeline
from vdmcourse.pretrained import load_pretrained
from vdmcourse.text_conditioning import digit_centres

RESULTS = Path(__file__).parent / "results"
DATA = MovingMNISTConfig.cpu(speed=(1.0, 3.0), split="test")


def held_out_prompts(n: int, seed: int):
    """Test-digit clips, their facts and canonical descriptive captions."""
    return alignment_prompts(n, seed=seed, data=DATA)


def ladder(args) -> dict:
    evaluator = load_evaluator()
    prompts, videos = prompt_ladder(args.prompts, DATA, seed=args.seed)
    rows = {name: prompt_scores(measure_clips(video, evaluator), prompts) for name, video in videos.items()}
    overall = [rows[name]["overall"] for name in LADDER]
    monotone = all(a > b for a, b in zip(overall, overall[1:]))
    captioner = captioner_accuracy(load_pretrained("captioner-cpu", device="cpu"), 1000, seed=1)
    return {"prompts": args.prompts, "seed": args.seed, "rows": rows, "monotone": monotone, "captioner": captioner}


def _generate(pipe, captions, *, seed, image=None, motion=None, batch=25):
    out = []
    for start in range(0, len(captions), batch):
        part = slice(start, start + batch)
        out.append(
            pipe(
                captions[part],
                image=None if image is None else image[part],
                motion=None if motion is None else motion[part],
                generator=torch.Generator().manual_seed(seed + start),
            ).frames
        )
    return torch.cat(out)


def _pipe(name: str, args) -> TextToVideoPipeline:
    return TextToVideoPipeline.from_pretrained(args.checkpoints / f"{name}.safetensors", device="cpu", sampler=args.sampler, steps=args.steps, text_scale=args.text_scale)


ARMS = ("text-video-short-cpu", "text-video-cpu")


STYLES = ("descriptive", "short")
_ROWS = {"descriptive": "rows", "short": "short_rows"}  # where each prompt style's rows are kept


def recaption(args) -> dict:
    """Both arms, or the ``--arms`` given, prompted in the ``--styles`` given (rows of an
    earlier run with the same prompts, seed and sampler are kept, so the arms and styles
    may be measured one at a time)."""
    evaluator = load_evaluator()
    clips, facts, captions = held_out_prompts(args.prompts, args.seed)
    short = [caption(f, "short") for f in facts]
    settings = {"prompts": args.prompts, "seed": args.seed, "sampler": [args.sampler, args.steps, args.text_scale]}
    earlier = _previous("recaption")
    same = earlier is not None and all(earlier.get(k) == v for k, v in settings.items())
    tables = {key: dict(earlier.get(key, {})) if same else {} for key in _ROWS.values()}
    for style in args.styles:
        rows = tables[_ROWS[style]]
        for name in args.arms:
            started = time.perf_counter()
            video = _generate(_pipe(name, args), captions if style == "descriptive" else short, seed=args.seed)
            rows[name] = prompt_scores(measure_clips(video, evaluator), facts) | {"seconds": time.perf_counter() - started}
            print(style, name, rows[name], flush=True)
        rows["real clips (metric ceiling)"] = prompt_scores(measure_clips(clips.video, evaluator), facts)
    rows = tables["rows"]
    if "descriptive" in args.styles and all(name in rows for name in ARMS):
        strips = {name: _generate(_pipe(name, args), captions[:4], seed=args.seed) for name in ARMS}
        save_strips(strips | {"real clips": clips.video[:4]}, captions[:4], RESULTS / "captions_strips.png")
    order = (*ARMS, "real clips (metric ceiling)")
    tables = {key: {name: table[name] for name in order if name in table} for key, table in tables.items()}
    return settings | tables | {"captions": captions[:4], "short_captions": short[:4]}


def _previous(command: str) -> dict | None:
    path = RESULTS / "captions.json"
    return json.loads(path.read_text()).get(command) if path.is_file() else None


def control(args) -> dict:
    evaluator = load_evaluator()
    clips, facts, captions = held_out_prompts(args.prompts, args.seed)
    pipe = _pipe("text-video-cpu", args)
    path = digit_centres(clips)  # (N, T, 2)
    first = clips.video[:, 0]
    rows = {}
    for name, image, motion in (
        ("caption", None, None),
        ("caption + motion", None, path),
        ("caption + first frame", first, None),
        ("caption + first frame + motion", first, path),
    ):
        started = time.perf_counter()
        video = _generate(pipe, captions, seed=args.seed, image=image, motion=motion)
        scores = prompt_scores(measure_clips(video, evaluator), facts)
        rows[name] = {
            "trajectory_error_px": trajectory_error(video, path).mean().item(),
            "frame0_psnr_db": psnr(video[:, :1], clips.video[:, :1]).mean().item(),
            "digit": scores["digit"],
            "direction": scores["direction"],
            "seconds": time.perf_counter() - started,
        }
        print(name, rows[name], flush=True)
    rows["real clips (ceiling)"] = {"trajectory_error_px": trajectory_error(clips.video, path).mean().item(), "frame0_psnr_db": 100.0,
                                    **{k: v for k, v in prompt_scores(measure_clips(clips.video, evaluator), facts).items() if k in ("digit", "direction")}}
    return {"prompts": args.prompts, "seed": args.seed, "sampler": [args.sampler, args.steps, args.text_scale], "rows": rows}


def _wrong(facts, how: str):
    """``facts`` made wrong: another digit, or also the opposite direction."""
    out = []
    for f in facts:
        f = dataclasses.replace(f, digits=((f.digits[0] + 1) % 10,))
        if how == "digit + direction":
            f = dataclasses.replace(f, directions=((f.directions[0] + 4) % 8,))
        out.append(f)
    return out


def alignment(args) -> dict:
    model = load_miniclip()
    started = time.perf_counter()
    retrieval = retrieval_accuracy(model, 1024, pool=64, seed=1)
    retrieval["seconds"] = time.perf_counter() - started
    print("retrieval", retrieval, flush=True)
    evaluator = load_evaluator()
    clips, facts, captions = held_out_prompts(args.prompts, args.seed)

    def row(video, texts, extra=None):
        score = text_video_alignment(video, texts, model)
        return {"alignment": score.mean().item(), "alignment_sem": (score.std() / len(score) ** 0.5).item()} | (extra or {})

    rows = {"real clips, own captions": row(clips.video, captions)}
    rows["real clips, shuffled captions"] = row(clips.video, captions[1:] + captions[:1])
    rows["real clips, wrong digit"] = row(clips.video, [caption(f) for f in _wrong(facts, "digit")])
    rows["real clips, wrong digit + direction"] = row(clips.video, [caption(f) for f in _wrong(facts, "digit + direction")])
    for name in ARMS:
        started = time.perf_counter()
        video = _generate(_pipe(name, args), captions, seed=args.seed)
        rows[f"{name} samples"] = row(video, captions, prompt_scores(measure_clips(video, evaluator), facts) | {"seconds": time.perf_counter() - started})
        print(name, rows[f"{name} samples"], flush=True)
    return {"prompts": args.prompts, "seed": args.seed, "sampler": [args.sampler, args.steps, args.text_scale], "retrieval": retrieval, "rows": rows}


TEXT_PATHS = ("text-pooled-cpu", "text-cross-cpu")
# lesson 13's caption-quality arms: each text path with 30 % of its training captions wrong
NOISY = {"text-pooled-cpu": "text-pooled-noisy-cpu", "text-cross-cpu": "text-cross-noisy-cpu"}
REAL = "real clips (metric ceiling)"
ATTRIBUTES = ("digit", "direction", "speed", "bounce_walls")


def _run_folders(runs: Path) -> list[Path]:
    """The text-path run folders under ``runs``: ``<preset>`` and its snapshots ``<preset>-snap<steps>``."""
    folders = []
    for name in (*TEXT_PATHS, *NOISY.values()):
        folders += [runs / name] + sorted(runs.glob(f"{name}-snap*"))
    return [f for f in folders if (f / "model.safetensors").is_file() and (f / "run.json").is_file()]


def row_name(preset: str, steps: int) -> str:
    return f"{preset}, {steps} steps"


def _text_row(report: dict) -> dict:
    """A prompt_report as a results row: shares flat (as the other tables), counts, intervals, per-clip hits."""
    row = {a: report[a]["share"] for a in ATTRIBUTES} | {"overall": report["overall"]}
    row["counts"] = {a: report[a]["hits"] for a in ATTRIBUTES}
    row["intervals"] = {a: [report[a]["low"], report[a]["high"]] for a in ATTRIBUTES}
    row["hits"] = {a: [int(h) for h in report["hits"][a]] for a in ATTRIBUTES}
    if "alignment" in report:
        a = report["alignment"]
        row |= {"alignment": a["mean"], "alignment_sem": a["sem"], "alignment_per_clip": a["per_clip"]}
    return row


def paired(a: dict, b: dict) -> dict:
    """b minus a on the same prompts and seeds: per attribute the mean per-prompt difference
    and a normal 95 % interval (mean ± 1.96 SE of the per-prompt differences)."""
    out = {}
    keys = [(k, a["hits"][k], b["hits"][k]) for k in ATTRIBUTES]
    if "alignment_per_clip" in a and "alignment_per_clip" in b:
        keys.append(("alignment", a["alignment_per_clip"], b["alignment_per_clip"]))
    for key, x, y in keys:
        d = torch.tensor(y, dtype=torch.float64) - torch.tensor(x, dtype=torch.float64)
        se = (d.std() / len(d) ** 0.5).item()
        out[key] = {"difference": d.mean().item(), "low": d.mean().item() - 1.96 * se, "high": d.mean().item() + 1.96 * se}
    return out


def comparisons(rows: dict) -> list[dict]:
    """The equal-compute pairs among ``rows``: pooled vs cross-attention, and noisy vs clean
    captions, each at every step count both were measured at."""
    out = []
    steps = sorted({r["steps"] for r in rows.values() if "steps" in r})
    for s in steps:
        pairs = [(TEXT_PATHS[0], TEXT_PATHS[1], "cross-attention minus pooled")]
        pairs += [(clean, noisy, f"30% wrong captions minus clean, {clean}") for clean, noisy in NOISY.items()]
        for a, b, question in pairs:
            ra, rb = rows.get(row_name(a, s)), rows.get(row_name(b, s))
            if ra is not None and rb is not None:
                out.append({"question": question, "a": row_name(a, s), "b": row_name(b, s), "steps": s, "prompts": len(ra["hits"]["digit"])}
                           | paired(ra, rb))
    return out


def textpath(args) -> dict:
    """Every text-path run folder found (or ``--folders``), sampled on the same held-out prompts and
    seeds; rows of an earlier run with the same prompts, seed and sampler are kept, so folders may
    be measured one at a time (as each training job finishes)."""
    evaluator = load_evaluator()
    model = load_miniclip() if (CHECKPOINT_DIR / "miniclip-cpu.safetensors").is_file() else None
    clips, facts, captions = held_out_prompts(args.prompts, args.seed)
    settings = {"prompts": args.prompts, "seed": args.seed, "sampler": [args.sampler, args.steps, args.text_scale]}
    earlier = _previous("textpath")
    same = earlier is not None and all(earlier.get(k) == v for k, v in settings.items())
    rows = {k: v for k, v in (earlier or {}).get("rows", {}).items() if same and "hits" in v}
    for folder in args.folders or _run_folders(args.runs):
        run = json.loads((folder / "run.json").read_text())
        name = row_name(run["preset"], run["steps"])
        pipe = TextToVideoPipeline.from_pretrained(folder / "model.safetensors", device="cpu", sampler=args.sampler, steps=args.steps, text_scale=args.text_scale)
        started = time.perf_counter()
        video = _generate(pipe, captions, seed=args.seed)
        rows[name] = _text_row(prompt_report(video, facts, evaluator, model, captions)) | {
            "preset": run["preset"],
            "steps": run["steps"],
            "folder": str(folder),
            "seconds": time.perf_counter() - started,
            "parameters": sum(p.numel() for p in pipe.model.parameters()),
            "train": {k: run.get(k) for k in ("steps", "train_time_s", "wall_time_s", "final_loss", "command") if k in run},
        }
        print(name, {k: v for k, v in rows[name].items() if k not in ("hits", "alignment_per_clip")}, flush=True)
    rows[REAL] = _text_row(prompt_report(clips.video, facts, evaluator, model, captions))
    order = sorted((k for k in rows if k != REAL), key=lambda k: (rows[k]["steps"], k)) + [REAL]
    rows = {k: rows[k] for k in order}
    return settings | {"rows": rows, "comparisons": comparisons(rows)}


def save_strips(strips: dict, captions: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(strips)
    clips, frames = len(captions), next(iter(strips.values())).shape[1]
    fig, axes = plt.subplots(len(names) * clips, 1, figsize=(frames * 0.8, len(names) * clips * 0.95))
    for c in range(clips):
        for r, name in enumerate(names):
            ax = axes[c * len(names) + r]
            row = torch.cat(list(strips[name][c, :, 0]), dim=1)  # (H, T*W)
            ax.imshow(row.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_ylabel(name.replace("text-video-", "").replace("-cpu", ""), rotation=0, ha="right", va="center", fontsize=7)
            if r == 0:
                ax.set_title(f'"{captions[c]}"', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(results: dict) -> None:
    lines = ["# Lesson 09: captions, recaptioning and multimodal control", ""]
    machine = results.get("machine", "")
    lines += [f"Measured with `python benchmarks/bench_captions.py ladder|recaption|control|alignment|textpath` on {machine}.", ""]
    if "ladder" in results:
        d = results["ladder"]
        lines += [f"## Prompt-following metrics on real clips and a ladder of wrong ones ({d['prompts']} test clips, seed {d['seed']})", ""]
        lines += ["| clips | digit | direction | speed class | bounce walls | overall |", "|---|---|---|---|---|---|"]
        for name, s in d["rows"].items():
            lines.append(f"| {name} | {s['digit']:.3f} | {s['direction']:.3f} | {s['speed']:.3f} | {s['bounce_walls']:.3f} | {s['overall']:.3f} |")
        lines += ["", f"Monotonically worse along the ladder (overall): **{d['monotone']}**. Noise is the chance reference, outside the ladder.", ""]
        c = d["captioner"]
        lines += ["## captioner-cpu, held-out accuracy (1,000 test-digit clips, seed 1)", "",
                  "| digit | direction | speed class | bounce walls | bounce frames | whole caption |", "|---|---|---|---|---|---|",
                  f"| {c['digit']:.3f} | {c['direction']:.3f} | {c['speed']:.3f} | {c['bounce_walls']:.3f} | {c['bounce_frames']:.3f} | {c['caption']:.3f} |", ""]
    if "recaption" in results:
        d = results["recaption"]
        sampler, steps, scale = d["sampler"]
        lines += [f"## Recaptioning: prompt following on {d['prompts']} held-out descriptive prompts (seed {d['seed']}; {sampler}, {steps} steps, text guidance {scale})", ""]
        lines += ["| trained on | digit | direction | speed class | bounce walls | overall |", "|---|---|---|---|---|---|"]
        for name, s in d["rows"].items():
            lines.append(f"| {name} | {s['digit']:.3f} | {s['direction']:.3f} | {s['speed']:.3f} | {s['bounce_walls']:.3f} | {s['overall']:.3f} |")
        lines += ["", "![strips](captions_strips.png)" if (RESULTS / "captions_strips.png").is_file() else "(strips: drawn once both arms are measured)", ""]
        short = d.get("short_rows", {})
        if short:
            lines += [f"### The same models prompted with the short captions of the same clips (\"{d['short_captions'][0]}\")", "",
                      "Short prompts ask only for the digit, so only the digit column means anything here. It is the short model's own "
                      "vocabulary: the fair test of what it knows.", "",
                      "| trained on | digit, short prompts | digit, descriptive prompts |", "|---|---|---|"]
            for name, s in short.items():
                other = d["rows"].get(name, {}).get("digit")
                lines.append(f"| {name} | {s['digit']:.3f} | {'-' if other is None else f'{other:.3f}'} |")
            lines.append("")
            if all(name in short and name in d["rows"] for name in ARMS):
                own_short, own_long = short[ARMS[0]]["digit"], d["rows"][ARMS[1]]["digit"]
                noise = results.get("ladder", {}).get("rows", {}).get("noise")
                chance = "" if noise is None else (f" (uniform-noise clips score {noise['direction']:.3f} / {noise['speed']:.3f} / "
                                                   f"{noise['bounce_walls']:.3f} in the ladder above: its chance reference)")
                lines += [f"Each model asked in its own words: the short-caption model draws the asked digit in {own_short:.3f} of its short "
                          f"prompts, the recaptioned model in {own_long:.3f} of its descriptive ones; direction, speed and bounce walls "
                          f"are in the first table{chance}.", ""]
    if "control" in results:
        d = results["control"]
        sampler, steps, scale = d["sampler"]
        lines += [f"## Multimodal control: text-video-cpu on {d['prompts']} held-out prompts (seed {d['seed']}; {sampler}, {steps} steps, text guidance {scale}, motion guidance 1)", ""]
        lines += ["| given | trajectory error (px) | frame-0 PSNR (dB) | digit | direction |", "|---|---|---|---|---|"]
        for name, s in d["rows"].items():
            lines.append(f"| {name} | {s['trajectory_error_px']:.2f} | {s['frame0_psnr_db']:.1f} | {s['digit']:.3f} | {s['direction']:.3f} |")
        lines.append("")
    if "alignment" in results:
        d = results["alignment"]
        r = d["retrieval"]
        lines += [f"## Text-video alignment: the mini-CLIP (miniclip-cpu)", "",
                  f"Held-out accuracy ({r['held_out_clips']} test-digit clips, canonical captions, seed 1). Retrieval: top-1 within pools "
                  f"of {r['pool']} clips (chance {r['chance_retrieval']:.3f}); probes: the true caption scored above every copy with that attribute changed.", "",
                  "| clip -> caption | caption -> clip | digit probe | direction probe | speed probe |", "|---|---|---|---|---|",
                  f"| {r['clip_to_caption']:.3f} | {r['caption_to_clip']:.3f} | {r['digit']:.3f} (chance 0.100) | {r['direction']:.3f} (chance 0.125) | {r['speed']:.3f} (chance 0.333) |", ""]
        sampler, steps, scale = d["sampler"]
        lines += [f"Alignment score (mean cosine of clip and caption embeddings, ± standard error) on {d['prompts']} held-out descriptive prompts "
                  f"(seed {d['seed']}; samples: {sampler}, {steps} steps, text guidance {scale}, caption only):", "",
                  "| clips, captions | alignment | digit | direction | speed class | bounce walls |", "|---|---|---|---|---|---|"]
        for name, s in d["rows"].items():
            rest = " | ".join(f"{s[k]:.3f}" if k in s else "" for k in ("digit", "direction", "speed", "bounce_walls"))
            lines.append(f"| {name} | {s['alignment']:.3f} ± {s['alignment_sem']:.3f} | {rest} |")
        lines.append("")
    if "textpath" in results:
        lines += _textpath_markdown(results["textpath"])
    (RESULTS / "captions.md").write_text("\n".join(lines))


def _textpath_markdown(d: dict) -> list[str]:
    sampler, steps, scale = d["sampler"]
    n = d["prompts"]
    lines = [f"## Pooled text vs cross-attention, equal compute ({n} held-out descriptive prompts, seed {d['seed']}; {sampler}, {steps} steps, text guidance {scale})", "",
             "All from video-ctx-cpu, same batch (8), seed (0) and data (ground-truth descriptive captions, text only); a run's "
             "intermediate row is its checkpoint at that step (constant learning rate after warm-up and exact resume: the same "
             "weights as a run stopped there). Cells: share (count of " f"{n}) [Wilson 95 % interval]; alignment: mini-CLIP cosine ± SE. "
             "train wall min: wall-clock training time on the shared machine (one thread), not a measure of compute.", "",
             "| model | steps | train wall min | digit | direction | speed class | bounce walls | overall | alignment |", "|---|---|---|---|---|---|---|---|---|"]

    def cell(s, k):
        if "counts" not in s:
            return f"{s[k]:.3f}"
        low, high = s["intervals"][k]
        return f"{s[k]:.3f} ({s['counts'][k]}) [{low:.2f}, {high:.2f}]"

    for name, s in d["rows"].items():
        train = s.get("train", {})
        wall = f"{train['train_time_s'] / 60:.1f}" if train.get("train_time_s") else ""
        align = f"{s['alignment']:.3f} ± {s['alignment_sem']:.3f}" if "alignment" in s else ""
        lines.append(f"| {s.get('preset', name)} | {s.get('steps', '')} | {wall} | " + " | ".join(cell(s, k) for k in ATTRIBUTES)
                     + f" | {s['overall']:.3f} | {align} |")
    if d.get("comparisons"):
        lines += ["", "Paired differences on the same prompts and seeds (b minus a; mean per-prompt difference [normal 95 % interval]):", "",
                  "| question | steps | digit | direction | speed class | bounce walls | alignment |", "|---|---|---|---|---|---|---|"]
        for c in d["comparisons"]:
            cells = " | ".join(f"{c[k]['difference']:+.3f} [{c[k]['low']:+.2f}, {c[k]['high']:+.2f}]" if k in c else ""
                               for k in (*ATTRIBUTES, "alignment"))
            lines.append(f"| {c['question']} | {c['steps']} | {cells} |")
    lines += ["", "Rows of `text-pooled-noisy-cpu` / `text-cross-noisy-cpu` are lesson 13's caption-quality arms (experiment 4): a text "
              "path's recipe with a share 0.3 of the training captions replaced by the next clip's caption in the batch, compared "
              "with the clean run of the same path at the same step count.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["ladder", "recaption", "control", "alignment", "textpath"])
    parser.add_argument("--prompts", type=int, default=100, help="held-out prompts (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", default="heun")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--text-scale", type=float, default=4.0)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="recaption: which models to sample (default both)")
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(STYLES), help="recaption: which prompts (default both)")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINT_DIR, help="folder holding the text-video checkpoints")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="textpath: folder holding the run folders runs/<preset>")
    parser.add_argument("--folders", type=Path, nargs="+", help="textpath: measure these run folders only (default: every text-path run under --runs)")
    args = parser.parse_args()
    started = time.perf_counter()
    entry = {"ladder": ladder, "recaption": recaption, "control": control, "alignment": alignment, "textpath": textpath}[args.command](args)
    entry["wall_s"] = time.perf_counter() - started
    entry["command"] = "python benchmarks/bench_captions.py " + " ".join(os.sys.argv[1:])
    path = RESULTS / "captions.json"
    with open(path, "a+") as lock:  # two jobs finishing together: read, merge and write one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text() or "{}")
        if args.command == "textpath":  # rows measured meanwhile by another job with the same settings
            earlier = results.get("textpath", {})
            if all(earlier.get(k) == entry[k] for k in ("prompts", "seed", "sampler")):
                rows = {k: v for k, v in earlier.get("rows", {}).items() if "hits" in v} | entry["rows"]
                order = sorted((k for k in rows if k != REAL), key=lambda k: (rows[k]["steps"], k)) + [REAL]
                entry["rows"] = {k: rows[k] for k in order}
                entry["comparisons"] = comparisons(entry["rows"])
        results[args.command] = entry
        results["machine"] = f"{os.cpu_count()}-core CPU, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"
        path.write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(results)
    print((RESULTS / "captions.md").read_text())


if __name__ == "__main__":
    main()
