"""The mutation check's reading of the store: it must find every condition, and its mutants
must be the store's code with exactly one condition or conjunct made always true."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutation.conditions import (
    NEVER_SET,
    UnreadableCondition,
    always_true,
    conjuncts,
    mutants_of,
    sites,
    sites_in,
)

STORE = Path(__file__).resolve().parents[2] / "layers/common/python/chat_sessions/store"


def test_conjuncts_split_on_top_level_and_only() -> None:
    assert conjuncts("a = :a AND b = :b") == ["a = :a", "b = :b"]
    assert conjuncts("(a = :a AND b = :b) OR c = :c") == ["(a = :a AND b = :b) OR c = :c"]
    assert conjuncts("n BETWEEN :lo AND :hi AND #and = :x") == ["n BETWEEN :lo AND :hi", "#and = :x"]
    assert conjuncts("attribute_exists(PK) and size(x) > :n") == ["attribute_exists(PK)", "size(x) > :n"]
    with pytest.raises(UnreadableCondition):
        conjuncts("a = :a AND")


def test_a_mutant_adds_no_redundant_parentheses() -> None:
    """DynamoDB refuses an expression with redundant parentheses: a mutant wrapped twice would be
    refused as invalid, fail every test that reaches it, and be counted caught for nothing."""
    assert always_true("a = :a") == f"((a = :a) OR attribute_not_exists({NEVER_SET}))"
    assert always_true("(a = :a OR b = :b)") == f"((a = :a OR b = :b) OR attribute_not_exists({NEVER_SET}))"
    assert always_true("(a = :a) OR (b = :b)") == f"(((a = :a) OR (b = :b)) OR attribute_not_exists({NEVER_SET}))"


def test_every_condition_in_the_store_is_found() -> None:
    """Each file's count of ``ConditionExpression`` in code equals the conditions read (checked
    inside ``sites_in``), and a name bound to two literals yields both."""
    found = sites(STORE)
    assert found, "no condition found in the store"
    by_function = {(s.path.name, s.function) for s in found}
    assert ("chats.py", "session_switch") in by_function
    assert len([s for s in found if s.function == "session_switch"]) == 2


def test_each_mutant_is_the_source_with_one_condition_made_always_true(tmp_path: Path) -> None:
    for site in sites(STORE):
        original = [s.expression for s in sites_in(site.path)]
        parts = conjuncts(site.expression)
        mutants = mutants_of(site)
        assert len(mutants) == (1 if len(parts) == 1 else 1 + len(parts))
        for mutant in mutants:
            copy = tmp_path / site.path.name
            copy.write_bytes(mutant.apply(site.path.read_bytes()))
            mutated = [s.expression for s in sites_in(copy)]
            changed = [(a, b) for a, b in zip(original, mutated, strict=True) if a != b]
            assert changed == [(site.expression, mutant.expression)]
            assert mutant.expression.count(NEVER_SET) == 1
            assert len(conjuncts(mutant.expression)) == (1 if mutant.kind == "remove condition" else len(parts))


def test_a_condition_built_at_run_time_stops_the_check(tmp_path: Path) -> None:
    module = tmp_path / "built.py"
    module.write_text('def op(field: str) -> dict[str, str]:\n    return {"ConditionExpression": f"{field} = :v"}\n')
    with pytest.raises(UnreadableCondition):
        sites_in(module)
    module.write_text('KEY = "ConditionExpression"\n\ndef op() -> dict[str, str]:\n    return {KEY: "a = :a"}\n')
    with pytest.raises(UnreadableCondition):
        sites_in(module)
