"""Self-check exercises: the shared harness, and one module per lesson
(``vdmcourse.exercises.lesson00``, ``lesson02``, ...) holding its checks.

``claim`` checks a sentence a lesson states about its own numbers;
``yours_or_reference`` lets a lesson go on with the learner's function once it passed."""

from vdmcourse.exercises.claims import claim, direction
from vdmcourse.exercises.harness import (
    NOT_ATTEMPTED,
    PASSED,
    WRONG,
    CheckResult,
    Wrong,
    expect_close,
    expect_mistake,
    expect_pass,
    expect_shape,
    self_check,
)
from vdmcourse.exercises.reuse import yours_or_reference

__all__ = [
    "NOT_ATTEMPTED",
    "PASSED",
    "WRONG",
    "CheckResult",
    "Wrong",
    "expect_close",
    "expect_mistake",
    "expect_pass",
    "expect_shape",
    "self_check",
    "claim",
    "direction",
    "yours_or_reference",
]
