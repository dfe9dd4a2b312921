"""The package's shape: one definition of each public name, one-way imports, no class patched after its definition.
These read mylib's modules as text (with `ast`), so they hold for the package as exported, whatever imports it."""
import ast
from pathlib import Path
import pytest

PKG = Path(__file__).resolve().parent.parent/'mylib'
MODS = {p.stem: ast.parse(p.read_text()) for p in sorted(PKG.glob('*.py')) if not p.stem.startswith('_')}

def all_names(tree):
    "The first `__all__ = [...]` of a module (nbdev writes it at the top)."
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '__all__' for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []

def defined(tree):
    return [n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and not n.name.startswith('_')]

def imports(name, tree):
    "The sibling modules `name` imports (relative or `mylib.` imports, anywhere in the module, functions included)."
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.add(node.module.split('.')[0])
            elif node.level == 1: out.update(a.name for a in node.names)
            elif node.module and node.module.startswith('mylib.'): out.add(node.module.split('.')[1])
    return {m for m in out if m in MODS and m != name}

@pytest.mark.parametrize('name', sorted(MODS))
def test_each_name_defined_once_per_module(name):
    names = defined(MODS[name])
    assert sorted({n for n in names if names.count(n) > 1}) == []
    al = all_names(MODS[name])
    assert sorted({n for n in al if al.count(n) > 1}) == [], f'{name}.__all__ lists names twice'

def test_no_name_exported_by_two_modules():
    owners = {}
    for name, tree in MODS.items():
        for n in set(all_names(tree)) & set(defined(tree)): owners.setdefault(n, []).append(name)
    assert {n: ms for n, ms in owners.items() if len(ms) > 1} == {}

def test_import_graph_has_no_cycles():
    edges = {n: imports(n, t) for n, t in MODS.items()}
    state, cycle = {}, []
    def visit(u, path):
        state[u] = 'active'
        for v in sorted(edges[u]):
            if state.get(v) == 'active': cycle.extend(path + [u, v]); return True
            if v not in state and visit(v, path + [u]): return True
        state[u] = 'done'
    for n in sorted(edges):
        if n not in state and visit(n, []): break
    assert cycle == [], 'import cycle: ' + ' -> '.join(cycle)

@pytest.mark.parametrize('name', sorted(MODS))
def test_no_class_patched_after_definition(name):
    patched = [f'{e.value.id}.{e.attr}' for node in MODS[name].body if isinstance(node, ast.Assign)
               for t in node.targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])
               if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id[:1].isupper()]
    assert patched == []

@pytest.mark.parametrize('name', sorted(MODS))
def test_modules_stay_small(name):
    assert len((PKG/f'{name}.py').read_text().splitlines()) <= 400

def test_light_modules_stay_light():
    "Importing the init or norm modules loads neither matplotlib nor a training loop."
    import subprocess, sys
    code = ('import sys, mylib.init, mylib.norm; '
            'print(sorted(m for m in ("matplotlib", "mylib.learner", "mylib.runner", "mylib.stats") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == '[]'

def test_flat_import_gives_the_final_api():
    import mylib.all
    ns = {}
    exec('from mylib.all import *', ns)
    assert {'Learner', 'get_learner', 'one_cycle', 'adam_opt', 'ProgressCallback', 'DataBunch', 'get_data'} <= set(ns)
    assert 'Runner' not in ns and 'Holder' not in ns  # teaching versions stay in mylib.runner
