"""Prompt following per clip, its intervals, and the report `python -m vdmcourse evaluate`
prints for a text-to-video checkpoint (vdmcourse.metrics.prompts / alignment, lesson 09)."""

import math

import pytest
import torch

import vdmcourse.metrics.alignment as alignment
from vdmcourse.cli import main
from vdmcourse.course import CHECKPOINT_DIR
from vdmcourse.data.captions import caption
from vdmcourse.metrics.alignment import format_prompt_report, held_out_prompts, load_miniclip, prompt_report, wilson_interval
from vdmcourse.metrics.features import load_evaluator
from vdmcourse.metrics.prompts import measure_clips, prompt_hits, prompt_ladder, prompt_scores
from vdmcourse.pipelines import TextToVideoPipeline

SHIPPED = all((CHECKPOINT_DIR / f"{name}.safetensors").is_file() for name in ("evaluator-cpu", "miniclip-cpu", "text-video-cpu"))
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="needs evaluator-cpu, miniclip-cpu and text-video-cpu")


def test_wilson_interval_matches_hand_computed_values_and_refuses_bad_counts():
    # p = 0.5, n = 10, z = 1.96: centre 0.5, half-width 1.96/(1+0.38416) * sqrt(0.025 + 0.009604)
    low, high = wilson_interval(5, 10)
    half = 1.96 / (1 + 1.96**2 / 10) * math.sqrt(0.25 / 10 + 1.96**2 / 400)
    assert (low, high) == pytest.approx((0.5 - half, 0.5 + half))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(1.96**2 / (10 + 1.96**2))
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] < 1.0  # not of zero width at n hits
    assert wilson_interval(30, 100)[1] - wilson_interval(30, 100)[0] < wilson_interval(3, 10)[1] - wilson_interval(3, 10)[0]
    for hits, n in ((-1, 10), (11, 10), (0, 0)):
        with pytest.raises(ValueError, match="wilson_interval"):
            wilson_interval(hits, n)


@needs_shipped
def test_prompt_hits_are_per_clip_and_average_to_the_scores():
    evaluator = load_evaluator()
    prompts, videos = prompt_ladder(24, alignment.PROMPT_DATA, seed=5)
    for rung in ("real", "wrong digit"):
        measured = measure_clips(videos[rung], evaluator)
        hits = prompt_hits(measured, prompts)
        assert set(hits) == {"digit", "direction", "speed", "bounce_walls"} and all(len(h) == 24 for h in hits.values())
        scores = prompt_scores(measured, prompts)
        assert all(scores[k] == sum(h) / 24 for k, h in hits.items())
    # the real clips show their own digit, the wrong-digit rung does not; the planted off-by-one
    # pairing (each clip scored against the next clip's prompt) loses it too
    real = measure_clips(videos["real"], evaluator)
    assert sum(prompt_hits(real, prompts)["digit"]) >= 20
    assert sum(prompt_hits(measure_clips(videos["wrong digit"], evaluator), prompts)["digit"]) <= 6
    shifted = prompts[1:] + prompts[:1]
    assert sum(prompt_hits(real, shifted)["digit"]) < sum(prompt_hits(real, prompts)["digit"]) - 10
    with pytest.raises(ValueError, match="prompt_hits"):
        prompt_hits(real, prompts[:-1])


@needs_shipped
def test_prompt_report_counts_intervals_and_alignment_per_clip():
    evaluator, model = load_evaluator(), load_miniclip()
    clips, facts, captions = held_out_prompts(16, seed=2)
    assert captions == [caption(f) for f in facts] and held_out_prompts(16, seed=2)[2] == captions  # seeded
    report = prompt_report(clips.video, facts, evaluator, model)
    assert report["n"] == 16
    for key in ("digit", "direction", "speed", "bounce_walls"):
        r = report[key]
        assert r["hits"] == sum(report["hits"][key]) and r["share"] == r["hits"] / 16
        assert r["low"] <= r["share"] <= r["high"]
    assert torch.allclose(torch.tensor(report["alignment"]["per_clip"]), alignment.text_video_alignment(clips.video, captions, model))
    shuffled = prompt_report(clips.video, facts, evaluator, model, captions[1:] + captions[:1])
    assert shuffled["alignment"]["mean"] < report["alignment"]["mean"] - 0.2  # the captions given are the ones scored
    assert shuffled["digit"] == report["digit"]  # prompt following reads the facts, not the caption text
    table = format_prompt_report(report, report, title="real")
    assert f"({report['digit']['hits']}/16)" in table and "| alignment |" in table
    assert "no alignment score" in format_prompt_report(prompt_report(clips.video, facts, evaluator), title="x")


@needs_shipped
def test_evaluate_a_text_checkpoint_scores_its_samples_for_held_out_prompts(monkeypatch, capsys):
    seen = []

    def spy(video, prompts, evaluator, model=None, captions=None):
        seen.append((video.clone(), list(prompts), list(captions)))
        return real_report(video, prompts, evaluator, model, captions)

    real_report = alignment.prompt_report
    monkeypatch.setattr(alignment, "prompt_report", spy)
    assert main(["evaluate", "--checkpoint", "text-video-cpu", "--num", "2", "--seed", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| text-video-cpu | real clips |" in out and "(2 held-out" not in out and "/2)" in out and "| alignment |" in out
    clips, facts, captions = held_out_prompts(2, seed=4)
    (samples, prompts, scored), (real, real_prompts, _) = seen
    assert prompts == facts == real_prompts and scored == captions
    assert torch.equal(real, clips.video)  # the ceiling column scores the prompts' own clips
    pipe = TextToVideoPipeline.from_pretrained("text-video-cpu", device="cpu")
    assert torch.equal(samples, pipe(captions, generator=torch.Generator().manual_seed(4)).frames)  # the model's samples, seeded
    assert main(["evaluate", "--checkpoint", "text-video-cpu", "--digits", "2"]) == 2
    assert "one-digit" in capsys.readouterr().err
