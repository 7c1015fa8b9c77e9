"""Build it, check it, then use it: a lesson goes on with the learner's own function.

After a self-check, :func:`yours_or_reference` hands back the learner's function when
its check passed and the package's reference otherwise, and says which one the
lesson uses from here on -- so the attention, loss or sampler step a learner wrote
is the one that runs in the rest of the lesson.
"""

from __future__ import annotations

import html
from typing import Callable

from vdmcourse.exercises.claims import _show
from vdmcourse.exercises.harness import CheckResult

__all__ = ["Choice", "yours_or_reference"]


class Choice(str):
    """The one-line note shown when a lesson picks yours or the reference."""

    def _repr_html_(self) -> str:
        return f'<div style="font-family:sans-serif;color:#3c4043;margin:2px 0">{html.escape(self)}</div>'


def yours_or_reference(result: CheckResult, yours: Callable, reference: Callable, what: str | None = None) -> Callable:
    """Return ``yours`` if ``result`` (its self-check) passed, else ``reference``; show which.

    ``what`` names the function in the message (default: ``yours.__name__``).
    """
    if not isinstance(result, CheckResult):
        raise TypeError(f"yours_or_reference: result must be the CheckResult of a self-check; got {type(result).__name__}")
    name = what or getattr(yours, "__name__", "your function")
    reference_name = getattr(reference, "__qualname__", None) or getattr(reference, "__name__", repr(reference))
    module = getattr(reference, "__module__", None)
    if module:
        reference_name = f"{module}.{reference_name}"
    if result.passed:
        note, chosen = f"\u2192 From here on the lesson uses your `{name}`.", yours
    else:
        note, chosen = (f"\u2192 Your `{name}` has not passed its check ({result.status}), so the lesson goes on "
                        f"with the reference `{reference_name}`."), reference
    _show(Choice(note))
    return chosen

