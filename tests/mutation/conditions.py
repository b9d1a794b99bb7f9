"""The store's condition expressions, read from its source, and the mutants that remove them.

Conditions are found by parsing ``store/*.py``, not listed by hand, so a condition added to
the store is mutated without anyone remembering to add it here. Every ``ConditionExpression``
key (in a dict literal) or keyword argument must be a string literal, or a name whose every
assignment in the enclosing function is a string literal (``session_switch`` picks one of two);
anything else (an f-string, a condition built at run time) stops the run with its location, as
does any spelling of ``ConditionExpression`` the parser did not account for.

A mutant removes a condition, or one conjunct of a top-level ``AND``, by making it always true:
``C`` becomes ``((C) OR attribute_not_exists(mutantNeverSet))``. That is the same write as with
``C`` deleted (an update still creates a missing item, a put still overwrites), while every
``:value`` and ``#name`` it uses stays used: DynamoDB refuses a request that defines a value
its expressions never use, so deleting the text would fail for that reason, not for the one
under test.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

KEY = "ConditionExpression"
NEVER_SET = "mutantNeverSet"


class UnreadableCondition(Exception):
    """A condition the script cannot mutate: it must be a literal for the check to cover it."""


@dataclass(frozen=True)
class Site:
    """One condition expression in the source: the literal that holds it."""

    path: Path
    function: str
    line: int
    start: int  # byte offsets of the string literal in the file
    end: int
    expression: str

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line} {self.function}"


@dataclass(frozen=True)
class Mutant:
    site: Site
    dropped: str  # the condition or conjunct removed
    expression: str  # the site's expression as mutated

    @property
    def kind(self) -> str:
        return "remove condition" if self.dropped == self.site.expression else "drop conjunct"

    @property
    def name(self) -> str:
        return f"{self.site.where}: {self.kind} [{self.dropped}]"

    def apply(self, source: bytes) -> bytes:
        """``source`` (the site's file) with the site's literal replaced by the mutant's."""
        literal = _literal(source[self.site.start : self.site.end])
        if literal != self.site.expression:
            raise UnreadableCondition(f"{self.site.where}: the source changed since it was read")
        return source[: self.site.start] + repr(self.expression).encode() + source[self.site.end :]


def _literal(segment: bytes) -> str:
    try:
        value = ast.literal_eval(segment.decode())
    except (SyntaxError, ValueError):
        value = None
    if not isinstance(value, str):
        raise UnreadableCondition(f"not a string literal: {segment!r}")
    return value


def conjuncts(expression: str) -> list[str]:
    """The operands of the expression's top-level ``AND`` (one item when there is none).

    ``AND`` inside parentheses, or the one of ``BETWEEN :a AND :b``, does not split."""
    parts: list[str] = []
    depth = 0
    between = False
    start = 0
    for token in re.finditer(r"[#:]?\w+|\S", expression):
        word = token.group()
        if word == "(":
            depth += 1
        elif word == ")":
            depth -= 1
        elif depth == 0 and word.upper() == "BETWEEN":
            between = True
        elif depth == 0 and word.upper() == "AND":
            if between:
                between = False
                continue
            parts.append(expression[start : token.start()].strip())
            start = token.end()
    parts.append(expression[start:].strip())
    if any(not p for p in parts) or depth != 0:
        raise UnreadableCondition(f"cannot split {expression!r}")
    return parts


def always_true(condition: str) -> str:
    """``condition`` made always true. DynamoDB refuses redundant parentheses, so a condition
    that is already one parenthesised group is not wrapped in a second pair (a mutant that
    DynamoDB refuses as invalid would fail every test and prove nothing)."""
    inner = condition if _wrapped(condition) else f"({condition})"
    return f"({inner} OR attribute_not_exists({NEVER_SET}))"


def _wrapped(condition: str) -> bool:
    """Whether ``condition`` is one group: ``(...)`` whose opening parenthesis closes at its end."""
    text = condition.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for i, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and i < len(text) - 1:
            return False
    return True


def mutants_of(site: Site) -> list[Mutant]:
    """The whole condition removed, and, for a conjunction, each conjunct dropped in turn."""
    found = [Mutant(site, site.expression, always_true(site.expression))]
    parts = conjuncts(site.expression)
    if len(parts) > 1:
        for i, part in enumerate(parts):
            mutated = [always_true(p) if j == i else p for j, p in enumerate(parts)]
            found.append(Mutant(site, part, " AND ".join(mutated)))
    return found


def _line_offsets(source: bytes) -> list[int]:
    offsets = [0]
    for line in source.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _spellings(source: bytes) -> int:
    """How many times the code (not comments or docstrings) names ``ConditionExpression``."""
    return sum(
        (tok.type == tokenize.NAME and tok.string == KEY)
        or (tok.type == tokenize.STRING and tok.string.strip("\"'") == KEY)
        for tok in tokenize.tokenize(io.BytesIO(source).readline)
    )


def sites_in(path: Path) -> list[Site]:
    """Every condition expression in one module."""
    source = path.read_bytes()
    tree = ast.parse(source, filename=str(path))
    offsets = _line_offsets(source)
    found: list[Site] = []
    used = 0

    def site(node: ast.expr, function: ast.FunctionDef | None) -> Site:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.end_lineno is not None and node.end_col_offset is not None
            start = offsets[node.lineno - 1] + node.col_offset
            end = offsets[node.end_lineno - 1] + node.end_col_offset
            return Site(path, function.name if function else "<module>", node.lineno, start, end, node.value)
        raise UnreadableCondition(f"{path.name}:{node.lineno}: {KEY} is not a string literal")

    def values(node: ast.expr, function: ast.FunctionDef | None) -> list[Site]:
        if isinstance(node, ast.Name) and function is not None:
            assigned = [
                n.value
                for n in ast.walk(function)
                if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets)
            ]
            rebound = [
                n
                for n in ast.walk(function)
                if isinstance(n, (ast.AugAssign, ast.AnnAssign))
                and isinstance(n.target, ast.Name)
                and n.target.id == node.id
            ]
            if not assigned or rebound:
                raise UnreadableCondition(f"{path.name}:{node.lineno}: cannot follow {node.id!r} to literals")
            return [site(value, function) for value in assigned]
        return [site(node, function)]

    def visit(node: ast.AST, function: ast.FunctionDef | None) -> None:
        nonlocal used
        if isinstance(node, ast.FunctionDef):
            function = node
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == KEY:
                    used += 1
                    found.extend(values(value, function))
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == KEY:
                    used += 1
                    found.extend(values(keyword.value, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    if used != _spellings(source):
        raise UnreadableCondition(
            f"{path.name}: names {KEY} {_spellings(source)} times, {used} of them as a dict key or keyword"
        )
    return sorted(found, key=lambda s: s.start)


def sites(store_dir: Path) -> list[Site]:
    return [s for path in sorted(store_dir.glob("*.py")) for s in sites_in(path)]


def reached_by(site: Site, store_dir: Path) -> set[tuple[str, str]]:
    """The store functions whose calls evaluate ``site``, as (aggregate module, name): its own
    function and, transitively, every store function that calls one of them."""
    calls: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for path in sorted(store_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.FunctionDef):
                calls.setdefault((path.stem, node.name), set()).update(called_names(node, path.stem))
    names = {(site.path.stem, site.function)}
    while more := {name for name, called in calls.items() if called & names} - names:
        names |= more
    return names


def called_names(node: ast.AST, module: str = "") -> set[tuple[str, str]]:
    """What ``node`` calls, as (module, name): ``f(...)`` and ``self.f(...)`` in ``module``,
    ``x.table.f(...)`` or ``store.chats.f(...)`` in the module the attribute names."""
    found: set[tuple[str, str]] = set()
    for inner in ast.walk(node):
        if not isinstance(inner, ast.Call):
            continue
        func = inner.func
        if isinstance(func, ast.Name):
            found.add((module, func.id))
        elif isinstance(func, ast.Attribute):
            owner = func.value
            if isinstance(owner, ast.Name) and owner.id == "self":
                found.add((module, func.attr))
            elif isinstance(owner, ast.Attribute):
                found.add((owner.attr, func.attr))
    return found
