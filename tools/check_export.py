"""Fail if mylib/ differs from what `nbdev_export` generates from the notebooks (without touching the checkout)."""
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path

root = Path(__file__).resolve().parent.parent

def tree(d):
    return {p.relative_to(d) for p in d.rglob('*.py') if '__pycache__' not in p.parts}

with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    shutil.copy(root/'settings.ini', tmp)
    shutil.copytree(root/'nbs', tmp/'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints', '*.png', 'data'))
    (tmp/'mylib').mkdir()
    if (root/'mylib'/'__init__.py').exists(): shutil.copy(root/'mylib'/'__init__.py', tmp/'mylib')
    nbdev_export = Path(sys.executable).parent/'nbdev_export'
    subprocess.run([str(nbdev_export)], cwd=tmp, check=True)
    want, have = tree(tmp/'mylib'), tree(root/'mylib')
    problems = [f'missing from mylib/: {p}' for p in sorted(want - have)]
    problems += [f'in mylib/ but not exported by any notebook: {p}' for p in sorted(have - want)]
    problems += [f'differs from its notebooks: mylib/{p}' for p in sorted(want & have)
                 if not filecmp.cmp(tmp/'mylib'/p, root/'mylib'/p, shallow=False)]
if problems:
    print('\n'.join(problems))
    sys.exit('check-export: mylib/ is not what the notebooks export. Edit the notebooks (never mylib/ by hand), '
             'then run `make export` and commit both.')
print(f'check-export: mylib/ matches the notebooks ({len(want)} modules)')
