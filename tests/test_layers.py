# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The package's layers: which sub-package may import which (docs/architecture.md, "Layers").

Every module is parsed with ``ast`` (no import runs), and every import of the package's own
modules, lazy ones inside functions included, is checked against ``ALLOWED``.
"""
import ast
import os
from typing import Iterator, List, Tuple

from tests import REPO_ROOT

PACKAGE_DIR = os.path.join(REPO_ROOT, 'datadog_checks', 'host_profiler')
PACKAGE = 'datadog_checks.host_profiler'

# Sub-package -> the sub-packages it may import. host is the bottom layer; the data flows
# receiver -> profile -> processors -> exporters, with symbols, unwind, runtimes (language
# runtimes) and runtime (the profiler's own telemetry and support) beside it. The top-level
# modules (check.py, cli.py, profiler_pipeline.py, __main__.py) wire everything and may import anything.
# __about__ (the version) may be imported from anywhere.
ALLOWED = {
    'host': set(),
    'config_models': set(),
    'profile': {'host'},
    'unwind': {'host'},
    'symbols': {'host', 'profile'},
    'runtimes': {'host', 'profile', 'symbols'},
    'runtime': {'host'},
    'config': {'config_models', 'runtime', 'exporters'},  # exporters: its registry only
    'processors': {'profile', 'runtime'},
    'exporters': {'profile', 'runtime'},
    'uploader': {'host', 'symbols', 'runtime'},
    'receiver': {'host', 'unwind', 'symbols', 'runtimes', 'runtime', 'profile'},
}
ANYONE_MAY_IMPORT = {'__about__'}
TOP_LEVEL_MODULES = {'__init__', '__main__', 'check', 'cli', 'profiler_pipeline', '__about__'}


def package_modules() -> Iterator[Tuple[str, List[str]]]:
    """(path relative to the package, module name parts relative to the package)."""
    for dirpath, dirnames, filenames in os.walk(PACKAGE_DIR):
        dirnames[:] = [d for d in dirnames if d != '__pycache__']
        for name in filenames:
            if name.endswith('.py'):
                rel = os.path.relpath(os.path.join(dirpath, name), PACKAGE_DIR)
                yield rel, rel[:-3].split(os.sep)


def imported_subpackages(source: str, rel: str, parts: List[str]) -> List[Tuple[int, str, str]]:
    """(line, first component under the package, import as written) for each import of the package."""
    return sorted(_imports(ast.parse(source, rel), rel, parts))


def _imports(tree: ast.AST, rel: str, parts: List[str]) -> Iterator[Tuple[int, str, str]]:
    here = parts[:-1]  # the package this module is in, relative to the root package
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + '.'):
                    yield node.lineno, alias.name.split('.')[2], 'import ' + alias.name
        elif isinstance(node, ast.ImportFrom):
            written = 'from {}{} import {}'.format(
                '.' * node.level, node.module or '', ', '.join(a.name for a in node.names)
            )
            if node.level:
                up = node.level - 1
                assert up <= len(here), '{}:{}: relative import leaves the package: {}'.format(rel, node.lineno, written)
                base = here[: len(here) - up]
                target = base + (node.module.split('.') if node.module else [])
                if target:
                    yield node.lineno, target[0], written
                else:  # 'from .. import x' at the root: x is the sub-package
                    for alias in node.names:
                        yield node.lineno, alias.name, written
            elif node.module and (node.module + '.').startswith(PACKAGE + '.'):
                rest = node.module.split('.')[2:]
                for target in [rest[0]] if rest else [a.name for a in node.names]:
                    yield node.lineno, target, written


def layer_violations() -> List[str]:
    problems = []
    for rel, parts in package_modules():
        if len(parts) == 1:
            assert parts[0] in TOP_LEVEL_MODULES, (
                'new top-level module {}: put it in a sub-package or add it to TOP_LEVEL_MODULES'.format(rel)
            )
            continue
        layer = parts[0]
        assert layer in ALLOWED, 'new sub-package {!r} ({}): add its layer to ALLOWED in tests/test_layers.py ' \
            'and to docs/architecture.md'.format(layer, rel)
        with open(os.path.join(PACKAGE_DIR, rel), encoding='utf-8') as f:
            source = f.read()
        for line, target, written in imported_subpackages(source, rel, parts):
            if target == layer or target in ANYONE_MAY_IMPORT or target in ALLOWED[layer]:
                continue
            problems.append(
                '{}:{}: {!r} imports {!r} ({}); {} may import only {}'.format(
                    rel, line, layer, target, written, layer, sorted(ALLOWED[layer] | ANYONE_MAY_IMPORT)
                )
            )
    return problems


def test_every_import_follows_the_layers():
    problems = layer_violations()
    assert not problems, 'imports against the layers (docs/architecture.md, "Layers"):\n' + '\n'.join(problems)


def test_the_layers_have_no_other_loop():
    """The allowed directions form no cycle."""
    edges = {(a, b) for a, bs in ALLOWED.items() for b in bs}

    def reaches(start, goal, seen=()):
        return any(b == goal or (b not in seen and reaches(b, goal, seen + (b,))) for a, b in edges if a == start)

    loops = sorted(a for a in ALLOWED if reaches(a, a))
    assert not loops, 'layers that reach themselves through ALLOWED: {}'.format(loops)


def test_the_checker_sees_upward_imports():
    """The parser resolves relative and absolute imports, lazy ones included (guards the guard)."""
    parts = ['unwind', 'example']
    source = (
        'from ..receiver.kernel import boot_id\n'
        'from .. import receiver\n'
        'import datadog_checks.host_profiler.receiver.processes\n'
        'def f():\n'
        '    from datadog_checks.host_profiler.symbols import elf\n'
        'from . import memo\n'
        'from ..host.proc import maps_dev\n'
    )
    found = imported_subpackages(source, 'unwind/example.py', parts)
    assert [(line, target) for line, target, _ in found] == [
        (1, 'receiver'), (2, 'receiver'), (3, 'receiver'), (5, 'symbols'), (6, 'unwind'), (7, 'host')
    ]


# What only one module of the host layer does (issue #15: "one ELF library", one resolver from a
# mapping to a file, one vDSO cache, one byte-budget cache): module (relative to the package) ->
# the checks no other module may match.
def _docstrings(tree: ast.AST) -> set:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _host_only_findings(tree: ast.AST) -> Iterator[Tuple[str, int, str]]:
    """(owner module, line, what) for each thing in ``tree`` that only ``owner`` may do."""
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docs:
            if isinstance(node.value, bytes) and node.value.startswith(b'\x7fELF'):
                yield 'host/elf.py', node.lineno, 'the ELF magic (parse with host.elf)'
            if isinstance(node.value, str) and 'map_files/' in node.value:
                yield 'host/files.py', node.lineno, 'a map_files path (FileOpener.open_mapping / map_files_path)'
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and
                                                     node.module else [])
            if any(n.startswith('elftools.elf') for n in names):
                yield 'host/elf.py', node.lineno, 'pyelftools ELF parsing (host.elf reads ELF; DWARF may use elftools)'
            if 'read_vdso_image' in names:
                yield 'host/proc.py', node.lineno, 'the vDSO read (host.proc.vdso_image caches it once per boot)'
        elif isinstance(node, ast.ClassDef) and node.name == 'ByteLRU':
            yield 'host/budget.py', node.lineno, 'a byte-budget LRU (share host.budget.ByteLRU)'
        elif isinstance(node, ast.FunctionDef) and node.name in ('split_memory_budget', 'read_uleb', 'read_sleb',
                                                                 '_uleb', '_sleb'):
            owner = 'host/budget.py' if node.name == 'split_memory_budget' else 'host/elf.py'
            yield owner, node.lineno, 'a second {}'.format(node.name)


def test_one_elf_library_one_resolver_one_vdso_cache_one_byte_cache():
    problems = []
    for rel, _parts in package_modules():
        with open(os.path.join(PACKAGE_DIR, rel), encoding='utf-8') as f:
            tree = ast.parse(f.read(), rel)
        for owner, line, what in _host_only_findings(tree):
            if rel.replace(os.sep, '/') != owner and not (owner == 'host/proc.py' and rel.startswith('host')):
                problems.append('{}:{}: {}; only {} does that'.format(rel, line, what, owner))
    assert not problems, '\n'.join(problems)


def test_the_host_only_checker_sees_them():
    source = (
        'from elftools.elf.elffile import ELFFile\n'
        'MAGIC = b"\\x7fELF"\n'
        'def f(pid):\n'
        '    """map_files/ in a docstring is fine"""\n'
        '    return "/proc/%d/map_files/" % pid\n'
        'from ..host.proc import read_vdso_image\n'
        'class ByteLRU:\n'
        '    pass\n'
        'def _uleb(d, p):\n'
        '    pass\n'
    )
    found = sorted((line, owner) for owner, line, _ in _host_only_findings(ast.parse(source)))
    assert found == [(1, 'host/elf.py'), (2, 'host/elf.py'), (5, 'host/files.py'), (6, 'host/proc.py'),
                     (7, 'host/budget.py'), (9, 'host/elf.py')]


def test_host_imports_nothing_above_it():
    assert ALLOWED['host'] == set()
    for rel, parts in package_modules():
        if parts[0] == 'host':
            with open(os.path.join(PACKAGE_DIR, rel), encoding='utf-8') as f:
                found = imported_subpackages(f.read(), rel, parts)
            assert all(target == 'host' or target in ANYONE_MAY_IMPORT for _, target, _ in found), (rel, found)
