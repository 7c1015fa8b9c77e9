import dataclasses
import math

import pytest
import torch

from vdmcourse.data import MovingMNISTConfig, generate_clips
from vdmcourse.data.captions import CaptionTokenizer, ClipFacts, caption, captions_for
from vdmcourse.nn.attention import naive_attention
from vdmcourse.nn.text import (
    CrossAttention,
    TextEncoder,
    TextEncoderConfig,
    TextVideoConfig,
    TextVideoUNet,
    alignment_score,
    clip_loss,
    motion_heatmap,
)
from vdmcourse.nn.unet3d import UNet3D, UNet3DConfig
from vdmcourse.pretrained import load_pretrained
from vdmcourse.text_conditioning import DROPOUT, caption_batch, drop_conditions, null_caption, text_video_loss

TINY_UNET = UNet3DConfig(
    image_size=16, base_channels=8, channel_mults=(1, 2), blocks_per_level=1, heads=2, groups=4, frames=4,
    temporal_attention_levels=(1,), context_dim=16, cross_attention_levels=(1,), pooled_context=True,
)
TINY = TextVideoConfig(unet=TINY_UNET, text=TextEncoderConfig(dim=16, depth=1, heads=2, max_length=48))


def randomise(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return model


def test_cross_attention_shapes_and_queries_from_the_video():
    layer = randomise(CrossAttention(dim=8, context_dim=6, heads=2))
    x, context = torch.randn(3, 20, 8), torch.randn(3, 5, 6)
    out = layer(x, context)
    assert out.shape == (3, 20, 8)
    # From scratch: queries from x, keys and values from the text.
    q = layer.to_q(x).view(3, 20, 2, 4).transpose(1, 2)
    k, v = (part.view(3, 5, 2, 4).transpose(1, 2) for part in layer.to_kv(context).chunk(2, -1))
    expected = layer.to_out(naive_attention(q, k, v).transpose(1, 2).reshape(3, 20, 8))
    torch.testing.assert_close(out, expected)


def test_a_padded_token_changes_nothing():
    layer = randomise(CrossAttention(dim=8, context_dim=6, heads=2))
    x, context = torch.randn(2, 10, 8), torch.randn(2, 5, 6)
    mask = torch.tensor([[True, True, True, False, False], [True, False, False, False, False]])
    changed = context.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 6) * 100
    torch.testing.assert_close(layer(x, context, mask), layer(x, changed, mask))
    assert not torch.allclose(layer(x, context), layer(x, changed))  # without the mask it would
    # ... and a masked caption equals the same caption cut short
    torch.testing.assert_close(layer(x[:1], context[:1], mask[:1]), layer(x[:1], context[:1, :3]))


def test_text_encoder_ignores_padding_and_refuses_an_empty_mask():
    encoder = randomise(TextEncoder(TextEncoderConfig(dim=16, depth=2, heads=2)))
    ids, mask = CaptionTokenizer()(["a 3 moves slowly down", "a 7"])
    tokens, pooled = encoder(ids, mask)
    assert tokens.shape == (2, 48, 16) and pooled.shape == (2, 16)
    assert (tokens[~mask] == 0).all()
    other = ids.clone()
    other[~mask] = 5  # garbage where the mask says padding
    torch.testing.assert_close(encoder(other, mask)[1], pooled)
    with pytest.raises(ValueError, match="all False"):
        encoder(ids, torch.zeros_like(mask))


def test_clip_loss_matches_a_hand_computed_value():
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # cosines: [[1, 1/sqrt2], [0, 1/sqrt2]]; temperature 1.
    c = 1 / math.sqrt(2)
    row0 = -math.log(math.e**1 / (math.e**1 + math.e**c))
    row1 = -math.log(math.e**c / (math.e**0 + math.e**c))
    col0 = -math.log(math.e**1 / (math.e**1 + math.e**0))
    col1 = -math.log(math.e**c / (math.e**c + math.e**c))
    expected = ((row0 + row1) / 2 + (col0 + col1) / 2) / 2
    assert clip_loss(video, text, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    assert clip_loss(video, video, temperature=0.01).item() < 1e-3  # perfectly aligned pairs
    torch.testing.assert_close(alignment_score(video, text), torch.tensor([1.0, c]))


def test_shipped_video_checkpoints_load_and_compute_the_same():
    # Golden values computed with vdmcourse before text conditioning existed (main at ef26e70):
    # the new config fields default to "no text", and the model is bit for bit the old one.
    model = load_pretrained("video-cpu", device="cpu")
    assert not any(key.startswith(("cross.", "pooled_context")) for key in model.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 10, 1, 32, 32, generator=g)
    with torch.no_grad():
        y = model(x, torch.tensor([0.3, 0.8]), torch.tensor([3, 10]))
    assert y.double().sum().item() == pytest.approx(22493.20468250508, rel=1e-6)
    torch.testing.assert_close(y[0, 4, 0, 5, :4], torch.tensor([0.8570986986160278, -0.050878919661045074, 3.3474090099334717, -0.9183282256126404]))


def test_text_model_starts_as_the_video_model_it_extends():
    video = randomise(UNet3D(TextVideoUNet.plain_unet_config(TINY)))
    model = TextVideoUNet.from_image_model(video, TINY).eval()
    ids, mask = CaptionTokenizer()(["a 3 moves quickly up", "a 5"])
    x, t = torch.randn(2, 4, 1, 16, 16), torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, ids, mask, motion=torch.rand(2, 4, 2) * 15), video(x, t))


def test_text_and_motion_reach_the_output_once_trained():
    model = randomise(TextVideoUNet(TINY)).eval()
    tokenizer = CaptionTokenizer()
    x, t = torch.randn(1, 4, 1, 16, 16), torch.rand(1)
    with torch.no_grad():
        a = model(x, t, *tokenizer(["a 3 moves quickly up"]))
        b = model(x, t, *tokenizer(["a 3 moves quickly down"]))
        path = torch.tensor([[[4.0, 4.0], [5.0, 5.0], [6.0, 6.0], [7.0, 7.0]]])
        c = model(x, t, *tokenizer(["a 3 moves quickly up"]), motion=path)
        d = model(x, t, *tokenizer(["a 3 moves quickly up"]), motion=path, motion_mask=torch.tensor([False]))
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    torch.testing.assert_close(a, d)  # a masked-out motion path is no motion path


def test_unet3d_refuses_text_it_was_not_built_for():
    model = UNet3D(UNet3DConfig(image_size=16, base_channels=8, channel_mults=(1, 2), heads=2, groups=4, frames=4))
    with pytest.raises(ValueError, match="no cross-attention"):
        model(torch.randn(1, 4, 1, 16, 16), torch.rand(1), context=torch.randn(1, 3, 16))
    with pytest.raises(ValueError, match="need context_dim"):
        UNet3DConfig(cross_attention_levels=(1,))


def test_motion_heatmap_peaks_at_the_path():
    heat = motion_heatmap(torch.tensor([[[3.0, 12.0], [10.0, 1.0]]]), 16)
    assert heat.shape == (1, 2, 1, 16, 16)
    assert heat[0, 0, 0].argmax().item() == 3 * 16 + 12 and heat[0, 1, 0].argmax().item() == 10 * 16 + 1


def test_dropout_is_per_clip_and_per_modality():
    dropped = drop_conditions(4000, generator=torch.Generator().manual_seed(0))
    for name, p in DROPOUT.items():
        rate = dropped[name].float().mean().item()
        assert abs(rate - p) < 0.03, (name, rate)
        assert 0 < dropped[name].sum() < 4000  # some clips, not the whole batch
    # independent modalities: dropping the image says nothing about dropping the motion
    both = (dropped["image"] & dropped["motion"]).float().mean().item()
    assert abs(both - DROPOUT["image"] * DROPOUT["motion"]) < 0.03
    small = drop_conditions(8, {"caption": 0.5}, generator=torch.Generator().manual_seed(3))["caption"]
    assert 0 < small.sum() < 8


def test_null_caption_is_start_then_padding():
    ids, mask = null_caption(2, 5)
    assert ids.tolist() == [[1, 0, 0, 0, 0]] * 2 and mask.sum().item() == 2
    assert CaptionTokenizer()([""])[0][0, :5].tolist() == ids[0].tolist()


def test_caption_batches_and_loss_are_seeded():
    data = MovingMNISTConfig.cpu(canvas=16, digit_size=8, frames=4, speed=(1.0, 3.0))
    batch = caption_batch(torch.Generator().manual_seed(0), batch_size=3, data=data, captions="descriptive")
    again = caption_batch(torch.Generator().manual_seed(0), batch_size=3, data=data, captions="descriptive")
    assert batch["captions"] == again["captions"] and torch.equal(batch["ids"], again["ids"])
    assert batch["motion"].shape == (3, 4, 2) and batch["ids"].shape == batch["ids_mask"].shape
    model = randomise(TextVideoUNet(TINY))  # trained-like weights: the zero-init output would stop every gradient
    loss = text_video_loss(model, batch, torch.Generator().manual_seed(1))
    assert loss.item() == text_video_loss(model, again, torch.Generator().manual_seed(1)).item()
    loss.backward()
    assert model.unet.cross["mid"].attention.to_out.weight.grad.abs().sum() > 0


def test_training_sees_the_right_conditions(monkeypatch):
    data = MovingMNISTConfig.cpu(canvas=16, digit_size=8, frames=4, speed=(1.0, 3.0))
    batch = caption_batch(torch.Generator().manual_seed(0), batch_size=6, data=data, captions="short")
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, t, ids, ids_mask, motion=None, motion_mask=None):
            seen.update(t=t, ids=ids, motion_mask=motion_mask)
            return torch.zeros_like(x)

    generator = torch.Generator().manual_seed(2)
    dropped = drop_conditions(6, generator=torch.Generator().manual_seed(2))
    text_video_loss(Spy(), batch, generator)
    assert torch.equal(seen["motion_mask"], ~dropped["motion"])
    assert torch.equal(seen["t"][:, 0] == 0, ~dropped["image"])  # a kept first frame is clean
    assert torch.equal((seen["ids"] != 0).sum(1) == 1, dropped["caption"])  # a dropped caption is the null caption


def test_text_to_video_pipeline_is_seeded_and_keeps_the_first_frame():
    from vdmcourse.pipelines import TextToVideoPipeline

    model = randomise(TextVideoUNet(TINY), seed=1)
    for p in model.parameters():
        p.data.mul_(0.3)  # small weights keep the untrained sampler's values finite and readable
    pipe = TextToVideoPipeline(model, steps=2, sampler="euler")
    captions = ["a 3 moves quickly up", "a 5"]
    first = pipe(captions, generator=torch.Generator().manual_seed(0))
    again = pipe(captions, generator=torch.Generator().manual_seed(0))
    other = pipe(captions, generator=torch.Generator().manual_seed(1))
    assert first.frames.shape == (2, 4, 1, 16, 16) and torch.equal(first.frames, again.frames)
    assert not torch.equal(first.frames, other.frames)
    assert first.model_calls == 2 * 2  # null and text branches, 2 Euler steps
    image = torch.rand(2, 1, 16, 16)
    path = torch.rand(2, 4, 2) * 15
    controlled = pipe(captions, image=image, motion=path, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(controlled.frames[:, 0], image)
    assert controlled.model_calls == 3 * 2
    with pytest.raises(ValueError, match="motion must be"):
        pipe(captions, motion=torch.rand(2, 3, 2))
    with pytest.raises(ValueError, match="'zooms'"):
        pipe(["a 3 zooms"])


def test_the_dit_caption_branch_ignores_padded_text_tokens():
    from vdmcourse.nn.dit import VideoDiT, VideoDiTConfig

    dit = randomise(VideoDiT(VideoDiTConfig(patch=(2, 4, 4), dim=32, depth=1, heads=2, frames=4, image_size=8, context_dim=16)))
    encoder = randomise(TextEncoder(TextEncoderConfig(dim=16, depth=1, heads=2)), seed=1)
    ids, mask = CaptionTokenizer()(["a 3 moves quickly up", "a 5"])
    tokens, _ = encoder(ids, mask)
    garbage = tokens.clone()
    garbage[~mask] = torch.randn(int((~mask).sum()), 16) * 50
    x, t = torch.randn(2, 4, 1, 8, 8), torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(dit(x, t, context=tokens, context_mask=mask), dit(x, t, context=garbage, context_mask=mask))
        assert not torch.allclose(dit(x, t, context=tokens, context_mask=mask), dit(x, t))


def test_the_pooled_and_the_cross_attention_variants_take_the_text_by_one_path_each(monkeypatch):
    pooled = TextVideoConfig(unet=dataclasses.replace(TINY_UNET, cross_attention_levels=(), pooled_context=True), text=TINY.text, cross_attention=False)
    cross = TextVideoConfig(unet=dataclasses.replace(TINY_UNET, pooled_context=False), text=TINY.text)
    tokenizer = CaptionTokenizer()
    x, t = torch.randn(1, 4, 1, 16, 16), torch.rand(1)
    for config, path in ((pooled, "pooled_context"), (cross, "context")):
        model = randomise(TextVideoUNet(config)).eval()
        seen = {}
        forward = model.unet.forward

        def spy(*args, **kwargs):
            seen.update({k: v is not None for k, v in kwargs.items()})
            return forward(*args, **kwargs)

        monkeypatch.setattr(model.unet, "forward", spy)
        with torch.no_grad():
            a = model(x, t, *tokenizer(["a 3 moves quickly up"]))
            b = model(x, t, *tokenizer(["a 3 moves quickly down"]))
        assert seen["context"] == (path == "context") and seen["pooled_context"] == (path == "pooled_context")
        assert not torch.allclose(a, b)  # the text still reaches the output
    with pytest.raises(ValueError, match="pooled path only"):
        TextVideoConfig(unet=TINY_UNET, text=TINY.text, cross_attention=False)  # levels given: not pooled-only
    with pytest.raises(ValueError, match="pooled path only"):
        TextVideoConfig(unet=dataclasses.replace(TINY_UNET, cross_attention_levels=(), pooled_context=False), text=TINY.text, cross_attention=False)


def test_noisy_captions_replace_a_share_by_the_next_clips_caption():
    data = MovingMNISTConfig.cpu(speed=(1.0, 3.0))
    clean = caption_batch(torch.Generator().manual_seed(0), batch_size=64, data=data, captions="descriptive")
    zero = caption_batch(torch.Generator().manual_seed(0), batch_size=64, data=data, captions="descriptive", wrong_share=0.0)
    noisy = caption_batch(torch.Generator().manual_seed(0), batch_size=64, data=data, captions="descriptive", wrong_share=0.3)
    every = caption_batch(torch.Generator().manual_seed(0), batch_size=64, data=data, captions="descriptive", wrong_share=1.0)
    assert zero["captions"] == clean["captions"]  # nothing drawn: the clean recipe is unchanged
    assert torch.equal(noisy["video"], clean["video"]) and torch.equal(noisy["labels"], clean["labels"])
    assert every["captions"] == clean["captions"][1:] + clean["captions"][:1]
    changed = [a != b for a, b in zip(noisy["captions"], clean["captions"])]
    assert 0.15 < sum(changed) / 64 < 0.45
    assert all(n in (c, clean["captions"][(i + 1) % 64]) for i, (n, c) in enumerate(zip(noisy["captions"], clean["captions"])))
    assert CaptionTokenizer().decode(noisy["ids"], noisy["ids_mask"]) == noisy["captions"]
    with pytest.raises(ValueError, match="wrong_share"):
        caption_batch(torch.Generator().manual_seed(0), batch_size=4, data=data, wrong_share=1.5)


def test_a_paraphrase_too_long_for_the_tokenizer_keeps_the_canonical_wording():
    # Four bounces in ten frames paraphrased at length made a 49-word caption that the 48-token
    # tokenizer refused, mid-training. Such a clip must keep the canonical wording; others are untouched.
    data = MovingMNISTConfig.cpu(speed=(1.0, 3.0))
    generator = torch.Generator().manual_seed(3)
    clips = generate_clips(32, data, generator=generator)
    paraphrased = captions_for(clips, data.free_range, "descriptive", generator=generator)  # the draws caption_batch makes
    canonical = captions_for(clips, data.free_range, "descriptive")
    limit = max(len(c.split()) for c in canonical)  # every canonical caption fits, some paraphrases do not
    assert any(len(p.split()) > limit for p in paraphrased) and any(len(p.split()) <= limit for p in paraphrased)
    tokenizer = CaptionTokenizer(max_length=limit + 1)
    batch = caption_batch(torch.Generator().manual_seed(3), batch_size=32, data=data, captions="descriptive", tokenizer=tokenizer)
    assert torch.equal(batch["video"], clips.video)
    assert batch["captions"] == [c if len(p.split()) > limit else p for p, c in zip(paraphrased, canonical)]
    assert tokenizer.decode(batch["ids"], batch["ids_mask"]) == batch["captions"]
    # the longest paraphrase the shipped vocabulary allows: a digit with four bounces
    facts = ClipFacts(digits=(7,), directions=(1,), speeds=(2.8,), bounces=((0, "bottom", 1), (0, "right", 1), (0, "top", 9), (0, "left", 9)))
    assert len(caption(facts).split()) <= CaptionTokenizer().max_length - 1
