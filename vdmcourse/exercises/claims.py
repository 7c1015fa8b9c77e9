"""Claims: sentences a lesson states about its own measurements, checked where they are made.

A lesson that writes "(2+1)-D convolutions take less time per step" must not say so
when its own numbers disagree. Such a sentence is either printed from the numbers
(:func:`direction` gives the verb) or registered with :func:`claim`, which checks it
and shows the outcome:

* holds -- a tick and the sentence;
* does not hold, quick mode -- the sentence and a plain "not reproduced at quick-mode
  budgets" (quick mode trains for seconds; many outcomes need the full budget);
* does not hold, full mode -- a cross: the lesson's text is wrong on this machine.

Every claim is recorded in :data:`CLAIMS`, and, when ``VDM_CLAIMS_LOG`` names a file,
appended to it as one JSON line; ``benchmarks/run_lessons.py`` reads that file and
fails on any claim that does not hold in full mode.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass

from vdmcourse.course import is_quick

__all__ = ["Claim", "CLAIMS", "claim", "direction"]

_SHOWN = {
    "holds": ("#e6f4ea", "#1e7b34", "\u2714"),
    "quick": ("#f1f3f4", "#5f6368", "\u2013"),
    "fails": ("#fdecea", "#a1261b", "\u2718"),
}


@dataclass(frozen=True)
class Claim:
    """One checked sentence: its ``text``, whether it ``holds``, and whether it was
    made in ``quick`` mode."""

    text: str
    holds: bool
    quick: bool

    @property
    def outcome(self) -> str:
        return "holds" if self.holds else ("quick" if self.quick else "fails")

    def __str__(self) -> str:
        mark = _SHOWN[self.outcome][2]
        if self.outcome == "quick":
            return f"{mark} {self.text} (not reproduced at quick-mode budgets)"
        if self.outcome == "fails":
            return f"{mark} {self.text} (does NOT hold in this run)"
        return f"{mark} {self.text}"

    __repr__ = __str__  # what a plain-text view of the notebook shows

    def _repr_html_(self) -> str:
        background, colour, _ = _SHOWN[self.outcome]
        return (
            f'<div style="background:{background};color:{colour};border-left:4px solid {colour};'
            f'padding:4px 10px;margin:2px 0;font-family:sans-serif">{html.escape(str(self))}</div>'
        )


CLAIMS: list[Claim] = []


def claim(text: str, holds) -> None:
    """Check a sentence against the numbers it is about, show the outcome, and record it.

    ``holds`` is the test (anything ``bool()`` accepts, e.g. ``time_2p1d < time_3d``).
    The claim is displayed at once, so several claims in one cell all show; it returns
    nothing (a cell ending in a claim shows it once) and is kept in :data:`CLAIMS`.
    Nothing is raised, so a lesson always runs to the end.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"claim: text must be a non-empty sentence; got {text!r}")
    result = Claim(text.strip(), bool(holds), is_quick())
    CLAIMS.append(result)
    log = os.environ.get("VDM_CLAIMS_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(json.dumps(asdict(result)) + "\n")
    _show(result)


def _show(result) -> None:
    """Display ``result`` in a notebook, print it elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: print
        print(result)
        return
    if get_ipython() is None:
        print(result)
    else:
        display(result)


def direction(before: float, after: float, up: str = "rises", down: str = "falls", same: str = "stays the same",
              tolerance: float = 0.0) -> str:
    """The verb for a change from ``before`` to ``after``, for sentences printed from the
    numbers: ``f"variety {direction(a, b)} from {a:.2f} to {b:.2f}"``. Changes within
    ``tolerance`` (absolute) read as ``same``."""
    if abs(after - before) <= tolerance:
        return same
    return up if after > before else down
