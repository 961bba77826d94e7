"""Each device/cloud contract has exactly one definition, in edge/contracts/, and every side imports it.

Scans the product's source (edge, flows, hub, simulator, edgeloop, bench; not tests) as text and as
syntax trees, and fails naming the file and line when something re-declares a contract: a pattern
(channel, device id, sha256 batch id, model version), a release file name (``manifest.json``,
``model.onnx``), a TUF target path prefix, a top-level constant of the same name as one in
edge/contracts, the ``UserError`` class, the JSON integer limit, or another implementation of the
decision rule. Each check is proven to bite on a snippet the way the old, duplicated code wrote it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.contracts import decision, names, release_layout, wire
from edgeloop.testkit.project import REPO

PRODUCT = ("edge", "flows", "hub", "simulator", "edgeloop", "bench")
CONTRACTS = REPO / "edge" / "contracts"

# (what, regex over string constants in code (docstrings excluded), the one module allowed to hold it)
PATTERN_TEXTS: list[tuple[str, str, str]] = [
    ("channel pattern", re.escape("[a-z0-9][a-z0-9_-]{0,31}"), "names.py"),
    ("device id pattern", re.escape("[A-Za-z0-9][A-Za-z0-9._-]{0,63}"), "names.py"),
    ("sha256 / batch id pattern", re.escape("[0-9a-f]{64}"), "names.py"),
    ("model version pattern", re.escape("[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"), "names.py"),
    ("runner version pattern", re.escape(r"[0-9]+(\.[0-9]+){0,3}"), "names.py"),
]
# (what, regex over the source of expressions, the one module allowed to hold it)
EXPRESSIONS: list[tuple[str, str, str]] = [
    ("JSON integer limit", r"2 \*\* 53", "wire.py"),
    # the decision rule: a probability compared with the decision threshold
    ("decision rule", r"(prob\w*|positive)\b.*>=.*threshold", "decision.py"),
]
# string constants (not docstrings) that only the contracts may spell out
LITERALS: list[tuple[str, str]] = [
    (release_layout.MANIFEST_FILE, "release_layout.py"),
    (release_layout.MODEL_FILE, "release_layout.py"),
    (wire.IDEMPOTENCY_KEY, "wire.py"),
]
PREFIXES: list[tuple[str, str]] = [("channels/", "release_layout.py"), ("bundles/", "release_layout.py")]


def product_files() -> Iterator[Path]:
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            if CONTRACTS not in path.parents:
                yield path


def contract_constants() -> dict[str, str]:
    """UPPER_CASE names assigned at the top level of a contracts module -> that module."""
    found: dict[str, str] = {}
    for path in sorted(CONTRACTS.glob("*.py")):
        for name in _top_level_constants(ast.parse(path.read_text())):
            found[name] = path.name
    return found


def _top_level_constants(tree: ast.Module) -> Iterator[str]:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and re.fullmatch(r"_?[A-Z][A-Z0-9_]+", target.id):
                yield target.id.lstrip("_")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _strings(tree: ast.AST) -> Iterator[ast.Constant]:
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def pattern_violations(text: str, where: str) -> list[str]:
    """Contract patterns in string constants, and contract expressions (limits, the decision rule)."""
    tree = ast.parse(text)
    out = []
    for node in _strings(tree):
        for what, regex, _ in PATTERN_TEXTS:
            if re.search(regex, node.value):
                out.append(f"{where}:{node.lineno}: {what} re-declared: {node.value!r}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare | ast.BinOp):
            source = ast.unparse(node)
            for what, regex, _ in EXPRESSIONS:
                if re.search(regex, source):
                    out.append(f"{where}:{node.lineno}: {what} re-declared: {source}")
    return out


def syntax_violations(text: str, where: str, constants: dict[str, str]) -> list[str]:
    tree = ast.parse(text)
    out = []
    for node in _strings(tree):
        for literal, home in LITERALS:
            if node.value == literal:
                out.append(f"{where}:{node.lineno}: {literal!r} spelled out (use edge/contracts/{home})")
        for prefix, home in PREFIXES:
            if node.value.startswith(prefix):
                out.append(f"{where}:{node.lineno}: {prefix!r} target path built here (use edge/contracts/{home})")
    for name in _top_level_constants(tree):
        if name in constants:
            out.append(f"{where}: constant {name} re-declared (defined in edge/contracts/{constants[name]})")
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "UserError":
            out.append(f"{where}:{node.lineno}: class UserError re-declared (edge/contracts/errors.py)")
    return out


def test_every_contract_is_defined_once_in_edge_contracts() -> None:
    constants = contract_constants()
    problems: list[str] = []
    for path in product_files():
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(REPO))
        problems += pattern_violations(text, where)
        problems += syntax_violations(text, where, constants)
    assert not problems, "\n".join(problems)


def test_the_contracts_themselves_hold_each_definition_once() -> None:
    homes: dict[str, set[str]] = {}
    for path in sorted(CONTRACTS.glob("*.py")):
        for problem in pattern_violations(path.read_text(), path.name):
            what = problem.split(": ", 1)[1].split(" re-declared")[0]
            homes.setdefault(what, set()).add(path.name)
    for what, _, home in [*PATTERN_TEXTS, *EXPRESSIONS]:
        assert homes.get(what) == {home}, (what, homes.get(what))
    seen: dict[str, str] = {}
    for path in sorted(CONTRACTS.glob("*.py")):
        for name in _top_level_constants(ast.parse(path.read_text())):
            assert name not in seen, f"{name} in both {seen[name]} and {path.name}"
            seen[name] = path.name


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [  # the way the duplicated code wrote each contract before it moved to edge/contracts
        ('_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")\n', "channel pattern"),
        ('KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")\n', "sha256 / batch id pattern"),
        ('MANIFEST_FILE = "manifest.json"\n', "constant MANIFEST_FILE re-declared"),
        ('path = folder / "model.onnx"\n', "'model.onnx' spelled out"),
        ('target = f"channels/{channel}.json"\n', "'channels/' target path"),
        ("MAX_JSON_INT = 2**53 - 1\n", "JSON integer limit"),
        ("class UserError(Exception):\n    pass\n", "class UserError re-declared"),
        ("r = positive if probs[positive] >= self._threshold else 1 - positive\n", "decision rule"),
        ("above = probs[:, positive].astype(np.float64) >= self._threshold\n", "decision rule"),
        ("chosen = np.where(positive >= threshold, positive_index, negative_index)\n", "decision rule"),
        ('headers = {"Idempotency-Key": key}\n', "'Idempotency-Key' spelled out"),
    ],
)
def test_each_check_bites_on_a_re_declaration(snippet: str, expected: str) -> None:
    where = "scratch.py"
    found = pattern_violations(snippet, where) + syntax_violations(snippet, where, contract_constants())
    assert any(expected in problem for problem in found), found


def test_the_checked_values_are_the_contracts_values() -> None:
    assert names.CHANNEL_PATTERN.match("stable") and not names.CHANNEL_PATTERN.match("Stable")
    assert names.BATCH_ID_PATTERN.match("a" * 64) and not names.BATCH_ID_PATTERN.match("A" * 64)
    assert wire.MAX_JSON_INT == 2**53 - 1
    assert decision.decide_one([0.4, 0.6], 1, 0.6) == 1 and decision.decide_one([0.41, 0.59], 1, 0.6) == 0
    assert decision.decide_one([0.2, 0.5, 0.3], None, 0.5) == 1
