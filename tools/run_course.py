"""`make course`: run every notebook in order on the full data, keep the outputs, export, clean, report.

    python tools/run_course.py                 # every notebook
    python tools/run_course.py 03_minibatch_training 04_callbacks   # only these (results.json is merged)

Each notebook reports its headline numbers with `mylib.core.record_result`, which writes to the file named by
`MYLIB_RESULTS`; this script points that at a fresh file per notebook and gathers them into results.json and the
README's results table.
"""
import json, os, subprocess, sys, tempfile, time
from pathlib import Path
import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

root = Path(__file__).resolve().parent.parent
nbs = root/'nbs'
bindir = Path(sys.executable).parent

def run_notebook(path):
    "Execute the notebook at `path` in place (full mode); returns (seconds, headline metrics)."
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        res_file = Path(tmp)/'results.json'
        env = {k: v for k, v in os.environ.items() if k != 'MYLIB_QUICK'}
        os.environ.pop('MYLIB_QUICK', None)
        os.environ['MYLIB_RESULTS'] = str(res_file)
        ep = ExecutePreprocessor(timeout=None, kernel_name='python3')
        start = time.perf_counter()
        try: ep.preprocess(nb, {'metadata': {'path': str(nbs)}})
        finally:
            secs = time.perf_counter() - start
            nbformat.write(nb, path)  # keep the outputs, including those up to a failing cell
            os.environ.clear(); os.environ.update(env)
        metrics = json.loads(res_file.read_text()) if res_file.exists() else {}
    return secs, metrics

def results_table(results):
    "The results as a Markdown table."
    lines = ['| notebook | seconds | headline |', '|---|---:|---|']
    for name, r in results.items():
        head = ', '.join(f'{k} = {v}' for k, v in r.items() if k != 'seconds')
        lines.append(f'| {name} | {r["seconds"]:.0f} | {head} |')
    return '\n'.join(lines)

def update_readme(table):
    "Put `table` between the results markers in README.md."
    readme = root/'README.md'
    text = readme.read_text()
    start, end = '<!-- results:start -->', '<!-- results:end -->'
    if start in text and end in text:
        pre, rest = text.split(start, 1)
        post = rest.split(end, 1)[1]
        readme.write_text(f'{pre}{start}\n{table}\n{end}{post}')

def main(names):
    paths = sorted(nbs.glob('[0-9]*.ipynb'))
    if names: paths = [p for p in paths if p.stem in names or p.name in names]
    if not paths: sys.exit(f'run_course: no notebooks match {names}')
    subprocess.run([str(bindir/'nbdev_export')], cwd=root, check=True)
    res_path = root/'results.json'
    failed, t0 = [], time.perf_counter()
    for p in paths:
        print(f'running {p.name} ...', flush=True)
        try: secs, metrics = run_notebook(p)
        except Exception as e:  # go on with the others: one failure should not cost the whole run
            failed.append(p.name)
            print(f'{p.name} FAILED: {str(e)[-2000:]}', flush=True)
            continue
        # re-read before writing: another run may have recorded its notebooks meanwhile
        results = json.loads(res_path.read_text()) if res_path.exists() else {}
        results[p.stem] = {'seconds': round(secs, 1), **metrics}
        res_path.write_text(json.dumps(dict(sorted(results.items())), indent=1) + '\n')
        print(f'{p.name}: {secs:.0f}s {metrics}', flush=True)
    subprocess.run([str(bindir/'nbdev_export')], cwd=root, check=True)
    for p in paths: subprocess.run([str(bindir/'nbdev_clean'), '--fname', str(p)], cwd=root, check=True)
    results = dict(sorted(json.loads(res_path.read_text()).items())) if res_path.exists() else {}
    table = results_table(results)
    update_readme(table)
    print('\n' + table)
    print(f'\nmake course: {len(paths)} notebooks in {time.perf_counter() - t0:.0f} s')
    if failed: sys.exit(f'run_course: {", ".join(failed)} failed; outputs up to the failing cell are in the notebook')

if __name__ == '__main__': main(sys.argv[1:])
