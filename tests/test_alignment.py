"""The mini-CLIP and its text-video alignment score (vdmcourse.metrics.alignment)."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from vdmcourse.course import CHECKPOINT_DIR
from vdmcourse.data import generate_clips
from vdmcourse.data.captions import CaptionTokenizer, caption, clip_facts
from vdmcourse.metrics.alignment import (
    MiniCLIP,
    MiniCLIPConfig,
    load_miniclip,
    miniclip_batch,
    miniclip_loss,
    retrieval_accuracy,
    text_video_alignment,
)
from vdmcourse.metrics.features import Evaluator, EvaluatorConfig
from vdmcourse.nn.text import TextEncoderConfig, clip_loss

TINY = MiniCLIPConfig(hidden=32, embed_dim=16, text=TextEncoderConfig(dim=16, depth=1, heads=2))
SHIPPED = (CHECKPOINT_DIR / "miniclip-cpu.safetensors").is_file()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="miniclip-cpu is not shipped")


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return MiniCLIP(TINY)


def held_out(n, seed=3):
    data = MiniCLIPConfig().clips("test")
    clips = generate_clips(n, data, generator=torch.Generator().manual_seed(seed))
    return clips, clip_facts(clips.labels, clips.positions, clips.velocities, data.free_range)


def test_the_loss_is_the_symmetric_infonce_at_the_learnt_temperature():
    model = tiny_model()
    batch = miniclip_batch(torch.Generator().manual_seed(0), TINY, batch_size=6)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / 0.2))
        clip, text = model(batch["video"], batch["ids"], batch["ids_mask"])
        logits = clip @ text.T / 0.2  # both unit vectors already
        rows = -torch.log_softmax(logits, 1).diagonal().mean()
        cols = -torch.log_softmax(logits, 0).diagonal().mean()
        loss = miniclip_loss(model, batch)
    assert model.temperature.item() == pytest.approx(0.2)
    assert loss.item() == pytest.approx(((rows + cols) / 2).item(), rel=1e-5)
    # a one-sided loss (clips pick captions only) is a different number on this batch
    assert abs(loss.item() - rows.item()) > 1e-4
    # symmetric: the roles of clip and caption may be swapped
    assert clip_loss(clip, text, 0.2).item() == pytest.approx(clip_loss(text, clip, 0.2).item(), rel=1e-6)


def test_the_temperature_sharpens_and_is_clamped():
    v = F.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert clip_loss(v, v, 0.05) < clip_loss(v, v, 0.5) < clip_loss(v, v, 5.0)  # aligned pairs: colder is surer
    model = tiny_model()
    assert model.temperature.item() == pytest.approx(0.07)  # CLIP's start
    with torch.no_grad():
        model.logit_scale.fill_(20.0)
    assert model.temperature.item() == pytest.approx(0.01)  # at most 100x the cosine


def test_batches_are_seeded_ground_truth_pairs_with_some_short_captions():
    config = dataclasses.replace(TINY, short_share=0.5)
    batch = miniclip_batch(torch.Generator().manual_seed(1), config, batch_size=32)
    again = miniclip_batch(torch.Generator().manual_seed(1), config, batch_size=32)
    assert torch.equal(batch["video"], again["video"]) and batch["captions"] == again["captions"]
    short = [c for c in batch["captions"] if len(c.split()) == 2]
    assert 4 <= len(short) <= 28 and len(short) < len(batch["captions"])
    assert CaptionTokenizer().decode(batch["ids"], batch["ids_mask"]) == batch["captions"]
    # the caption of clip i names clip i's digit (pairs are not shuffled)
    generator = torch.Generator().manual_seed(1)
    clips = generate_clips(32, config.clips(), generator=generator)
    for c, label in zip(batch["captions"], clips.labels[:, 0].tolist()):
        assert c.split()[0:2] in (["a", str(label)], ["the", "digit"]) and str(label) in c.split()[:3]


def test_the_clip_encoder_starts_from_the_evaluator():
    torch.manual_seed(0)
    evaluator = Evaluator(EvaluatorConfig())
    model = MiniCLIP.from_image_model(evaluator, TINY)
    for key, value in evaluator.state_dict().items():
        if key.split(".")[0] in ("stages", "project", "classifier"):
            assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(TypeError, match="Evaluator"):
        MiniCLIP.from_image_model(torch.nn.Linear(2, 2), TINY)


def test_each_clips_score_depends_on_that_clip_and_its_caption_only():
    model = tiny_model().eval()
    clips, facts = held_out(6)
    captions = [caption(f) for f in facts]
    together = text_video_alignment(clips.video, captions, model)
    alone = torch.cat([text_video_alignment(clips.video[i : i + 1], captions[i : i + 1], model) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    assert together.shape == (6,) and (together.abs() <= 1 + 1e-6).all()
    with pytest.raises(ValueError, match="one caption per clip"):
        text_video_alignment(clips.video, captions[:5], model)
    with pytest.raises(ValueError, match="zebra"):
        text_video_alignment(clips.video[:1], ["a zebra"], model)
    with pytest.raises(ValueError, match="shape"):
        model.encode_video(clips.video[:, :5])


@needs_shipped
def test_matched_pairs_score_above_shuffled_and_wrong_captions_on_real_clips():
    model = load_miniclip()
    clips, facts = held_out(64)
    own = text_video_alignment(clips.video, [caption(f) for f in facts], model)
    shuffled = text_video_alignment(clips.video, [caption(f) for f in facts[1:] + facts[:1]], model)
    wrong_digit = [dataclasses.replace(f, digits=((f.digits[0] + 1) % 10,)) for f in facts]
    reversed_too = [dataclasses.replace(f, directions=((f.directions[0] + 4) % 8,)) for f in wrong_digit]
    digit = text_video_alignment(clips.video, [caption(f) for f in wrong_digit], model)
    both = text_video_alignment(clips.video, [caption(f) for f in reversed_too], model)
    assert own.mean() > shuffled.mean() + 0.2
    assert (own > shuffled).float().mean() > 0.8
    assert own.mean() > digit.mean() > both.mean()  # a ladder of wrong captions scores monotonically worse


@needs_shipped
def test_held_out_retrieval_is_far_above_chance_and_a_planted_pairing_bug_is_not():
    model = load_miniclip()
    scores = retrieval_accuracy(model, 128, pool=32, seed=5)
    assert scores["clip_to_caption"] > 5 * scores["chance_retrieval"]
    assert scores["digit"] > 0.5  # chance 0.1
    # the planted bug: encode the captions one clip off; matched scores fall to the shuffled level
    clips, facts = held_out(32, seed=6)
    captions = [caption(f) for f in facts]
    right = text_video_alignment(clips.video, captions, model)
    off_by_one = text_video_alignment(clips.video, captions[1:] + captions[:1], model)
    assert right.mean() - off_by_one.mean() > 0.2
