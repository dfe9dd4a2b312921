"""Edit notebooks as plain text: `to-py` writes a notebook's cells as a percent-format script, `to-nb` builds
a notebook (sources only, no outputs) from one. Cells start with `# %%` (code) or `# %% [md]` (markdown);
markdown lines are written as comments (`# text`), as jupytext does. `to-nb` over an existing notebook keeps the
outputs of the code cells whose source did not change (the others are left empty until the notebook is run).

    python tools/nbsrc.py to-py nbs/01_matmul.ipynb > /tmp/01.py
    python tools/nbsrc.py to-nb /tmp/01.py nbs/01_matmul.ipynb
"""
import hashlib, json, sys
from pathlib import Path

KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

def to_py(nb_path):
    "The cells of the notebook at `nb_path` as percent-format text."
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb['cells']:
        head = '# %% [md]' if c['cell_type'] == 'markdown' else '# %%'
        src = ''.join(c['source']).rstrip('\n')
        if c['cell_type'] == 'markdown': src = '\n'.join(('# ' + l).rstrip() for l in src.splitlines())
        parts.append(head + '\n' + src + '\n')
    return '\n'.join(parts)

def to_nb(text):
    "A notebook dict (no outputs) from percent-format `text`."
    cells, cur = [], None
    for line in text.splitlines():
        if line.startswith('# %%'):
            if cur: cells.append(cur)
            cur = {'type': 'markdown' if '[md]' in line else 'code', 'lines': []}
        elif cur is not None: cur['lines'].append(line)
    if cur: cells.append(cur)
    out, seen = [], set()
    for c in cells:
        lines = c['lines']
        if c['type'] == 'markdown': lines = [l[2:] if l.startswith('# ') else l.lstrip('#') for l in lines]
        src = '\n'.join(lines).strip('\n')
        cid = hashlib.sha1(src.encode()).hexdigest()[:8]  # stable ids keep the exported modules stable
        while cid in seen: cid = hashlib.sha1(cid.encode()).hexdigest()[:8]
        seen.add(cid)
        cell = {'cell_type': c['type'], 'id': cid, 'metadata': {}, 'source': src.splitlines(keepends=True)}
        if c['type'] == 'code': cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return {'cells': out, 'metadata': {'kernelspec': KERNEL}, 'nbformat': 4, 'nbformat_minor': 5}

def keep_outputs(nb, old):
    "Give each code cell of `nb` the outputs of the cell in `old` with the same source, if there is one."
    outs = {''.join(c['source']): c for c in old['cells'] if c['cell_type'] == 'code'}
    for c in nb['cells']:
        o = outs.get(''.join(c['source']))
        if c['cell_type'] == 'code' and o is not None:
            c['outputs'], c['execution_count'] = o.get('outputs', []), o.get('execution_count')

if __name__ == '__main__':
    cmd, *args = sys.argv[1:]
    if cmd == 'to-py': sys.stdout.write(to_py(args[0]))
    elif cmd == 'to-nb':
        dest = Path(args[1])
        nb = to_nb(Path(args[0]).read_text())
        if dest.exists(): keep_outputs(nb, json.loads(dest.read_text()))
        dest.write_text(json.dumps(nb, indent=1) + '\n')
    else: raise SystemExit(__doc__)
