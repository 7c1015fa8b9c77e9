"""The machinery behind every self-check exercise.

A lesson's exercise cell holds a stub that raises ``NotImplementedError``; the
check cell below it calls ``vdmcourse.exercises.lessonNN.check_<name>(answer)``.
A check is an ordinary function decorated with :func:`self_check`: it exercises
the learner's answer and raises :class:`Wrong` when a property fails, naming the
mistake when it recognises a known one. The decorator turns that into one of
three outcomes, shown readably in a notebook (HTML) and as plain text:

* not attempted -- the stub still raises ``NotImplementedError`` (or the answer
  is ``None``): a short note, no error, and the lesson goes on with the reference;
* wrong -- which property failed, the named mistake if recognised, and a hint;
  from the second failed attempt at the same check on, a stronger hint too;
* passed.

Tests use :func:`expect_pass` (the reference must pass) and
:func:`expect_mistake` (a planted bug must fail, naming the mistake).
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = [
    "PASSED",
    "WRONG",
    "NOT_ATTEMPTED",
    "CheckResult",
    "Wrong",
    "self_check",
    "expect_shape",
    "expect_close",
    "expect_pass",
    "expect_mistake",
]

PASSED = "passed"
WRONG = "wrong"
NOT_ATTEMPTED = "not attempted"

_STYLE = {
    PASSED: ("#e6f4ea", "#1e7b34", "\u2714 passed"),
    WRONG: ("#fdecea", "#a1261b", "\u2718 not yet right"),
    NOT_ATTEMPTED: ("#f1f3f4", "#5f6368", "\u2026 not attempted yet"),
}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one self-check.

    ``mistake`` names a known mistake (e.g. ``"attention over the batch axis"``)
    when the check recognised one; ``hint`` says where to look.
    """

    check: str
    status: str
    message: str = ""
    mistake: str | None = None
    hint: str | None = None
    more: str | None = None  # the stronger hint, shown from the second failed attempt on

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def __str__(self) -> str:
        lines = [f"[{self.check}] {_STYLE[self.status][2]}"]
        if self.message:
            lines.append(f"  {self.message}")
        if self.mistake:
            lines.append(f"  Likely mistake: {self.mistake}.")
        if self.hint:
            lines.append(f"  Hint: {self.hint}")
        if self.more:
            lines.append(f"  Second hint: {self.more}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        background, colour, title = _STYLE[self.status]
        parts = [f"<b>{html.escape(self.check)}</b> &mdash; <b>{title}</b>"]
        if self.message:
            parts.append(html.escape(self.message))
        if self.mistake:
            parts.append(f"<b>Likely mistake:</b> {html.escape(self.mistake)}.")
        if self.hint:
            parts.append(f"<b>Hint:</b> {html.escape(self.hint)}")
        if self.more:
            parts.append(f"<b>Second hint:</b> {html.escape(self.more)}")
        body = "<br>".join(parts)
        return (
            f'<div style="background:{background};color:{colour};border-left:4px solid {colour};'
            f'padding:6px 10px;margin:4px 0;font-family:sans-serif">{body}</div>'
        )


class Wrong(Exception):
    """Raised inside a check when the learner's answer breaks a property.

    ``message`` says which property, in the learner's terms; ``mistake`` names
    the known mistake it points to, if any; ``hint`` says where to look; ``more``,
    a stronger hint (close to the answer), is shown only from the second failed
    attempt at the same check.
    """

    def __init__(self, message: str, *, mistake: str | None = None, hint: str | None = None, more: str | None = None):
        super().__init__(message)
        self.message = message
        self.mistake = mistake
        self.hint = hint
        self.more = more


# Failed attempts per check name in this session: a second failure shows the stronger hint.
_FAILED_ATTEMPTS: dict[str, int] = {}


def _second_hint(name: str, more: str | None, reference: str | None) -> str | None:
    """The stronger hint for a failed attempt: None on the first; from the second on,
    ``more`` or, without one, where to read the reference."""
    _FAILED_ATTEMPTS[name] = _FAILED_ATTEMPTS.get(name, 0) + 1
    if _FAILED_ATTEMPTS[name] < 2:
        return None
    if more:
        return more
    if reference:
        return f"Read the reference: `{reference.split(' (')[0]}??` in a cell shows its source."
    return None


def self_check(name: str, reference: str | None = None, more: str | None = None) -> Callable:
    """Decorate ``check(answer, ...)`` so that it returns a :class:`CheckResult`.

    ``reference`` names the package object the lesson falls back on when the
    exercise is not attempted. ``more`` is the check's own stronger hint -- the
    likely mistake and what to look at -- shown from the second failed attempt on
    when the failure carries no ``more`` of its own (and kept as ``check.more``).
    The check's own return value, if a string, is the message shown on a pass.
    """

    def decorate(check: Callable) -> Callable[..., CheckResult]:
        @functools.wraps(check)
        def run(answer, *args, **kwargs) -> CheckResult:
            fallback = f" The lesson goes on with the reference, `{reference}`." if reference else ""
            if answer is None:
                return CheckResult(name, NOT_ATTEMPTED, "No answer given yet." + fallback)
            try:
                note = check(answer, *args, **kwargs)
            except NotImplementedError:
                return CheckResult(name, NOT_ATTEMPTED, "Your function still raises NotImplementedError." + fallback)
            except Wrong as wrong:
                more = _second_hint(name, wrong.more or check_more, reference)
                return CheckResult(name, WRONG, wrong.message, wrong.mistake, wrong.hint, more)
            except Exception as error:  # the learner's code crashed: report it, don't raise
                return CheckResult(
                    name,
                    WRONG,
                    f"Your code raised {type(error).__name__}: {error}",
                    hint="Run your function on a small input in a cell of its own to see the full traceback.",
                    more=_second_hint(name, check_more, reference),
                )
            _FAILED_ATTEMPTS.pop(name, None)
            return CheckResult(name, PASSED, note if isinstance(note, str) else "")

        run.more = check_more
        return run

    check_more = more
    return decorate


def expect_shape(value, shape: tuple, what: str, *, mistake: str | None = None, hint: str | None = None) -> None:
    """Raise :class:`Wrong` unless ``value`` is a tensor of exactly ``shape``."""
    if isinstance(value, tuple) and hasattr(value, "values") and hasattr(value, "indices"):
        raise Wrong(
            f"{what} should be a torch.Tensor; got the (values, indices) pair that torch.{type(value).__name__} "
            "returns when given a dim.",
            mistake=mistake,
            hint=f"Take .values of it (x.{type(value).__name__}(dim).values), or use x.amax(dim) / x.amin(dim), "
                 "which return the tensor alone.",
        )
    if not isinstance(value, torch.Tensor):
        raise Wrong(f"{what} should be a torch.Tensor; got {type(value).__name__}.", mistake=mistake, hint=hint)
    if tuple(value.shape) != tuple(shape):
        raise Wrong(f"{what} should have shape {tuple(shape)}; got {tuple(value.shape)}.", mistake=mistake, hint=hint)


def expect_close(
    actual,
    expected: torch.Tensor,
    what: str,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    mistake: str | None = None,
    hint: str | None = None,
) -> None:
    """Raise :class:`Wrong` unless ``actual`` has ``expected``'s shape and values."""
    expect_shape(actual, tuple(expected.shape), what, hint=hint)
    actual = actual.detach().to(expected.dtype)
    if not torch.allclose(actual, expected, atol=atol, rtol=rtol):
        worst = (actual - expected).abs().max().item()
        raise Wrong(f"{what} differs from the expected values (largest difference {worst:.3g}).", mistake=mistake, hint=hint)


def expect_pass(check: Callable[..., CheckResult], answer, *args, **kwargs) -> CheckResult:
    """Test helper: assert that ``check(answer)`` passes, showing the result if not."""
    result = check(answer, *args, **kwargs)
    assert result.status == PASSED, f"expected a pass, got:\n{result}"
    return result


def expect_mistake(check: Callable[..., CheckResult], answer, mistake: str | None, *args, **kwargs) -> CheckResult:
    """Test helper: assert that ``check(answer)`` fails and names ``mistake``
    (``None``: fails without naming any particular mistake)."""
    result = check(answer, *args, **kwargs)
    assert result.status == WRONG, f"expected a failure, got:\n{result}"
    assert result.mistake == mistake, f"expected the mistake {mistake!r} to be named, got:\n{result}"
    return result
