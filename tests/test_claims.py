"""claim() checks a lesson's sentence against its numbers; yours_or_reference() picks the
learner's function only when its self-check passed."""

import json

import pytest
import torch

from vdmcourse.exercises import Wrong, self_check
from vdmcourse.exercises.claims import CLAIMS, claim, direction
from vdmcourse.exercises.reuse import yours_or_reference


def test_a_claim_that_holds_shows_a_tick(monkeypatch, capsys):
    monkeypatch.delenv("VDM_QUICK", raising=False)
    assert claim("two is more than one", 2 > 1) is None  # shown once, not again as a cell's value
    result = CLAIMS[-1]
    assert result.holds and result.outcome == "holds"
    assert "\u2714 two is more than one" in capsys.readouterr().out


def test_a_failed_claim_in_quick_mode_says_not_reproduced(monkeypatch, capsys):
    monkeypatch.setenv("VDM_QUICK", "1")
    claim("the loss falls", torch.tensor(0.3) < torch.tensor(0.2))
    result = CLAIMS[-1]
    assert not result.holds and result.outcome == "quick"
    assert "not reproduced at quick-mode budgets" in capsys.readouterr().out


def test_a_failed_claim_in_full_mode_is_marked_and_logged(monkeypatch, tmp_path, capsys):
    log = tmp_path / "claims.jsonl"
    monkeypatch.delenv("VDM_QUICK", raising=False)
    monkeypatch.setenv("VDM_CLAIMS_LOG", str(log))
    claim("(2+1)-D is faster", False)
    result = CLAIMS[-1]
    claim("it still runs", True)
    assert result.outcome == "fails" and "does NOT hold" in str(result)
    assert "\u2718" in result._repr_html_()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records == [{"text": "(2+1)-D is faster", "holds": False, "quick": False},
                       {"text": "it still runs", "holds": True, "quick": False}]
    assert "does NOT hold" in capsys.readouterr().out
    assert repr(result) == str(result)


def test_a_claim_needs_a_sentence():
    with pytest.raises(ValueError, match="non-empty sentence"):
        claim("  ", True)


def test_direction_reads_the_numbers():
    assert direction(6.19, 8.24) == "rises"
    assert direction(8.24, 6.19) == "falls"
    assert direction(1.0, 1.005, tolerance=0.01) == "stays the same"
    assert direction(1, 2, up="grows", down="shrinks") == "grows"


@self_check("double")
def check_double(fn):
    if fn(3) != 6:
        raise Wrong("not double")


def reference_double(x):
    return 2 * x


def test_yours_is_used_when_it_passed(capsys):
    def mine(x):
        return x + x

    assert yours_or_reference(check_double(mine), mine, reference_double) is mine
    assert "uses your `mine`" in capsys.readouterr().out


def test_the_reference_is_used_and_named_when_yours_failed_or_was_not_attempted(capsys):
    def wrong(x):
        return x + 2

    def stub(x):
        raise NotImplementedError

    assert yours_or_reference(check_double(wrong), wrong, reference_double) is reference_double
    out = capsys.readouterr().out
    assert "Your `wrong` has not passed its check (wrong)" in out and "reference_double" in out
    assert yours_or_reference(check_double(stub), stub, reference_double, what="double") is reference_double
    assert "not attempted" in capsys.readouterr().out


def test_yours_or_reference_wants_a_check_result():
    with pytest.raises(TypeError, match="CheckResult"):
        yours_or_reference(True, reference_double, reference_double)
