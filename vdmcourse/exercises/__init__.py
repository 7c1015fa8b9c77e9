"""Self-check exercises: the shared harness, and one module per lesson
(``vdmcourse.exercises.lesson00``, ``lesson02``, ...) holding its checks."""

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
]
