"""The README's code blocks, run as written, in order, in one namespace (as a reader pastes them into one session).
Only the size of the work is cut, as quick mode cuts the notebooks': every pass of `Learner.fit` over a loader stops
after two batches, `get_image_folder` gives a tree of the real images' first 40 per class and split (their file names,
so `fashion_valid_rows` still picks the held-out ones), and `lm_corpus` the first reviews of each split. The blocks
check names, imports, signatures and shapes, not accuracy. Files they save go to a temporary directory."""
import itertools, re
from pathlib import Path
import pytest
from mylib.learner import Learner

README = Path(__file__).resolve().parent.parent/'README.md'

def python_blocks(text):
    "The bodies of the ```python blocks of `text`, in order."
    return re.findall(r'^```python\n(.*?)^```', text, flags=re.S | re.M)

def test_readme_has_python_blocks():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3 and blocks[0].startswith('from mylib.all import *')

def two_batches(self):
    "Learner.all_batches over the first two batches of the loader only."
    self.iters = min(2, len(self.dl))
    for i, (xb, yb) in enumerate(itertools.islice(self.dl, 2)): self.one_batch(i, xb, yb)

@pytest.fixture
def readme(tmp_path, monkeypatch):
    "The README's blocks, a namespace holding only the first block's imports, training cut to two batches per pass, in a temporary directory."
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Learner, 'all_batches', two_batches)
    blocks = python_blocks(README.read_text())
    imports = ''.join(l for l in blocks[0].splitlines(True) if l.startswith(('from ', 'import ')))
    assert 'from mylib.all import *' in imports, 'the first README block should hold the imports the others rely on'
    ns = {}
    exec(imports, ns)
    real_folder, real_corpus = ns['get_image_folder'], ns['lm_corpus']
    ns['get_image_folder'] = lambda name, **kw: small_tree(real_folder(name, **kw), tmp_path/'tree')
    ns['lm_corpus'] = lambda name, **kw: tuple(texts[:n] for texts, n in zip(real_corpus(name, **kw), (400, 100)))
    return blocks, ns, tmp_path

def small_tree(root, dest, n=40):
    "A copy of the image tree `root` (split/class/file) as links to the first `n` files of each class folder of each split."
    for folder in sorted(p for p in root.glob('*/*') if p.is_dir()):
        out = dest/folder.relative_to(root)
        out.mkdir(parents=True)
        for f in sorted(folder.iterdir())[:n]: (out/f.name).symlink_to(f)
    return dest

def run_block(blocks, ns, i):
    try: exec(compile(blocks[i], f'README.md, python block {i + 1}', 'exec'), ns)
    except Exception as e: pytest.fail(f'README python block {i + 1} failed: {type(e).__name__}: {e}')

@pytest.mark.time_limit(60)  # the whole of Fashion-MNIST, normalized
def test_readme_block_1_trains_and_saves_a_cnn(readme):
    blocks, ns, tmp = readme
    run_block(blocks, ns, 0)
    assert (tmp/'model.pth').exists() and ns['learn'].avg_stats.valid_stats.count > 0

@pytest.mark.time_limit(60)
def test_readme_block_2_trains_and_scores_an_xresnet(readme):
    blocks, ns, _ = readme
    run_block(blocks, ns, 1)
    assert ns['probs'].shape == (len(ns['test_dl'].dataset), 10) and len(ns['targets']) == len(ns['probs'])

@pytest.mark.time_limit(60)
def test_readme_block_3_pretrains_and_saves_a_language_model(readme):
    blocks, ns, tmp = readme
    run_block(blocks, ns, 2)
    assert (tmp/'imdb_lm.pt').exists()
    assert len(blocks) == 3, 'a new README python block: give it a test here'
