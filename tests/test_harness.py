import pytest
import torch

from vdmcourse.exercises import (
    NOT_ATTEMPTED,
    PASSED,
    WRONG,
    Wrong,
    expect_close,
    expect_mistake,
    expect_pass,
    expect_shape,
    self_check,
)


@self_check("double it", reference="vdmcourse.example.double")
def check_double(double):
    x = torch.arange(4.0)
    out = double(x)
    expect_shape(out, (4,), "double(x)")
    if torch.equal(out, x + 2):
        raise Wrong("double(x) added 2 instead of multiplying by 2.", mistake="added instead of multiplied",
                    hint="Twice x is x * 2.")
    expect_close(out, 2 * x, "double(x)")
    return "double(x) is 2x for every element."


def _stub(x):
    raise NotImplementedError


def test_right_answer_passes_with_its_message():
    result = expect_pass(check_double, lambda x: 2 * x)
    assert result.passed and "2x" in result.message
    assert "passed" in str(result) and "passed" in result._repr_html_()


def test_stub_and_none_are_not_attempted_and_point_to_the_reference():
    for answer in (_stub, None):
        result = check_double(answer)
        assert result.status == NOT_ATTEMPTED and not result.passed
        assert "vdmcourse.example.double" in result.message


def test_known_mistake_is_named_with_hint():
    result = expect_mistake(check_double, lambda x: x + 2, "added instead of multiplied")
    assert "Likely mistake: added instead of multiplied" in str(result)
    assert "Hint: Twice x" in str(result)
    assert "Likely mistake" in result._repr_html_()


def test_unrecognised_wrong_answer_fails_without_a_named_mistake():
    result = expect_mistake(check_double, lambda x: 3 * x, None)
    assert "differs from the expected values" in result.message


def test_wrong_shape_and_type_are_reported():
    assert "shape (4,)" in check_double(lambda x: x[:2]).message
    assert "torch.Tensor" in check_double(lambda x: x.tolist()).message


def test_a_crash_in_learner_code_is_reported_not_raised():
    result = check_double(lambda x: x @ torch.ones(3))
    assert result.status == WRONG and "RuntimeError" in result.message


def test_html_escapes_learner_text():
    @self_check("escape")
    def check(answer):
        raise Wrong(answer)

    assert "<script>" not in check("<script>")._repr_html_()


def test_test_helpers_fail_loudly_on_the_wrong_outcome():
    with pytest.raises(AssertionError, match="expected a pass"):
        expect_pass(check_double, lambda x: x + 2)
    with pytest.raises(AssertionError, match="expected a failure"):
        expect_mistake(check_double, lambda x: 2 * x, None)
    with pytest.raises(AssertionError, match="expected the mistake"):
        expect_mistake(check_double, lambda x: 3 * x, "added instead of multiplied")
    assert PASSED != WRONG != NOT_ATTEMPTED


def test_a_second_failed_attempt_shows_the_stronger_hint_and_a_pass_resets_it():
    @self_check("twice", reference="vdmcourse.example.twice")
    def check(answer):
        if answer != 2:
            raise Wrong("not two", hint="first hint", more="it is 1 + 1")
        return "two"

    first = check(3)
    assert first.more is None and "Second hint" not in str(first)
    second = check(4)
    assert second.more == "it is 1 + 1" and "Second hint: it is 1 + 1" in str(second)
    assert "Second hint" in second._repr_html_()
    assert check(2).passed
    assert check(5).more is None  # a pass starts the count again


def test_without_a_stronger_hint_the_second_attempt_points_to_the_reference():
    @self_check("crashy", reference="vdmcourse.example.crashy (its core)")
    def check(answer):
        return answer()

    def crash():
        raise RuntimeError("boom")

    assert check(crash).more is None
    assert "vdmcourse.example.crashy??" in check(crash).more
