import pytest
import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips, simulate_trajectories
from vdmcourse.data.captions import (
    DIRECTIONS,
    VOCABULARY,
    CaptionTokenizer,
    ClipFacts,
    caption,
    captions_for,
    clip_facts,
    direction_index,
    speed_class,
)

CPU = MovingMNISTConfig.cpu(speed=(1.0, 3.0))


def one_track(start, velocity, frames=10, free_range=16.0):
    positions, velocities = simulate_trajectories(torch.tensor([[start]]), torch.tensor([[velocity]]), frames, free_range)
    return positions, velocities  # (1, T, 1, 2) each


def test_directions_follow_image_rows_growing_downwards():
    steps = torch.tensor([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, -1.0], [0.0, -1.0], [-1.0, -1.0], [-1.0, 0.0], [-1.0, 1.0]])
    assert direction_index(steps).tolist() == list(range(8))
    assert DIRECTIONS[direction_index(torch.tensor([2.0, 0.1])).item()] == "down"  # row + is down, not up
    assert DIRECTIONS[direction_index(torch.tensor([-2.0, -1.9])).item()] == "up and to the left"


def test_speed_classes():
    assert [speed_class(s) for s in (1.0, 1.7, 2.0, 2.4, 3.0)] == ["slow", "medium", "medium", "fast", "fast"]


def test_caption_names_the_bounce_wall_and_frame():
    positions, velocities = one_track([8.0, 8.0], [2.0, 0.0])  # straight down: 8, 10, 12, 14, 16 = the floor at frame 4
    facts = clip_facts(torch.tensor([[3]]), positions, velocities, 16.0)[0]
    assert facts.bounces[0] == (0, "bottom", 4)
    assert caption(facts) == "a 3 moves steadily down and bounces off the bottom wall at frame 4"
    positions, velocities = one_track([8.0, 8.0], [-2.0, 0.0])  # the same, upwards: the top wall at frame 4
    assert caption(clip_facts(torch.tensor([[3]]), positions, velocities, 16.0)[0]).endswith("up and bounces off the top wall at frame 4")
    assert caption(facts, "short") == "a 3"


def test_captions_agree_with_ground_truth_after_bounces():
    clips = generate_clips(200, CPU, generator=torch.Generator().manual_seed(0))
    facts = clip_facts(clips.labels, clips.positions, clips.velocities, CPU.free_range)
    bounced = 0
    for i, fact in enumerate(facts):
        v = clips.velocities[i, :, 0]  # (T, 2)
        # Deterministic bounces flip exactly one velocity component per wall hit.
        flips = {(axis, t) for t in range(1, v.shape[0]) for axis in (0, 1) if v[t, axis] * v[t - 1, axis] < 0}
        walls = {(0 if wall in ("top", "bottom") else 1, frame) for _, wall, frame in fact.bounces}
        assert walls == flips
        for _, wall, frame in fact.bounces:
            row, col = clips.positions[i, frame, 0].tolist()
            on_wall = {"top": row == 0, "bottom": row == CPU.free_range, "left": col == 0, "right": col == CPU.free_range}
            assert on_wall[wall], (i, wall, frame)
            # After the bounce the digit moves away from that wall.
            away = {"top": v[frame, 0] > 0, "bottom": v[frame, 0] < 0, "left": v[frame, 1] > 0, "right": v[frame, 1] < 0}
            assert away[wall]
        bounced += bool(fact.bounces)
        assert fact.digits == (clips.labels[i, 0].item(),)
        assert DIRECTIONS[fact.directions[0]] in caption(fact)
    assert bounced > 100


def test_two_digit_captions_say_where_each_starts():
    positions = torch.tensor([[[[2.0, 5.0], [20.0, 6.0]]]]).expand(1, 3, 2, 2)
    velocities = torch.zeros(1, 3, 2, 2) + 0.5
    fact = clip_facts(torch.tensor([[4, 7]]), positions, velocities, 36.0)[0]
    assert fact.relation == "above"
    text = caption(fact)
    assert text.startswith("a 4 moves slowly down and to the right then a 7 moves") and text.endswith("the 4 starts above the 7")


def test_paraphrases_are_seeded_and_keep_the_facts():
    clips = generate_clips(20, CPU, generator=torch.Generator().manual_seed(1))
    first = captions_for(clips, CPU.free_range, generator=torch.Generator().manual_seed(5))
    again = captions_for(clips, CPU.free_range, generator=torch.Generator().manual_seed(5))
    other = captions_for(clips, CPU.free_range, generator=torch.Generator().manual_seed(6))
    assert first == again and first != other
    for text, fact in zip(first, clip_facts(clips.labels, clips.positions, clips.velocities, CPU.free_range)):
        words = text.split()
        assert str(fact.digits[0]) in words[:3]
        for _, wall, frame in fact.bounces:
            assert f"the {wall} wall at frame {frame}" in text


def test_tokenizer_round_trip_and_padding_mask():
    tokenizer = CaptionTokenizer()
    clips = generate_clips(16, CPU, generator=torch.Generator().manual_seed(2))
    texts = captions_for(clips, CPU.free_range, generator=torch.Generator().manual_seed(0)) + ["a 3", ""]
    ids, mask = tokenizer(texts)
    assert ids.shape == mask.shape == (18, tokenizer.max_length) and mask.dtype == torch.bool
    assert tokenizer.decode(ids, mask) == texts
    assert mask.sum(1).tolist() == [len(t.split()) + 1 for t in texts]  # <start> + the words
    assert (ids[~mask] == tokenizer.pad_id).all() and (ids[:, 0] == tokenizer.start_id).all()
    assert mask[-1].tolist() == [True] + [False] * (tokenizer.max_length - 1)  # the null caption


def test_tokenizer_refuses_unknown_words_naming_them_and_the_vocabulary():
    tokenizer = CaptionTokenizer()
    with pytest.raises(ValueError, match="'zooms'") as error:
        tokenizer(["a 3 zooms left"])
    assert "bounces" in str(error.value) and "quickly" in str(error.value)
    with pytest.raises(ValueError, match="'<pad>'"):
        tokenizer(["a <pad>"])
    with pytest.raises(ValueError, match="at most max_length - 1 = 3"):
        CaptionTokenizer(max_length=4)(["a 3 moves left"])
    assert len(VOCABULARY) == len(set(VOCABULARY))


def test_facts_render_every_direction_and_speed():
    tokenizer = CaptionTokenizer()
    for d in range(8):
        for s in (1.0, 2.0, 3.0):
            fact = ClipFacts(digits=(5,), directions=(d,), speeds=(s,), bounces=((0, "left", 3),))
            for seed in range(4):
                tokenizer(caption(fact, generator=torch.Generator().manual_seed(seed)))
