"""Issue 18: a second failed attempt at any self-check shows that check's own stronger
hint -- the likely mistake and what to look at -- never the generic "read the reference"."""

import importlib
import pkgutil

import pytest

import vdmcourse.exercises

from vdmcourse.exercises import harness
from vdmcourse.exercises.harness import WRONG
from vdmcourse.exercises.planted import planted_answers

# Every lesson module in the package, so that a lesson added later without hints fails here.
LESSONS = tuple(sorted(info.name[len("lesson"):] for info in pkgutil.iter_modules(vdmcourse.exercises.__path__)
                       if info.name.startswith("lesson")))
CHECKS = [
    getattr(module, name)
    for module in (importlib.import_module(f"vdmcourse.exercises.lesson{lesson}") for lesson in LESSONS)
    for name in sorted(vars(module))
    if name.startswith("check_")
]
GENERIC = "Read the reference"


@pytest.fixture(autouse=True)
def fresh_attempts():
    harness._FAILED_ATTEMPTS.clear()
    yield
    harness._FAILED_ATTEMPTS.clear()


def test_every_lesson_is_covered():
    assert {f"{n:02d}" for n in range(14)} <= set(LESSONS), LESSONS
    for lesson in ("09", "10", "13"):
        assert any(check.__module__.endswith(f"lesson{lesson}") for check in CHECKS), lesson


def test_every_check_has_its_own_stronger_hint():
    assert len(CHECKS) >= 52
    hints = [check.more for check in CHECKS]
    assert all(hints), [check.__qualname__ for check in CHECKS if not check.more]
    assert len(set(hints)) == len(hints), "two checks share a second hint: each must be specific to its check"
    for check in CHECKS:
        assert "likely" in check.more.lower(), f"{check.__module__}.{check.__name__}: name the likely mistake"
        assert any(mark in check.more for mark in ("(", "=", "[")), f"{check.__name__}: say what to look at, in code"


def _crash(*args, **kwargs):
    raise RuntimeError("size mismatch")


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: f"{c.__module__.rsplit('.', 1)[-1]}.{c.__name__}")
def test_second_crash_shows_the_checks_own_hint(check):
    first, second = check(_crash), check(_crash)
    assert first.status == second.status == WRONG
    assert first.more is None
    assert second.more == check.more
    assert second.more != second.hint and not second.more.startswith(GENERIC)
    assert f"Second hint: {check.more}" in str(second)


def _planted():
    for lesson in ("00", "01", "02", "03", "04", "05", "08", "09", "10", "11", "13"):
        yield from importlib.import_module(f"test_lesson{lesson}_exercises").PLANTED


@pytest.mark.parametrize("check, reference", list(_planted()), ids=lambda c: getattr(c, "__name__", "ref"))
def test_second_wrong_answer_shows_the_checks_own_hint(check, reference):
    zeros = planted_answers(reference)["zeros"]
    first, second = check(zeros), check(zeros)
    assert first.status == second.status == WRONG
    assert first.more is None
    assert second.more and not second.more.startswith(GENERIC)
    assert second.more != second.hint
    assert second.more == check.more
