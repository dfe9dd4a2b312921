"Tests for mylib.datasets: the IDX parser, downloads (against a local server), finding and loading Fashion-MNIST."
import gzip, http.client, os, struct, subprocess, sys, urllib.error
from pathlib import Path
import numpy as np
import pytest
import torch

import mylib.datasets as ds
from mylib.datasets import DataError, DatasetMissing, download, parse_idx, read_idx
from conftest import md5

FASHION_NAMES = ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']

# ---------------------------------------------------------------------------------------------------- helpers

IDX_CODES = {'u1': 0x08, 'i1': 0x09, '>i2': 0x0B, '>i4': 0x0C, '>f4': 0x0D, '>f8': 0x0E}

def make_idx(arr, dtype='u1', gz=False):
    "The bytes of an IDX file holding `arr` stored as `dtype` (big-endian, as the format requires)."
    arr = np.asarray(arr)
    header = bytes([0, 0, IDX_CODES[dtype], arr.ndim]) + struct.pack(f'>{arr.ndim}I', *arr.shape)
    data = header + arr.astype(dtype).tobytes()
    return gzip.compress(data) if gz else data

def fake_fashion(n_train=5, n_valid=3, seed=0):
    "Small valid Fashion-MNIST-like files: {file name: gzipped bytes}, plus the raw arrays."
    rng = np.random.default_rng(seed)
    arrays = {'train-images-idx3-ubyte.gz': rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              'train-labels-idx1-ubyte.gz': rng.integers(0, 10, n_train, dtype=np.uint8),
              't10k-images-idx3-ubyte.gz': rng.integers(0, 256, (n_valid, 28, 28), dtype=np.uint8),
              't10k-labels-idx1-ubyte.gz': rng.integers(0, 10, n_valid, dtype=np.uint8)}
    arrays['train-images-idx3-ubyte.gz'][0, 0, :2] = [0, 255]  # make sure both ends of the range occur
    return {k: make_idx(v, gz=True) for k, v in arrays.items()}, arrays

def write_files(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items(): (folder/name).write_bytes(data)
    return folder

def listing(folder): return sorted(p.name for p in Path(folder).iterdir())

@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    "Every test gets an empty cache (MYLIB_DATA) and no Debian folder, so nothing outside tmp_path is seen."
    monkeypatch.setenv('MYLIB_DATA', str(tmp_path/'cache'))
    monkeypatch.setattr(ds, 'DEBIAN_FASHION', tmp_path/'no-debian-here')
    return tmp_path/'cache'

# ---------------------------------------------------------------------------------------------------- IDX parser

ROUND_TRIP = [
    ('u1', torch.uint8, [[0, 1, 127], [128, 254, 255]]),
    ('i1', torch.int8, [[-128, -1, 0], [1, 100, 127]]),
    ('>i2', torch.int16, [[-32768, -2, 0], [258, 1000, 32767]]),
    ('>i4', torch.int32, [[-2**31, -70000, 0], [1, 16909060, 2**31 - 1]]),
    ('>f4', torch.float32, [[-1.5, 0.0, 1e-30], [3.25, float('inf'), -2.0**100]]),
    ('>f8', torch.float64, [[np.pi, -1e300, 5e-324], [0.1, -0.0, 2.0**60 + 1]])]

@pytest.mark.parametrize('dtype,tdtype,values', ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
@pytest.mark.parametrize('gz', [False, True], ids=['raw', 'gz'])
def test_parse_idx_round_trips_each_type(dtype, tdtype, values, gz):
    want = np.array(values, dtype=dtype.lstrip('>'))
    t = parse_idx(make_idx(want, dtype, gz=gz))
    assert t.dtype == tdtype
    assert tuple(t.shape) == (2, 3)
    np.testing.assert_array_equal(t.numpy(), want)

def test_parse_idx_reads_big_endian():
    # 0x0102 big-endian is 258; a little-endian reader would give 513
    data = bytes([0, 0, 0x0B, 1]) + struct.pack('>I', 2) + b'\x01\x02\xff\xfe'
    assert parse_idx(data).tolist() == [258, -2]

@pytest.mark.parametrize('shape', [(7,), (3, 4, 5), (2, 1, 3, 2), (0, 28, 28)])
def test_parse_idx_shapes(shape):
    arr = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape) % 256
    t = parse_idx(make_idx(arr))
    assert tuple(t.shape) == shape
    np.testing.assert_array_equal(t.numpy(), arr.astype(np.uint8))

def test_read_idx_file_and_gz_file(tmp_path):
    arr = np.arange(24, dtype=np.int32).reshape(2, 3, 4) * -1000
    (tmp_path/'a.idx').write_bytes(make_idx(arr, '>i4'))
    (tmp_path/'a.idx.gz').write_bytes(make_idx(arr, '>i4', gz=True))
    for name in ['a.idx', 'a.idx.gz']:
        t = read_idx(tmp_path/name)
        assert t.dtype == torch.int32 and tuple(t.shape) == (2, 3, 4)
        np.testing.assert_array_equal(t.numpy(), arr)
    assert read_idx(str(tmp_path/'a.idx')).shape == (2, 3, 4)  # str paths work too

def test_parsed_tensor_is_writable_and_owns_its_data():
    data = make_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
    t = parse_idx(data)
    t += 1  # would fail or warn on a tensor that views the read-only bytes
    assert t.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert parse_idx(data).tolist() == [[0, 1, 2], [3, 4, 5]]

GOOD = make_idx(np.arange(12, dtype=np.uint8).reshape(3, 4))  # header 4 + 2*4 bytes, then 12 bytes of data

BAD_IDX = [
    ('nonzero-first-byte', b'\x01' + GOOD[1:], r'bad magic number 01000802'),
    ('nonzero-second-byte', b'\x00\x07' + GOOD[2:], r'bad magic number 00070802'),
    ('unknown-type-code', GOOD[:2] + b'\x0a' + GOOD[3:], r'bad magic number 00000a02.*not an IDX file'),
    ('text-file', b'hello, world\n', r'bad magic number'),
    ('empty', b'', r'0 bytes, too short'),
    ('three-bytes', GOOD[:3], r'3 bytes, too short'),
    ('truncated-in-header', GOOD[:9], r'header says 2 dims but the file ends inside the header'),
    ('truncated-in-data', GOOD[:-1], r'truncated: header \(3, 4\) needs 12 bytes of data, found 11'),
    ('header-only', GOOD[:12], r'truncated: .*found 0'),
    ('too-long', GOOD + b'\x00', r'longer than its header says: .*needs 12 bytes of data, found 13'),
]

@pytest.mark.parametrize('data,match', [b[1:] for b in BAD_IDX], ids=[b[0] for b in BAD_IDX])
def test_parse_idx_errors(data, match):
    with pytest.raises(DataError, match=match):
        parse_idx(data, name='thing.idx')
    with pytest.raises(DataError, match=r'^thing\.idx: '):  # the message says which file
        parse_idx(data, name='thing.idx')

@pytest.mark.parametrize('data,match', [b[1:] for b in BAD_IDX], ids=[b[0] for b in BAD_IDX])
def test_parse_idx_errors_gzipped(data, match):
    with pytest.raises(DataError, match=match):
        parse_idx(gzip.compress(data))

def test_read_idx_error_names_the_path(tmp_path):
    p = tmp_path/'broken-idx1-ubyte'
    p.write_bytes(GOOD[:-3])
    with pytest.raises(DataError) as e: read_idx(p)
    assert str(p) in str(e.value) and 'truncated' in str(e.value)

def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError): read_idx(tmp_path/'nope.gz')

GZ = gzip.compress(make_idx(np.arange(5000) % 251, 'u1'))

@pytest.mark.parametrize('cut', [len(GZ) // 2, len(GZ) - 4, 10, 3], ids=['half', 'no-size', 'header-only', 'in-gzip-header'])
def test_parse_idx_truncated_gzip(cut):
    with pytest.raises(DataError, match=r'data\.gz: gzip stream is truncated or corrupt'):
        parse_idx(GZ[:cut], name='data.gz')

def test_parse_idx_gzip_bad_crc():
    bad = GZ[:-8] + bytes(b ^ 0xff for b in GZ[-8:-4]) + GZ[-4:]
    with pytest.raises(DataError, match='gzip stream is truncated or corrupt'): parse_idx(bad)

def test_parse_idx_corrupt_gzip_body():
    # a gzip stream whose deflate data is invalid (reserved block type 3): zlib raises zlib.error, which parse_idx
    # must turn into a DataError like every other broken gzip stream
    bad = GZ[:10] + bytes([GZ[10] | 0x07]) + GZ[11:]
    with pytest.raises(DataError, match='gzip stream is truncated or corrupt'): parse_idx(bad, name='x.gz')

# ---------------------------------------------------------------------------------------------------- download

PAYLOAD = bytes(range(256)) * 1000  # 256 kB: several reads of download's 64 kB chunks

def test_download_good_file(local_server, tmp_path):
    local_server.files['/data/f.bin'] = PAYLOAD
    folder = tmp_path/'dl'
    got = download(local_server.url + '/data/f.bin', folder/'f.bin', md5=md5(PAYLOAD), show_progress=False, timeout=5)
    assert got == folder/'f.bin'
    assert (folder/'f.bin').read_bytes() == PAYLOAD
    assert listing(folder) == ['f.bin']  # no *.part left behind
    assert local_server.requests == ['/data/f.bin']

def test_download_with_progress_bar(local_server, tmp_path, capsys):
    # the default, show_progress=True, draws a bar while reading several chunks
    local_server.files['/f.bin'] = PAYLOAD
    download(local_server.url + '/f.bin', tmp_path/'f.bin', md5=md5(PAYLOAD), timeout=5)
    assert (tmp_path/'f.bin').read_bytes() == PAYLOAD and listing(tmp_path) == ['f.bin']

def test_download_without_md5_and_creates_folders(local_server, tmp_path):
    local_server.files['/x'] = b'hello'
    dest = tmp_path/'a'/'b'/'x.txt'
    download(local_server.url + '/x', str(dest), show_progress=False, timeout=5)
    assert dest.read_bytes() == b'hello'
    assert listing(dest.parent) == ['x.txt']

def test_download_empty_file(local_server, tmp_path):
    local_server.files['/empty'] = b''
    download(local_server.url + '/empty', tmp_path/'e', md5=md5(b''), show_progress=False, timeout=5)
    assert (tmp_path/'e').read_bytes() == b''
    assert listing(tmp_path) == ['e']

def test_download_bad_checksum(local_server, tmp_path):
    local_server.files['/f.gz'] = PAYLOAD
    folder = tmp_path/'dl'
    with pytest.raises(DataError, match=r'f\.gz: checksum mismatch') as e:
        download(local_server.url + '/f.gz', folder/'f.gz', md5='0' * 32, show_progress=False, timeout=5)
    assert md5(PAYLOAD) in str(e.value) and '0' * 32 in str(e.value)  # says what it got and what it expected
    assert listing(folder) == []  # neither the file nor a temp file

def test_download_connection_cut(local_server, tmp_path):
    local_server.cut['/cut.gz'] = (PAYLOAD[:100_000], len(PAYLOAD))
    folder = tmp_path/'dl'
    with pytest.raises((DataError, http.client.HTTPException, OSError)) as e:
        download(local_server.url + '/cut.gz', folder/'cut.gz', show_progress=False, timeout=5)
    if isinstance(e.value, DataError):
        assert 'connection ended after 100,000 of 256,000 bytes' in str(e.value)
    assert listing(folder) == []

def test_download_connection_cut_with_md5_still_complains(local_server, tmp_path):
    # even with the right md5 given, a short file must not be kept (its md5 differs anyway, but the error should
    # be about the cut, which tells the user to just retry)
    local_server.cut['/cut.gz'] = (PAYLOAD[:1000], len(PAYLOAD))
    with pytest.raises(DataError, match='connection ended'):
        download(local_server.url + '/cut.gz', tmp_path/'cut.gz', md5=md5(PAYLOAD), show_progress=False, timeout=5)
    assert listing(tmp_path) == []

def test_download_404(local_server, tmp_path):
    folder = tmp_path/'dl'
    with pytest.raises(urllib.error.HTTPError) as e:
        download(local_server.url + '/missing.gz', folder/'missing.gz', show_progress=False, timeout=5)
    assert e.value.code == 404
    assert listing(folder) == []

def test_download_timeout(local_server, tmp_path):
    local_server.stall.add('/slow')
    with pytest.raises(OSError):  # socket.timeout is TimeoutError, an OSError
        download(local_server.url + '/slow', tmp_path/'slow', show_progress=False, timeout=0.3)
    assert listing(tmp_path) == []

def test_download_connection_refused(tmp_path):
    import socket
    s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()  # a port nobody listens on
    with pytest.raises(OSError):
        download(f'http://127.0.0.1:{port}/f', tmp_path/'f', show_progress=False, timeout=2)
    assert listing(tmp_path) == []

@pytest.mark.parametrize('failure', ['checksum', 'cut', '404'])
def test_failed_redownload_keeps_existing_file(local_server, tmp_path, failure):
    dest = tmp_path/'f.gz'
    dest.write_bytes(b'the good old file')
    local_server.files['/f.gz'] = PAYLOAD
    local_server.cut['/cut.gz'] = (PAYLOAD[:10], len(PAYLOAD))
    path, kw = {'checksum': ('/f.gz', {'md5': '1' * 32}), 'cut': ('/cut.gz', {}), '404': ('/gone.gz', {})}[failure]
    with pytest.raises(Exception):
        download(local_server.url + path, dest, show_progress=False, timeout=5, **kw)
    assert dest.read_bytes() == b'the good old file'
    assert listing(tmp_path) == ['f.gz']

def test_successful_redownload_replaces_file(local_server, tmp_path):
    dest = tmp_path/'f.gz'
    dest.write_bytes(b'stale')
    local_server.files['/f.gz'] = PAYLOAD
    download(local_server.url + '/f.gz', dest, md5=md5(PAYLOAD), show_progress=False, timeout=5)
    assert dest.read_bytes() == PAYLOAD and listing(tmp_path) == ['f.gz']

def test_network_guard_blocks_other_hosts(tmp_path):
    # the conftest guard keeps these tests offline: anything but loopback is refused before a packet is sent
    with pytest.raises(RuntimeError, match='tests may only use 127.0.0.1'):
        download('http://192.0.2.1/f', tmp_path/'f', show_progress=False, timeout=1)
    assert listing(tmp_path) == []

# ---------------------------------------------------------------------------------------------------- data_dir

def test_data_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv('MYLIB_DATA', str(tmp_path/'somewhere'))
    assert ds.data_dir() == tmp_path/'somewhere'

def test_data_dir_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.setenv('MYLIB_DATA', '~/d')
    assert ds.data_dir() == tmp_path/'d'

@pytest.mark.parametrize('value', [None, ''])
def test_data_dir_default(monkeypatch, tmp_path, value):
    monkeypatch.setenv('HOME', str(tmp_path))
    if value is None: monkeypatch.delenv('MYLIB_DATA', raising=False)
    else: monkeypatch.setenv('MYLIB_DATA', value)
    assert ds.data_dir() == tmp_path/'.cache'/'mylib'

# ---------------------------------------------------------------------------------------------------- finding Fashion-MNIST

def test_find_fashion_mnist_missing(isolated_cache):
    with pytest.raises(DatasetMissing) as e: ds.find_fashion_mnist()
    msg = str(e.value)
    assert 'Fashion-MNIST' in msg
    assert 'apt-get install dataset-fashion-mnist' in msg
    assert 'python -m mylib.datasets fashion_mnist' in msg
    assert str(isolated_cache/'fashion_mnist') in msg and str(ds.DEBIAN_FASHION) in msg  # where it looked
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, DataError)

def test_find_fashion_mnist_incomplete_cache_is_missing(isolated_cache):
    files, _ = fake_fashion()
    write_files(isolated_cache/'fashion_mnist', dict(list(files.items())[:3]))
    with pytest.raises(DatasetMissing): ds.find_fashion_mnist()

def test_find_fashion_mnist_prefers_cache(isolated_cache, tmp_path, monkeypatch):
    files, _ = fake_fashion()
    cache = write_files(isolated_cache/'fashion_mnist', files)
    debian = write_files(tmp_path/'debian', files)
    monkeypatch.setattr(ds, 'DEBIAN_FASHION', debian)
    assert ds.find_fashion_mnist() == cache

def test_find_fashion_mnist_falls_back_to_debian(tmp_path, monkeypatch):
    files, _ = fake_fashion()
    debian = write_files(tmp_path/'debian', files)
    monkeypatch.setattr(ds, 'DEBIAN_FASHION', debian)
    assert ds.find_fashion_mnist() == debian

# ---------------------------------------------------------------------------------------------------- get_data

def check_split(x, y, images, labels):
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert tuple(x.shape) == (len(images), 784) and tuple(y.shape) == (len(labels),)
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(x.numpy(), images.reshape(len(images), -1) / 255., rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y.numpy(), labels)

def test_get_data_from_folder(tmp_path):
    files, arrays = fake_fashion(n_train=5, n_valid=3)
    d = write_files(tmp_path/'fm', files)
    x_train, y_train, x_valid, y_valid = ds.get_data(d)
    check_split(x_train, y_train, arrays['train-images-idx3-ubyte.gz'], arrays['train-labels-idx1-ubyte.gz'])
    check_split(x_valid, y_valid, arrays['t10k-images-idx3-ubyte.gz'], arrays['t10k-labels-idx1-ubyte.gz'])
    assert x_train.max() == 1 and x_train.min() == 0
    x2 = ds.get_data(str(d))[0]  # a str works too
    assert torch.equal(x2, x_train)

def test_get_data_default_uses_cache(isolated_cache):
    files, arrays = fake_fashion(n_train=4, n_valid=2, seed=1)
    write_files(isolated_cache/'fashion_mnist', files)
    x_train, y_train, x_valid, y_valid = ds.get_data()
    assert tuple(x_train.shape) == (4, 784) and tuple(x_valid.shape) == (2, 784)
    np.testing.assert_array_equal(y_valid.numpy(), arrays['t10k-labels-idx1-ubyte.gz'])

def test_get_data_missing_raises_dataset_missing():
    with pytest.raises(DatasetMissing, match='Fashion-MNIST'): ds.get_data()

def test_get_data_count_mismatch(tmp_path):
    files, _ = fake_fashion(n_train=5)
    files['train-labels-idx1-ubyte.gz'] = make_idx(np.zeros(4, np.uint8), gz=True)
    d = write_files(tmp_path/'fm', files)
    with pytest.raises(DataError, match=r'train-images-idx3-ubyte\.gz has shape \(5, 28, 28\) and '
                                        r'train-labels-idx1-ubyte\.gz \(4,\); they do not match'):
        ds.get_data(d)

def test_get_data_labels_not_1d(tmp_path):
    files, _ = fake_fashion(n_train=5)
    files['train-labels-idx1-ubyte.gz'] = make_idx(np.zeros((5, 1), np.uint8), gz=True)
    with pytest.raises(DataError, match='do not match'): ds.get_data(write_files(tmp_path/'fm', files))

def test_get_data_corrupt_file_names_it(tmp_path):
    files, _ = fake_fashion()
    files['t10k-images-idx3-ubyte.gz'] = files['t10k-images-idx3-ubyte.gz'][:-20]
    with pytest.raises(DataError, match=r't10k-images-idx3-ubyte\.gz: gzip stream is truncated'):
        ds.get_data(write_files(tmp_path/'fm', files))

# ---------------------------------------------------------------------------------------------------- fetching

@pytest.fixture
def fashion_server(local_server, monkeypatch):
    "The local server holding crafted Fashion-MNIST files under /fashion/, with FASHION_URL/FILES pointing at it."
    files, arrays = fake_fashion()
    for name, data in files.items(): local_server.files['/fashion/' + name] = data
    monkeypatch.setattr(ds, 'FASHION_URL', local_server.url + '/fashion/')
    monkeypatch.setattr(ds, 'FASHION_FILES', {name: md5(data) for name, data in files.items()})
    return local_server, files

def test_fetch_fashion_mnist_downloads_then_skips(fashion_server, isolated_cache):
    server, files = fashion_server
    d = ds.fetch_fashion_mnist(show_progress=False)
    assert d == isolated_cache/'fashion_mnist'
    assert listing(d) == sorted(files)  # the four files, no *.part
    for name, data in files.items(): assert (d/name).read_bytes() == data
    assert sorted(server.requests) == sorted('/fashion/' + n for n in files)
    assert ds.find_fashion_mnist() == d
    assert tuple(ds.get_data()[0].shape) == (5, 784)

    server.requests.clear()
    assert ds.fetch_fashion_mnist(show_progress=False) == d
    assert server.requests == []  # all four verified, none downloaded again

    (d/'t10k-labels-idx1-ubyte.gz').write_bytes(b'corrupt')  # one bad file: only it is fetched again
    ds.fetch_fashion_mnist(show_progress=False)
    assert server.requests == ['/fashion/t10k-labels-idx1-ubyte.gz']
    assert (d/'t10k-labels-idx1-ubyte.gz').read_bytes() == files['t10k-labels-idx1-ubyte.gz']

def test_fetch_fashion_mnist_bad_checksum(fashion_server, isolated_cache, monkeypatch):
    server, files = fashion_server
    monkeypatch.setitem(ds.FASHION_FILES, 'train-labels-idx1-ubyte.gz', 'f' * 32)
    with pytest.raises(DataError, match=r'train-labels-idx1-ubyte\.gz: checksum mismatch'):
        ds.fetch_fashion_mnist(show_progress=False)
    assert 'train-labels-idx1-ubyte.gz' not in listing(isolated_cache/'fashion_mnist')
    assert not any(n.endswith('.part') for n in listing(isolated_cache/'fashion_mnist'))
    with pytest.raises(DatasetMissing): ds.find_fashion_mnist()

def test_fetch_mnist(local_server, monkeypatch, isolated_cache):
    files, _ = fake_fashion(seed=2)
    for name, data in files.items(): local_server.files['/mnist/' + name] = data
    monkeypatch.setattr(ds, 'MNIST_URL', local_server.url + '/mnist/')
    monkeypatch.setattr(ds, 'MNIST_FILES', {name: md5(data) for name, data in files.items()})
    d = ds.fetch_mnist(show_progress=False)
    assert d == isolated_cache/'mnist' and listing(d) == sorted(files)
    local_server.requests.clear()
    ds.fetch_mnist(show_progress=False)
    assert local_server.requests == []

def test_main_fetches_named_dataset(fashion_server, isolated_cache, capsys, monkeypatch):
    monkeypatch.setitem(ds._FETCHERS, 'fashion_mnist', lambda: ds.fetch_fashion_mnist(show_progress=False))
    ds.main(['fashion_mnist'])
    assert str(isolated_cache/'fashion_mnist') in capsys.readouterr().out
    assert listing(isolated_cache/'fashion_mnist') == sorted(fashion_server[1])

def test_real_fashion_names_and_md5s_are_consistent():
    assert sorted(ds.FASHION_FILES) == sorted(FASHION_NAMES) == sorted(ds.MNIST_FILES)
    for table in (ds.FASHION_FILES, ds.MNIST_FILES):
        assert all(len(h) == 32 and int(h, 16) >= 0 for h in table.values())
    assert ds.FASHION_URL.endswith('/') and ds.MNIST_URL.endswith('/')
    assert len(ds.FASHION_CLASSES) == 10

# ---------------------------------------------------------------------------------------------------- command line

CLI_RUNS = {'help': ['--help'], 'unknown': ['imagenet']}

@pytest.fixture(scope='module')
def cli(tmp_path_factory):
    "Run `python -m mylib.datasets` (the venv's python) for each of CLI_RUNS, in parallel since each imports torch."
    tmp = tmp_path_factory.mktemp('cli')
    env = {**os.environ, 'MYLIB_DATA': str(tmp/'cli-cache')}
    for var in ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'): env.pop(var, None)
    procs = {k: subprocess.Popen([sys.executable, '-m', 'mylib.datasets', *args], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
             for k, args in CLI_RUNS.items()}
    results = {}
    for k, proc in procs.items():
        try: out, err = proc.communicate(timeout=25)
        except subprocess.TimeoutExpired:
            proc.kill(); out, err = proc.communicate()
        results[k] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    results['cache'] = tmp/'cli-cache'
    return results

def test_cli_help(cli):
    r = cli['help']
    assert r.returncode == 0, r.stderr
    assert 'fashion_mnist' in r.stdout and 'mnist' in r.stdout and 'usage: python -m mylib.datasets' in r.stdout
    assert not cli['cache'].exists()  # --help downloads nothing

def test_cli_unknown_name(cli):
    r = cli['unknown']
    assert r.returncode not in (0, None)
    assert 'invalid choice' in r.stderr and 'imagenet' in r.stderr
    assert not cli['cache'].exists()

def test_main_needs_a_name(capsys):
    with pytest.raises(SystemExit) as e: ds.main([])
    assert e.value.code != 0

# ---------------------------------------------------------------------------------------------------- the real data, if installed

REAL_DEBIAN = Path('/usr/share/datasets/fashion-mnist')

@pytest.mark.skipif(not all((REAL_DEBIAN/n).is_file() for n in FASHION_NAMES),
                    reason='Debian package dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)')
def test_debian_fashion_mnist_test_split_reads():
    x = read_idx(REAL_DEBIAN/'t10k-images-idx3-ubyte.gz')
    y = read_idx(REAL_DEBIAN/'t10k-labels-idx1-ubyte.gz')
    assert x.dtype == torch.uint8 and tuple(x.shape) == (10000, 28, 28)
    assert y.dtype == torch.uint8 and tuple(y.shape) == (10000,)
    assert torch.bincount(y.long()).tolist() == [1000] * 10  # Fashion-MNIST's test split is balanced


# --- the held-out validation split --------------------------------------------------------------------------------

def test_split_valid_is_stratified_seeded_and_a_partition():
    import torch
    from mylib.datasets import split_valid
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    x = torch.arange(100).float()[:, None]
    xt, yt, xv, yv = split_valid(x, y, n_valid=20, seed=3)
    assert torch.bincount(yv).tolist() == [12, 6, 2]                     # each class keeps its share
    assert sorted(xt.squeeze(1).tolist() + xv.squeeze(1).tolist()) == list(range(100))  # every item on one side
    assert torch.equal(split_valid(x, y, 20, seed=3)[2], xv)            # seeded
    assert not torch.equal(split_valid(x, y, 20, seed=4)[2], xv)
    xt7, yt7, xv7, yv7 = split_valid(x, y, n_valid=7, seed=0)           # shares that do not divide evenly
    assert len(yv7) == 7 and torch.bincount(yv7, minlength=3).tolist() == [4, 2, 1]


def test_split_valid_bad_size():
    import torch
    from mylib.datasets import split_valid
    for n in (0, 100, -5):
        with pytest.raises(ValueError, match='n_valid'): split_valid(torch.zeros(100, 1), torch.zeros(100).long(), n)
