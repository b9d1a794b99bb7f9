"""Running the tests on pytest-xdist workers (``make test``: ``-n auto --dist loadgroup``).

Groups. Tests that share a server or a world run on one worker, so each is started once: tests
sharing a session-scoped fixture of ours (the local stack, the fault tier's DynamoDB Local, ...)
form one group, and so do the tests of a module with a module-scoped fixture; a test in two
groups joins them; ``@pytest.mark.xdist_group(name)`` works as well. A server that starts in a
second or so (``PER_WORKER``) is rather started by each worker that needs it: grouping its
tests would put them all on one worker.
Other tests go one by one to whichever worker is free. The longest units of work start first
(by the last run's times, kept in ``.pytest_cache``, else by a guess), so that no long test
starts late and ends the run after the others.

xdist's own ``loadgroup`` marks a test's group in its id, which this pytest no longer lets a
plugin change, so the workers write each test's group to a file and the controller's scheduler
(``LoadScopeScheduling``, one scope per group) reads it.

Summaries. A tier's own ``pytest_terminal_summary`` (in a conftest under ``tests/``) would run
in the worker that holds its state, where nothing it prints is shown: the worker runs it as its
session finishes, and what it writes is printed in the controller's summary.

Imported by ``tests/conftest.py``, which makes these hooks its own.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
GROUPS_DIR = "CHAT_SESSIONS_TEST_GROUPS"  # set by the controller, inherited by its workers
_SUMMARY_METHODS = ("write", "write_line", "write_sep", "line", "section")
_relayed: list[list[Any]] = []
_groups: dict[str, str] = {}


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_worker(config) or config.getoption("dist", "no") != "loadgroup" or config.getoption("collectonly"):
        return
    os.environ[GROUPS_DIR] = tempfile.mkdtemp(prefix="test-groups-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _is_worker(config) and GROUPS_DIR in os.environ:
        shutil.rmtree(os.environ.pop(GROUPS_DIR), ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In each worker: find the groups, order the work (see :func:`_order`) and write each
    grouped test's group for the controller."""
    folder = os.environ.get(GROUPS_DIR)
    if not _is_worker(config) or not folder:
        return
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    keys_of: dict[str, list[str]] = {}
    for item in items:
        keys = sorted(_shared(item))
        keys_of[item.nodeid] = keys
        for key in keys:
            parent[find(key)] = find(keys[0])
    names: dict[str, str] = {}
    for key in parent:
        names.setdefault(find(key), key)  # a readable name: the first key of the group
    groups = {nodeid: names[find(keys[0])] for nodeid, keys in keys_of.items() if keys}
    workers = int(config.workerinput.get("workercount", 2))  # type: ignore[attr-defined]
    items[:] = _order(items, groups, _last_durations(config), workers)
    target = Path(folder) / f"{config.workerinput['workerid']}.json"  # type: ignore[attr-defined]
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps(groups))
    temporary.replace(target)


def _order(
    items: list[pytest.Item], groups: dict[str, str], durations: dict[str, float], workers: int
) -> list[pytest.Item]:
    """The units of work (a group, or a test of its own) longest first, so the long ones start
    at once instead of ending the run late. A test's length is what it took in the last run
    (``.pytest_cache``), else a guess: a Hypothesis test a minute, a test sharing a server three
    seconds, any other half a second. xdist hands each worker one unit and, to a worker whose
    unit is a single test, the next one too (it runs a test only once it knows the next); so the
    shortest units come right after the first ``workers``, for those workers to hold instead of
    another long one."""
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(groups.get(item.nodeid, item.nodeid), []).append(item)

    def guess(item: pytest.Item) -> float:
        if item.nodeid in durations:
            return durations[item.nodeid]
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
            return 60.0
        return 3.0 if _uses_a_server(item) else 0.5

    cost = {name: sum(guess(item) for item in members) for name, members in units.items()}
    longest = sorted(units, key=lambda name: -cost[name])  # stable: collection order breaks ties
    first, rest = longest[:workers], longest[workers:]
    shortest = sorted(rest[-workers:], key=lambda name: cost[name]) if len(rest) > workers else []
    queue = first + shortest + [name for name in rest if name not in shortest]
    return [item for name in queue for item in units[name]]


# Session-scoped fixtures cheap enough for every worker to start its own (moto's server: ~1 s).
PER_WORKER = {"dynamodb_endpoint"}
DURATIONS_KEY = "chat-sessions/test-durations"
_durations: dict[str, float] = {}


def _last_durations(config: pytest.Config) -> dict[str, float]:
    cache = getattr(config, "cache", None)
    return dict(cache.get(DURATIONS_KEY, {})) if cache is not None else {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test's time (setup, call and teardown), kept by the process that prints the results."""
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def _uses_a_server(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(
        definition.scope == "session" and getattr(definition.func, "__module__", "").startswith("tests.")
        for name in item.fixturenames  # type: ignore[attr-defined]
        for definition in info.name2fixturedefs.get(name, ())
    )


def _shared(item: pytest.Item) -> set[str]:
    """What a test shares with others: our session-scoped fixtures by name, its module if it uses
    a module- or package-scoped fixture of ours, and any ``xdist_group`` it is marked with."""
    shared = {str(mark.args[0] if mark.args else mark.kwargs.get("name")) for mark in item.iter_markers("xdist_group")}
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return shared
    for name in item.fixturenames:  # type: ignore[attr-defined]
        for definition in info.name2fixturedefs.get(name, ()):
            if not getattr(definition.func, "__module__", "").startswith("tests."):
                continue  # pytest's own (tmp_path_factory, ...) hold no server
            if getattr(definition, "_autouse", False):
                continue  # every test has it: each worker sets it up for itself
            if definition.scope == "session":
                if name not in PER_WORKER:
                    shared.add(name)
            elif definition.scope in ("module", "package"):
                shared.add(item.nodeid.split("::", 1)[0])
    return shared


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per CPU, since many tests mostly wait (the fault tier on injected
    delays and retries, the stacks' tests on their processes, a reply's lease running out).
    Measured on 2 cores, alternating: with 3 workers the cores were 77 to 84% busy and the run
    took 145 to 153 s; with 4, 92 to 100% and 126 to 130 s; 5 and 6 were no faster than 4."""
    return 2 * len(os.sched_getaffinity(0))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """In the controller, for ``--dist loadgroup``: one scope per group, every other test a scope
    of its own, in the workers' order (groups first)."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if not _groups:
                for path in sorted(Path(os.environ[GROUPS_DIR]).glob("*.json")):
                    _groups.update(json.loads(path.read_text()))
            return _groups.get(nodeid, nodeid)

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


class _Recorder:
    """Stands in for the terminal reporter: keeps what is written, answers the rest (``stats``...)."""

    def __init__(self, reporter: Any) -> None:
        self._reporter = reporter
        self.calls: list[list[Any]] = []

    def __getattr__(self, name: str) -> Any:
        if name in _SUMMARY_METHODS:
            return lambda *args, **kwargs: self.calls.append([name, list(args), kwargs])
        return getattr(self._reporter, name)


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Iterator[None]:
    """In a worker, once its session fixtures are torn down and before it reports back: the tiers'
    summaries, written to a recorder and sent with the worker's output. (The worker's own terminal
    summary, later, runs them again, unseen.)"""
    yield
    config = session.config
    if not _is_worker(config) and _durations and getattr(config, "cache", None) is not None:
        config.cache.set(DURATIONS_KEY, {**_last_durations(config), **_durations})
    workeroutput = getattr(config, "workeroutput", None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if workeroutput is None or reporter is None:
        return
    plugins = config.pluginmanager.get_plugins()
    tiers = [plugin for plugin in plugins if _is_tier_conftest(plugin)]
    if not tiers:
        return
    recorder = _Recorder(reporter)
    summaries = config.pluginmanager.subset_hook_caller(
        "pytest_terminal_summary", remove_plugins=[plugin for plugin in plugins if plugin not in tiers]
    )
    summaries(terminalreporter=recorder, exitstatus=session.exitstatus, config=config)
    workeroutput["tests_summary"] = recorder.calls


def _is_tier_conftest(plugin: object) -> bool:
    """A conftest under tests/ (not the top one) with a terminal summary of its own."""
    path = Path(str(getattr(plugin, "__file__", "") or "/"))
    return (
        path.name == "conftest.py"
        and path.parent != TESTS
        and path.is_relative_to(TESTS)
        and hasattr(plugin, "pytest_terminal_summary")
    )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """In the controller: what the workers' tiers wrote."""
    for name, args, kwargs in _relayed:
        getattr(terminalreporter, name)(*args, **kwargs)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    _relayed.extend(getattr(node, "workeroutput", {}).get("tests_summary", []))
