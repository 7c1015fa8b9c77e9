"""Run every lesson notebook top to bottom and record its time, peak memory and claims.

Each notebook runs in a fresh process (``nbclient``, a fresh kernel), so that the
time includes starting the kernel and the peak resident memory is that of the
lesson's own processes: ``os.wait4`` reports the largest peak RSS among the child
and everything it waited for -- the kernel included. Each lesson's claims
(``vdmcourse.exercises.claim``) are collected through ``VDM_CLAIMS_LOG``.

In full mode (the default) a lesson fails when a cell raises, when a claim does not
hold, when it takes longer than ``--max-minutes`` (10) or when its peak RSS is above
``--max-gib`` (2); the script exits with status 1 if any lesson failed. Quick mode
(``--quick``: ``VDM_QUICK=1``, as CI) fails only on errors: claims that need the full
budget are "not reproduced" there by design.

    python benchmarks/run_lessons.py                      # every lesson, full mode
    python benchmarks/run_lessons.py --quick 00 02        # lessons 00 and 02, quick mode
    OMP_NUM_THREADS=1 python benchmarks/run_lessons.py 05   # on a shared machine: one torch thread
    python benchmarks/run_lessons.py --solutions 05 12    # notebooks/solutions/05_solutions.ipynb and 12's

With ``--solutions`` the numbers select the worked-solutions notebooks instead; they run from
their own folder (as nbval runs them) and their rows are named ``NN_solutions``, beside the lessons.

Rows are merged into benchmarks/results/lessons.json (one row per lesson and mode,
the newest wins) and the whole table is rewritten to benchmarks/results/lessons.md.
Each merge reads the file afresh under a lock and replaces it atomically, so runs of
different lessons at the same time keep each other's rows.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
RESULTS = ROOT / "benchmarks" / "results"

# Executed in the child process: a fresh kernel runs the notebook from its own folder.
# Each code cell's wall time is printed as "[cell N] S s" (the row keeps the slowest three).
_EXECUTE = """
import sys, time, nbformat
from nbclient import NotebookClient
path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
started = {}
def _start(cell, cell_index, **_):
    started[cell_index] = time.perf_counter()
def _done(cell, cell_index, **_):
    print(f"[cell {cell_index}] {time.perf_counter() - started.pop(cell_index, time.perf_counter()):.1f} s", flush=True)
NotebookClient(notebook, timeout=int(sys.argv[2]), kernel_name="python3",
               resources={"metadata": {"path": sys.argv[3]}}, on_cell_execute=_start, on_cell_executed=_done).execute()
"""


def lessons(selected: list[str]) -> list[Path]:
    """The lesson notebooks ``NN_*.ipynb``, all or those whose number is in ``selected``."""
    return _numbered(NOTEBOOKS, "[0-9][0-9]_*.ipynb", selected, "notebook")


def solutions(selected: list[str]) -> list[Path]:
    """The worked-solutions notebooks ``solutions/NN_solutions.ipynb``, all or those numbered in ``selected``."""
    return _numbered(NOTEBOOKS / "solutions", "[0-9][0-9]_solutions.ipynb", selected, "solutions notebook")


def _numbered(folder: Path, pattern: str, selected: list[str], what: str) -> list[Path]:
    found = sorted(folder.glob(pattern))
    if selected:
        found = [path for path in found if path.name[:2] in selected]
        missing = set(selected) - {path.name[:2] for path in found}
        if missing:
            raise SystemExit(f"run_lessons: no {what} numbered {', '.join(sorted(missing))} in {folder}")
    return found


def run_one(path: Path, quick: bool, timeout_s: int) -> dict:
    """Execute one notebook in a fresh process; return its row."""
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "claims.jsonl"
        env = {**os.environ, "VDM_CLAIMS_LOG": str(log), "PYTHONPATH": str(ROOT)}
        env["VDM_QUICK"] = "1" if quick else "0"
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the README's advice for shared machines
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", _EXECUTE, str(path), str(timeout_s), str(path.parent)],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        claims = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    failed_claims = [c["text"] for c in claims if not c["holds"] and not c["quick"]]
    cells = [line.split() for line in output.splitlines() if line.startswith("[cell ") and line.endswith(" s")]
    cells = sorted(((float(parts[2]), int(parts[1].rstrip("]"))) for parts in cells if len(parts) == 4), reverse=True)
    return {
        "lesson": path.stem,
        "mode": "quick" if quick else "full",
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),  # Linux reports KiB
        "claims": len(claims),
        "claims_held": sum(c["holds"] for c in claims),
        "failed_claims": failed_claims,
        "error": None if child.returncode == 0 else output.strip().splitlines()[-1][:300] if output.strip() else f"exit {child.returncode}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end",
        "threads": env.get("OMP_NUM_THREADS", "default"),
        "slowest_cells": [{"cell": index, "seconds": seconds} for seconds, index in cells[:3]],
    }


def problems(row: dict, max_minutes: float, max_gib: float) -> list[str]:
    """Why a row fails: an error always; in full mode also claims, time and memory."""
    found = [f"error: {row['error']}"] if row["error"] else []
    if row["mode"] == "full":
        found += [f"claim does not hold: {text}" for text in row["failed_claims"]]
        if row["seconds"] > 60 * max_minutes:
            found.append(f"took {row['seconds'] / 60:.1f} min (limit {max_minutes:g})")
        if row["peak_rss_mib"] > 1024 * max_gib:
            found.append(f"peak RSS {row['peak_rss_mib'] / 1024:.2f} GiB (limit {max_gib:g})")
    return found


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a reader sees the old file or the new one, never half."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)


@contextmanager
def _results_lock():
    """An exclusive lock for the results files, held across read-modify-write (``flock`` on a file
    in the temporary folder named after RESULTS: the results files themselves are replaced, not edited)."""
    key = hashlib.sha1(str(RESULTS.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"run_lessons-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_rows() -> list[dict]:
    table = RESULTS / "lessons.json"
    return json.loads(table.read_text()) if table.exists() else []


def merge_rows(new: list[dict]) -> list[dict]:
    """Merge ``new`` into the stored results by (lesson, mode), the new row winning, and rewrite
    lessons.json and lessons.md; returns every row. Reads the stored rows under the lock, so a run
    of another lesson that finished meanwhile keeps its row."""
    with _results_lock():
        replaced = {(row["lesson"], row["mode"]) for row in new}
        rows = [row for row in _read_rows() if (row["lesson"], row["mode"]) not in replaced] + list(new)
        write_table(rows)
    return rows


def write_table(rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    _replace(RESULTS / "lessons.json", json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Lessons: time, peak memory and claims",
        "",
        "Written by `benchmarks/run_lessons.py`: each lesson executed top to bottom in a fresh kernel.",
        "Time includes starting the kernel; peak RSS is the largest of the runner's child processes",
        "(the kernel included). Claims: sentences the lesson checks against its own numbers",
        "(`vdmcourse.exercises.claim`); in quick mode many are not reproduced by design.",
        "",
        "| lesson | mode | time | peak RSS | claims held | status | threads | machine | date |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r["lesson"], r["mode"])):
        over = row.get("over_limits")  # time or memory above the limits it ran with
        status = "error" if row["error"] else ("claims fail" if row["failed_claims"] else ("; ".join(over) if over else "ok"))
        lines.append(
            f"| {row['lesson']} | {row['mode']} | {row['seconds'] / 60:.1f} min | {row['peak_rss_mib']:,} MiB | "
            f"{row['claims_held']}/{row['claims']} | {status} | {row['threads']} | {row['machine']} | {row['date']} |"
        )
    failing = [row for row in rows if row["failed_claims"]]
    if failing:
        lines += ["", "## Claims that did not hold", ""]
        lines += [f"- {row['lesson']} ({row['mode']}): {text}" for row in failing for text in row["failed_claims"]]
    _replace(RESULTS / "lessons.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers, e.g. 00 05 (default: all)")
    parser.add_argument("--quick", action="store_true", help="quick mode (VDM_QUICK=1), as in CI")
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--max-gib", type=float, default=2.0)
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds one cell may run")
    parser.add_argument("--solutions", action="store_true", help="run the worked-solutions notebooks with these numbers")
    args = parser.parse_args(argv)

    failures = 0
    for path in (solutions if args.solutions else lessons)(args.lessons):
        row = run_one(path, args.quick, args.cell_timeout)
        found = problems(row, args.max_minutes, args.max_gib)
        row["over_limits"] = [p for p in found if p.startswith(("took", "peak RSS"))]
        failures += bool(found)
        print(f"{row['lesson']:>34} {row['mode']:>5}: {row['seconds'] / 60:5.1f} min, {row['peak_rss_mib']:6,} MiB, "
              f"claims {row['claims_held']}/{row['claims']}" + ("".join(f"\n    FAIL {p}" for p in found) or "  ok")
              + "\n    slowest cells: " + ", ".join(f"{c['cell']} ({c['seconds']:.0f} s)" for c in row["slowest_cells"]),
              flush=True)
        merge_rows([row])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
