"""``python -m tests.mutation`` (``make mutants``): remove each condition of the store, and each
conjunct of a compound one, one at a time, and show the fast tests fail for every one.

Each mutant runs in its own copy of the working tree (in a temporary directory), so the tree
that others are editing is never touched and nothing needs restoring, whatever stops the run;
Ctrl-C ends the test runs it started and removes the copies.

A mutant is caught when a test fails that passes unmutated: every test module is first run on
an unmutated copy, and a test failing there is left out of the mutant runs (and named). To stay
fast, the stale-read tests go first, those that enter the function holding the mutated
condition (recorded on an instrumented copy, ``tests/mutation/reach.py``) ahead of the others,
and pytest stops at the first failure; the other fast modules (``tests/unit``) run only for a
mutant the stale-read tests let through. pytest runs without the plugins the environment
installs (Schemathesis' took 4 s to load for each mutant), with those the tests use named, and
each mutant's copy keeps the unmutated copy's bytecode (its mutated module is compiled anew).

Exit status: 0 when every mutant is caught, 1 when one survives or a run could not be judged.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.mutation import reach
from tests.mutation.conditions import Mutant, called_names, mutants_of, reached_by, sites

ROOT = Path(__file__).resolve().parents[2]
STORE = Path("layers/common/python/chat_sessions/store")
STALE = "tests/unit/test_stale_reads.py"
FAST = "tests/unit"
SKIP_NAMES = (".git", ".venv*", ".cache", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".aws-sam", "node_modules")
SKIP = shutil.ignore_patterns(*SKIP_NAMES, "__pycache__")
KEEP_BYTECODE = shutil.ignore_patterns(*SKIP_NAMES)
# The plugins the fast tests use; the others installed (Schemathesis, xdist, ...) are not loaded.
PLUGINS = ("-p", "pytest_timeout", "-p", "_hypothesis_pytestplugin", "-p", "anyio.pytest_plugin")
FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
RUN_TIMEOUT_SECONDS = 900
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome:
    verdict: str  # caught | survived | error
    by: list[str]  # the tests that caught it (the first, unless --all), or what went wrong
    seconds: float


class Runs:
    """The test runs, each forked by a fork server (``tests/mutation/forkserver.py``, one per
    run at once, started on first use) so it starts with the libraries imported; the runs in
    flight are kept so Ctrl-C can end them (each leads its own process group)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[subprocess.Popen[str]] = []
        self.servers: list[subprocess.Popen[str]] = []
        self.live: set[int] = set()
        self.stopping = False

    def _server(self) -> subprocess.Popen[str]:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("forkserver.py"))],
            env=env,
            cwd=tempfile.gettempdir(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        with self.lock:
            self.servers.append(server)
        return server

    def pytest(
        self, args: list[str], tree: Path, write_bytecode: bool = False, env_extra: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """pytest on ``tree``; ``write_bytecode`` for the unmutated copy, whose bytecode every
        mutant's copy then starts from. pytest loads only the plugins named in ``PLUGINS``."""
        server = self._server()
        assert server.stdin is not None and server.stdout is not None
        with tempfile.NamedTemporaryFile(prefix="pytest-", suffix=".out", dir=tree.parent) as output:
            request = {
                "tree": str(tree),
                "args": ["-q", "-p", "no:cacheprovider", *PLUGINS, "-rfE", *args],
                "env": {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **(env_extra or {})},
                "output": output.name,
                "write_bytecode": write_bytecode,
            }
            with self.lock:
                if self.stopping:
                    return -1, "stopped"
                server.stdin.write(json.dumps(request) + "\n")
                server.stdin.flush()
                started = server.stdout.readline()
                if not started.startswith("pid "):
                    raise SystemExit(f"the fork server ended (exit {server.poll()}): {started!r}")
                pid = int(started.split()[1])
                self.live.add(pid)
            timer = threading.Timer(RUN_TIMEOUT_SECONDS, self._kill, (pid,))
            timer.start()
            try:
                ended = server.stdout.readline()
                code = int(ended.split()[1]) if ended.startswith("exit ") else -1
            finally:
                timer.cancel()
                with self.lock:
                    self.live.discard(pid)
                    self.idle.append(server)
            text = Path(output.name).read_text(errors="replace")
        if code == -signal.SIGKILL and not self.stopping:
            return -1, f"timed out after {RUN_TIMEOUT_SECONDS} s\n{text}"
        return code, text

    @staticmethod
    def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for pid in self.live:
                self._kill(pid, signal.SIGTERM)

    def close(self) -> None:
        """End the fork servers (each ends on EOF, once its run in flight has ended)."""
        with self.lock:
            servers, self.servers, self.idle = self.servers, [], []
        for server in servers:
            assert server.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                server.stdin.close()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def copy_tree(source: Path, into: Path, bytecode: bool = False) -> Path:
    """``source`` copied into ``into/tree``; with its bytecode when ``bytecode`` (a module changed
    in the copy is compiled anew: its size and time no longer match)."""
    tree = into / "tree"
    shutil.copytree(source, tree, ignore=KEEP_BYTECODE if bytecode else SKIP, symlinks=True)
    return tree


def modules(tree: Path, specs: list[str]) -> tuple[bool, list[str]]:
    """Whether the stale-read tests are selected, and the other test modules selected."""
    others: list[str] = []
    for spec in specs:
        path = tree / spec
        found = sorted(path.glob("test_*.py")) if path.is_dir() else [path]
        others += [str(p.relative_to(tree)) for p in found if str(p.relative_to(tree)) != STALE]
    return any(spec in (STALE, FAST) for spec in specs), others


def stale_tests_for(tree: Path, mutant: Mutant, reached: dict[str, set[tuple[str, str]]]) -> list[str]:
    """The stale-read tests as node ids: first those that entered the function holding the
    mutated condition in the recording run (``reached``, by test name), then those calling a
    store function that reaches it, then the others (a likely catch comes in a second, not
    after the whole module)."""
    site = (mutant.site.path.stem, mutant.site.function)
    names = reached_by(mutant.site, tree / STORE)
    module = ast.parse((tree / STALE).read_text())
    tests = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    entered = [t for t in tests if site in reached.get(t.name, set())]
    called = [t for t in tests if t not in entered and called_names(t) & names]
    return [f"{STALE}::{t.name}" for t in entered + called + [t for t in tests if t not in entered + called]]


def stale_test_ids(tree: Path) -> list[str]:
    module = ast.parse((tree / STALE).read_text())
    return [f"{STALE}::{n.name}" for n in module.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


def record_reach(runs: Runs, baseline: Path, tests: list[str], jobs: int) -> dict[str, set[tuple[str, str]]]:
    """Run ``tests`` on an instrumented copy of ``baseline`` (:mod:`tests.mutation.reach`): the
    store functions each test enters, by test function name."""
    reached: dict[str, set[tuple[str, str]]] = {}
    with tempfile.TemporaryDirectory(dir=baseline.parent.parent) as tmp:
        tree = copy_tree(baseline, Path(tmp), bytecode=True)
        for path in sorted((tree / STORE).glob("*.py")):
            path.write_text(reach.instrument(path.read_bytes(), path.stem))
        shares = [share for i in range(jobs) if (share := tests[i::jobs])]

        def record(share: tuple[int, list[str]]) -> tuple[int, str]:
            out = Path(tmp) / f"reach-{share[0]}.json"
            return runs.pytest(["-p", "tests.mutation.reach", *share[1]], tree, env_extra={reach.REACH_FILE: str(out)})

        parallel(runs, jobs, record, list(enumerate(shares)))
        for path in Path(tmp).glob("reach-*.json"):
            for test, names in reach.read(path).items():
                reached.setdefault(test.split("::")[-1].split("[")[0], set()).update(names)
    return reached


def red_tests(runs: Runs, tree: Path, selected: list[str], jobs: int) -> list[str]:
    """The tests of ``selected`` failing on the unmutated ``tree``, the modules shared out among
    ``jobs`` pytest processes (not pytest-xdist: some tests are parametrized with generated ids,
    which xdist refuses to distribute)."""
    shares = [share for i in range(jobs) if (share := selected[i::jobs])]
    red: set[str] = set()
    for code, output in parallel(runs, jobs, lambda share: runs.pytest(share, tree, write_bytecode=True), shares):
        if code not in (0, 1):
            raise SystemExit(f"the unmutated tests could not run (pytest exit {code}):\n{output[-3000:]}")
        red.update(FAILED.findall(output))
    return sorted(red)


def judge(runs: Runs, snapshot: Path, mutant: Mutant, tests: list[str], red: list[str], stop_first: bool) -> Outcome:
    """Run ``tests`` on a copy of ``snapshot`` with ``mutant`` applied."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=snapshot.parent.parent) as tmp:
        tree = copy_tree(snapshot, Path(tmp), bytecode=True)
        target = tree / STORE / mutant.site.path.name
        target.write_bytes(mutant.apply(target.read_bytes()))
        deselect = [arg for test in red for arg in ("--deselect", test)]
        code, output = runs.pytest([*(["-x"] if stop_first else []), *deselect, *tests], tree)
    seconds = time.monotonic() - started
    if code == 0:
        return Outcome("survived", [], seconds)
    failed = FAILED.findall(output)
    if code == 1 and failed:
        return Outcome("caught", failed, seconds)
    return Outcome("error", [f"pytest exit {code}: {output[-2000:]}"], seconds)


def parallel(runs: Runs, jobs: int, work: Callable[[T], R], items: list[T]) -> list[R]:
    """``work`` over ``items``, ``jobs`` at a time; on Ctrl-C the runs in flight are ended
    first, so nothing waits for them."""
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        return list(pool.map(work, items))
    except KeyboardInterrupt:
        runs.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def report(mutant: Mutant, outcome: Outcome) -> None:
    if outcome.verdict == "caught":
        detail = "by " + ", ".join(test.split("::")[-1] for test in outcome.by)
    else:
        detail = "; ".join(outcome.by)
    print(f"{outcome.verdict:>8}  {mutant.name}  {detail}  ({outcome.seconds:.0f} s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the conditions and mutants, run nothing")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="test runs at once")
    parser.add_argument("--all", action="store_true", help="run every test on each mutant, name every catch")
    parser.add_argument("-k", dest="only", default="", help="only mutants whose name contains this")
    parser.add_argument("tests", nargs="*", default=[STALE, FAST], help="test files or directories")
    args = parser.parse_args()
    jobs = max(1, args.jobs)

    if args.list:
        found = sites(ROOT / STORE)
        print(f"{len(found)} conditions in {STORE}")
        for site in found:
            print(f"  {site.where}: {site.expression}")
        for mutant in (m for site in found for m in mutants_of(site) if args.only in m.name):
            print(f"  {mutant.name}\n      -> {mutant.expression}")
        return 0

    started = time.monotonic()
    runs = Runs()
    outcomes: dict[int, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        # One snapshot of the working tree: conditions, tests and every mutant's copy come from
        # it, so edits made to the tree while the check runs cannot mix into it.
        baseline = copy_tree(ROOT, Path(tmp) / "unmutated")
        found = sites(baseline / STORE)
        mutants = [m for site in found for m in mutants_of(site) if args.only in m.name]
        print(f"{len(found)} conditions in {STORE}, {len(mutants)} mutants")
        with_stale, others = modules(baseline, args.tests)
        try:
            pending = list(range(len(mutants)))
            for phase, selected in (("stale-read tests", [STALE] if with_stale else []), ("other tests", others)):
                if not selected or not pending:
                    continue
                stale = selected == [STALE]
                # The stale-read module is shared out among the jobs test by test.
                red = red_tests(runs, baseline, stale_test_ids(baseline) if stale else selected, jobs)
                print(f"{phase}: {len(selected)} modules, {len(red)} tests failing unmutated, left out")
                for test in red:
                    print(f"  left out: {test}")
                reached = record_reach(runs, baseline, stale_test_ids(baseline), jobs) if stale else {}

                def run(
                    i: int,
                    selected: list[str] = selected,
                    red: list[str] = red,
                    reached: dict[str, set[tuple[str, str]]] = reached,
                ) -> Outcome:
                    tests = stale_tests_for(baseline, mutants[i], reached) if selected == [STALE] else selected
                    outcome = judge(runs, baseline, mutants[i], tests, red, stop_first=not args.all)
                    report(mutants[i], outcome)
                    return outcome

                for i, outcome in zip(pending, parallel(runs, jobs, run, pending), strict=True):
                    outcomes[i] = outcome
                pending = [i for i in pending if outcomes[i].verdict == "survived"]
        except KeyboardInterrupt:
            runs.stop()
            print("\ninterrupted: the working tree was never changed; copies removed", file=sys.stderr)
            return 130
        finally:
            runs.close()
    caught = sum(o.verdict == "caught" for o in outcomes.values())
    survived = [mutants[i].name for i, o in outcomes.items() if o.verdict == "survived"]
    errors = len(outcomes) - caught - len(survived)
    print(
        f"{len(found)} conditions, {len(mutants)} mutants: {caught} caught, {len(survived)} survived"
        + (f", {errors} not judged" if errors else "")
        + f"; {time.monotonic() - started:.0f} s with {jobs} jobs"
    )
    for name in survived:
        print(f"  SURVIVED {name}")
    return 0 if caught == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main())
