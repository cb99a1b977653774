"""Machine instructions per request, counted under valgrind, against bare Flask.

    python bench/bench_instructions.py [--requests N] [CASE ...]

The timed benchmarks (``bench_core``, ``bench_gating``) are the budgets' own
measure, but on a shared 2-core machine their ratios move by ±0.1 between runs
minutes apart. ``bench_opcodes`` counts bytecodes exactly but not the C under
them. This counts both: each case runs in a process of its own under
``valgrind --tool=callgrind``, which counts the instructions the CPU executes
(Python's interpreter, Flask's, werkzeug's and Jinja's C, the hashing, the
comparison of a page with the kept one), whatever else the machine is doing.
Instructions are not time (a cache miss costs more than an addition), but the
ratio of two counts is the same on every run, to within about 0.1 % (the JSON
route counted 498,594 and 498,237 instructions per request on bare Flask,
509,160 and 509,085 with the extension, in two runs), so a budget's status can
be read off it on a noisy machine.

Cases are those of ``bench_opcodes`` (``json``, ``json-reading``, ``least-json``,
``least-reading``, ``page``, ``least-page``, ``least-surface``, ``form``, ``page-500k``,
``form-500k``; default: all of them), each with the same request for bare Flask
and for the extension (for ``least-*``: the least an extension could do). Each process warms its app
(50 requests: caches filled, templates compiled) and then sends ``--requests``
more (default 100), counted alone: collection is on only inside
``functools.reduce``, which drives the counted loop and which nothing on the
request path calls. Needs valgrind (Debian: ``apt-get install valgrind``); two
processes run at a time, about 40 s each.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile

from _common import case_arguments, chosen_cases  # (and the project's root on the path)

CASES = ("json", "json-reading", "least-json", "least-reading", "page", "least-page",
         "least-surface", "form", "page-500k", "form-500k")
SIDES = ("bare", "kit")
_COLLECTED = re.compile(r"Collected : (\d+)")


def child(case: str, side: str, requests: int) -> None:
    """In the process under valgrind: warm ``case``'s app, then send the counted requests."""
    from bench_opcodes import Cases

    with tempfile.TemporaryDirectory() as instance:
        _label, bare, _name, kit = Cases(instance, None)[case]
        call = bare if side == "bare" else kit
        for _ in range(50):
            call()
        gc.collect()  # a full collection now, not at a point in the counted loop that varies
        functools.reduce(lambda acc, _: (call(), acc)[1], range(requests), 0)


def count(case: str, side: str, requests: int) -> int:
    """The instructions ``requests`` requests of ``case`` execute on ``side``."""
    command = ["valgrind", "--tool=callgrind", "--collect-atstart=no",
               "--toggle-collect=functools_reduce", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--child", case, side, str(requests)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict and set order every run
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{case} ({side}) failed under valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = case_arguments(__doc__.splitlines()[0], CASES)
    parser.add_argument("--requests", type=int, default=100, help="counted per process")
    args = parser.parse_args()
    chosen_cases(parser, args.case, CASES)
    if args.requests < 1:
        parser.error("--requests is at least 1")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    chosen = args.case or list(CASES)
    runs = [(case, side) for case in chosen for side in SIDES]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        counted = dict(zip(runs, pool.map(lambda run: count(*run, args.requests), runs),
                           strict=True))
    print("instructions per warm request, counted by valgrind (the same on every run)")
    for case in chosen:
        bare, kit = (counted[case, side] / args.requests for side in SIDES)
        other = "the least    " if case.startswith("least-") else "the extension"
        print(f"  {case:13} bare Flask {bare:11,.0f}   {other} {kit:11,.0f}   "
              f"+{kit - bare:9,.0f} ({kit / bare:.3f}x)")


if __name__ == "__main__":
    main()
