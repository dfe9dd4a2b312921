"Tests for mylib.core: the test helpers, seeding and quick mode."
# Import the module, not its names: pytest would collect `test`, `test_eq` and `test_near` as tests.
import importlib, os, random, subprocess, sys
import numpy as np
import pytest
import torch

import mylib.core as core
from conftest import run_in_pty

# ---------------------------------------------------------------------------------------------------- test_near

@pytest.mark.parametrize('a,b', [
    (torch.zeros(3), torch.zeros(4)),
    (torch.zeros(2, 3), torch.zeros(3, 2)),
    (torch.zeros(6), torch.zeros(2, 3)),
    (torch.zeros(1, 3), torch.zeros(3)),   # would broadcast; must still be refused
    (np.zeros(3), [0.0, 0.0]),
])
def test_near_shape_mismatch_is_value_error(a, b):
    with pytest.raises(ValueError, match='shapes differ'):
        core.test_near(a, b)

def test_near_shape_message_names_shapes():
    with pytest.raises(ValueError, match=r'\(2, 3\) vs \(3, 2\)'):
        core.test_near(torch.zeros(2, 3), torch.zeros(3, 2))

@pytest.mark.parametrize('a,b', [
    (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1])),
    (torch.tensor([0.0]), torch.tensor([1e-3])),
    (np.array([1.0, 2.0]), np.array([1.0, 3.0])),
    ([1.0, 2.0], [1.0, 2.5]),
    (torch.tensor([1, 2]), torch.tensor([1, 3])),             # integers
    (torch.tensor([float('nan')]), torch.tensor([1.0])),
    (torch.tensor([1.0]), torch.tensor([float('inf')])),
])
def test_near_not_close_is_assertion_error(a, b):
    with pytest.raises(AssertionError, match='not close'):
        core.test_near(a, b)

def test_near_reports_largest_difference():
    with pytest.raises(AssertionError, match=r'largest difference 0\.5'):
        core.test_near(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.5, 3.0]))

@pytest.mark.parametrize('a,b', [
    (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])),
    (torch.tensor([1.0, 1000.0]), torch.tensor([1.0 + 5e-6, 1000.5])),  # within atol, within rtol
    (np.array([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]], dtype=torch.float64)),
    ([1, 2, 3], [1.0, 2.0, 3.0]),
    (torch.tensor([1.0], requires_grad=True) * 2, torch.tensor([2.0])),  # needs no .detach() by the caller
    (torch.tensor(3.0), 3.0),
    (torch.tensor([1.0], dtype=torch.float16), torch.tensor([1.0])),
])
def test_near_accepts_close_values(a, b):
    core.test_near(a, b)

def test_near_tolerances_are_used():
    a, b = torch.tensor([1.0]), torch.tensor([1.1])
    core.test_near(a, b, atol=0.2)
    core.test_near(a, b, atol=0, rtol=0.1)
    with pytest.raises(AssertionError): core.test_near(a, b, atol=0.01, rtol=0.01)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_near_cuda_vs_cpu():
    core.test_near(torch.ones(3, device='cuda'), torch.ones(3))

# ---------------------------------------------------------------------------------------------------- test_eq

@pytest.mark.parametrize('a,b', [
    (torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3])),
    (torch.tensor([[1.5]]), torch.tensor([[1.5]])),
    (np.array([1, 2, 3]), np.array([1, 2, 3])),
    (np.array([[1, 2]]), [[1, 2]]),
    (torch.tensor([1, 2]), [1, 2]),
    ([1, 2, 3], [1, 2, 3]),
    ((1, 'a'), (1, 'a')),
    ('abc', 'abc'),
    (3, 3),
])
def test_eq_equal(a, b):
    core.test_eq(a, b)

@pytest.mark.parametrize('a,b', [
    (torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4])),
    (torch.tensor([1, 2, 3]), torch.tensor([1, 2])),          # different shape
    (torch.tensor([[1, 2]]), torch.tensor([1, 2])),           # same values, different shape
    (torch.tensor([1.0]), torch.tensor([1.0 + 1e-6])),        # exact, not approximate
    (np.array([1, 2, 3]), np.array([1, 2, 4])),
    (np.array([1, 2]), np.array([[1, 2]])),
    (np.array([1, 2]), [1, 3]),
    (torch.tensor([1, 2]), [1, 3]),
    ([1, 2, 3], [1, 2]),
    ([1, 2], [2, 1]),
    ('abc', 'abd'),
])
def test_eq_different(a, b):
    with pytest.raises(AssertionError, match='=='):
        core.test_eq(a, b)

def test_eq_message_shows_both_values():
    with pytest.raises(AssertionError) as e: core.test_eq([1, 2], [7, 8])
    assert '[1, 2]' in str(e.value) and '[7, 8]' in str(e.value)

def test_generic_test_uses_comparison():
    import operator
    core.test(1, 2, operator.lt)
    with pytest.raises(AssertionError, match='lt'): core.test(2, 1, operator.lt)
    with pytest.raises(AssertionError, match='smaller'): core.test(2, 1, operator.lt, 'smaller')

# ---------------------------------------------------------------------------------------------------- set_seed

def draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), torch.randint(0, 1000, (2,)).tolist()

def test_set_seed_reproduces_all_generators():
    core.set_seed(123); first = draws()
    core.set_seed(123); second = draws()
    assert first == second
    core.set_seed(124); other = draws()
    for x, y in zip(first, other): assert x != y  # each generator was reseeded, not just one

def test_set_seed_default_and_large_seed():
    core.set_seed(); a = draws()
    core.set_seed(42); b = draws()
    assert a == b
    core.set_seed(2**40 + 5); c = draws()   # numpy needs seed < 2**32; set_seed reduces it
    core.set_seed(2**40 + 5); d = draws()
    assert c == d

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_set_seed_cuda():
    core.set_seed(7); a = torch.rand(4, device='cuda').tolist()
    core.set_seed(7); b = torch.rand(4, device='cuda').tolist()
    assert a == b

# ---------------------------------------------------------------------------------------------------- quick

@pytest.mark.parametrize('flag', [True, False])
def test_quick_follows_QUICK(monkeypatch, flag):
    monkeypatch.setattr(core, 'QUICK', flag)
    assert core.quick(1000, 10) == (10 if flag else 1000)
    assert core.quick('full', None) == (None if flag else 'full')

@pytest.fixture
def reload_core(monkeypatch):
    "Reload mylib.core under a given MYLIB_QUICK, restoring the module as it was afterwards."
    def reload(value):
        if value is None: monkeypatch.delenv('MYLIB_QUICK', raising=False)
        else: monkeypatch.setenv('MYLIB_QUICK', value)
        return importlib.reload(core)
    yield reload
    monkeypatch.undo()
    importlib.reload(core)

@pytest.mark.parametrize('value,expected', [
    ('1', True), ('true', True), ('yes', True), ('TRUE', True),
    ('0', False), ('', False), ('false', False), ('False', False), ('no', False), (None, False)])
def test_QUICK_from_environment(reload_core, value, expected):
    m = reload_core(value)
    assert m.QUICK is expected
    assert m.quick('full', 'small') == ('small' if expected else 'full')

# ---------------------------------------------------------------------------------------------------- bench, record_result

def test_bench_counts_calls():
    calls = []
    t = core.bench(lambda: calls.append(1), repeat=3, number=4)
    assert len(calls) == 12 and 0 <= t < 1

def test_record_result_merges_into_file(tmp_path, monkeypatch, capsys):
    path = tmp_path/'results.json'
    monkeypatch.setenv('MYLIB_RESULTS', str(path))
    core.record_result(valid_accuracy=0.8512345, epochs=3)
    assert 'valid_accuracy: 0.8512' in capsys.readouterr().out
    core.record_result(loss=0.5)
    import json
    assert json.loads(path.read_text()) == {'valid_accuracy': 0.8512345, 'epochs': 3, 'loss': 0.5}

def test_record_result_without_env_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('MYLIB_RESULTS', raising=False)
    monkeypatch.chdir(tmp_path)
    core.record_result(x=1)
    assert list(tmp_path.iterdir()) == [] and 'x: 1' in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------- progress

PROGRESS_SCRIPT = '''
from mylib.core import with_progress, bars_drawn
from mylib.text import tokenize
r = range(3)
print(with_progress(r) is r, bars_drawn())
tokenize(["Some text."] * 40, max_workers=1, chunksize=10, cache=False)  # a bar over 4 chunks, if there is a terminal
print('done')
'''

def test_progress_into_a_pipe_draws_nothing():
    "Standard output a pipe (a log, CI): no bar is made, so no \\r or bar characters land in the output."
    env = {k: v for k, v in os.environ.items() if k != 'MYLIB_QUICK'}
    res = subprocess.run([sys.executable, '-c', PROGRESS_SCRIPT], capture_output=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().splitlines() == ['True False', 'done']

@pytest.mark.skipif(not hasattr(os, 'openpty'), reason='needs a pseudo-terminal')
def test_progress_on_a_terminal_draws():
    "On a pseudo-terminal the bar is drawn."
    raw = run_in_pty(PROGRESS_SCRIPT, env={k: v for k, v in os.environ.items() if k != 'MYLIB_QUICK'})
    assert 'False True' in raw and '100.00% [4/4' in raw and '\r' in raw

def test_progress_show_false_is_the_iterable():
    xs = [1, 2]
    assert core.with_progress(xs, show=False) is xs
