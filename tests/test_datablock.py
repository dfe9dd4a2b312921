"""Tests for the data block API (mylib.datablock) and the image-folder data layer it reads (mylib.datasets):
get_files, splitters, processors, the Fashion-MNIST tree builder on a tiny crafted dataset, and untar_data against
a local HTTP server."""
import gzip, io, json, os, struct, subprocess, sys, tarfile
from functools import partial
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

import mylib.datasets as ds
from mylib.datasets import DataError, DatasetMissing, fashion_folder, untar_data, get_image_folder, TREE_MARKER
from mylib.datablock import *
from conftest import md5

# ---------------------------------------------------------------------------------------------------- get_files

def touch(path, data=b''):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path

@pytest.fixture
def tree(tmp_path):
    root = tmp_path/'tree'
    for rel in ['a.PNG', 'b.png', 'c.jpg', 'd.txt', '.hidden.png', 'noext',
                'train/x/e.Png', 'train/x/f.jpeg', 'train/.ipynb_checkpoints/g.png', 'train/y/deeper/h.png',
                'val/x/i.png', 'other/j.png', '.partial/k.png']:
        touch(root/rel)
    return root

def names(fns, root): return [p.relative_to(root).as_posix() for p in fns]

def test_get_files_top_level_only_by_default(tree):
    assert names(get_files(tree), tree) == ['a.PNG', 'b.png', 'c.jpg', 'd.txt', 'noext']

@pytest.mark.parametrize('exts', [['.png'], ['.PNG'], ['png'], '.png', 'PnG', {'.png'}])
def test_get_files_extensions_any_case(tree, exts):
    assert names(get_files(tree, exts), tree) == ['a.PNG', 'b.png']

def test_get_files_recurse_sorted_skips_hidden(tree):
    got = names(get_files(tree, ['.png', '.jpeg'], recurse=True), tree)
    assert got == ['a.PNG', 'b.png', 'other/j.png', 'train/x/e.Png', 'train/x/f.jpeg', 'train/y/deeper/h.png',
                   'val/x/i.png']

def test_get_files_include_limits_top_level_only(tree):
    got = names(get_files(tree, image_extensions, recurse=True, include=['train', 'val']), tree)
    assert got == ['a.PNG', 'b.png', 'c.jpg', 'train/x/e.Png', 'train/x/f.jpeg', 'train/y/deeper/h.png', 'val/x/i.png']
    # 'x' exists one level down, but include only applies at the top
    assert names(get_files(tree, '.png', recurse=True, include=['x']), tree) == ['a.PNG', 'b.png']
    assert names(get_files(tree, '.png', recurse=True, include=[]), tree) == ['a.PNG', 'b.png']

def test_get_files_errors(tree):
    with pytest.raises(FileNotFoundError, match='not a folder'): get_files(tree/'nope')
    with pytest.raises(FileNotFoundError, match='not a folder'): get_files(tree/'a.PNG')
    with pytest.raises(ValueError, match='recurse=True'): get_files(tree, include=['train'])

def test_get_files_accepts_str_and_does_not_follow_dir_symlinks(tree):
    os.symlink(tree, tree/'train'/'loop')  # a folder link back to the root: following it would never end
    got = names(get_files(str(tree), '.png', recurse=True), tree)
    assert 'train/loop/a.PNG' not in got and 'train/x/e.Png' in got

# ---------------------------------------------------------------------------------------------------- splitters

def test_grandparent_splitter():
    assert grandparent_splitter('/d/train/cat/1.png') is False
    assert grandparent_splitter('/d/valid/cat/1.png') is True
    assert grandparent_splitter('/d/val/cat/1.png') is None
    assert grandparent_splitter(Path('/d/val/cat/1.png'), valid_name='val') is True
    assert grandparent_splitter('/d/test/cat/1.png', valid_name='val') is None
    assert grandparent_splitter('/d/tr/cat/1.png', train_name='tr') is False

def test_random_splitter_reproducible_and_order_free():
    fns = [f'/data/c{i % 7}/{i:05d}.png' for i in range(20_000)]
    f = partial(random_splitter, p_valid=0.2, seed=3)
    first = [f(o) for o in fns]
    assert first == [f(o) for o in fns]
    assert [f(o) for o in reversed(fns)] == first[::-1]
    np.random.seed(0); torch.manual_seed(0)  # the global generators play no part
    assert [f(o) for o in fns] == first
    assert abs(sum(first) / len(fns) - 0.2) < 0.01
    assert [random_splitter(o, 0.2, seed=4) for o in fns] != first
    # only the folder and the name count: the same dataset stored elsewhere splits the same way
    assert [f('/elsewhere/deep/down/' + '/'.join(o.split('/')[-2:])) for o in fns] == first

def test_random_splitter_extremes_and_bad_p():
    fns = [f'c/{i}.png' for i in range(500)]
    assert not any(random_splitter(o, 0.) for o in fns)
    assert all(random_splitter(o, 1.) for o in fns)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match='p_valid'): random_splitter('a.png', p)

def test_split_by_func_drops_none():
    items = list(range(10))
    train, valid = split_by_func(items, lambda o: None if o == 0 else o % 3 == 0)
    assert train == [1, 2, 4, 5, 7, 8] and valid == [3, 6, 9]

def test_splitdata_keeps_class_and_delegates(tmp_path):
    fns = [touch(tmp_path/s/'c'/f'{i}.png') for s in ('train', 'valid') for i in range(3)]
    il = ImageList(fns, tmp_path, tfms=[to_byte_tensor])
    sd = SplitData.split_by_func(il, grandparent_splitter)
    assert type(sd.train) is ImageList and type(sd.valid) is ImageList
    assert len(sd.train) == len(sd.valid) == 3 and sd.train.tfms == [to_byte_tensor]
    assert sd.path == tmp_path  # attributes SplitData lacks come from the training list

def test_splitdata_empty_side_is_an_error(tmp_path):
    fns = [touch(tmp_path/s/'c'/f'{i}.png') for s in ('train', 'val') for i in range(3)]
    with pytest.raises(ValueError, match=r"validation set is empty.*'val'"):
        SplitData.split_by_func(ImageList(fns, tmp_path), grandparent_splitter)
    with pytest.raises(ValueError, match='training set is empty'):
        SplitData.split_by_func(ImageList(fns, tmp_path), lambda o: True)

# ---------------------------------------------------------------------------------------------------- processors

def test_category_processor_vocab_from_train_only():
    p = CategoryProcessor()
    assert p(['b', 'a', 'b', 'c']) == [1, 0, 1, 2]
    assert p.vocab == ['a', 'b', 'c']
    assert p(['c', 'c', 'a']) == [2, 2, 0]  # the second list is mapped, not learned from
    assert p.vocab == ['a', 'b', 'c']

def test_category_processor_unseen_label():
    p = CategoryProcessor()
    p(['cat', 'dog'])
    with pytest.raises(ValueError, match=r"label 'zebra' is not in the vocabulary.*'cat', 'dog'"):
        p(['dog', 'zebra'])

def test_category_processor_deprocess_round_trip():
    p = CategoryProcessor()
    labels = ['shirt', 'bag', 'coat', 'bag', 'shirt']
    idxs = p(labels)
    assert p.deprocess(idxs) == labels
    assert p.deprocess(torch.tensor(idxs)) == labels
    assert p.deproc1(torch.tensor(2)) == 'shirt'

def make_png_tree(root, spec, size=(6, 5), mode='L'):
    "PNG files `root/split/class/i.png` for {split: {class: n}}; pixel values encode (class index, i)."
    for split, classes in spec.items():
        for ci, (c, n) in enumerate(sorted(classes.items())):
            for i in range(n):
                Image.new(mode, size, color=(10 * ci + i) if mode == 'L' else (10 * ci + i, 0, 255)).save(
                    touch(root/split/c/f'{i}.png'))
    return root

def test_label_by_func_processes_train_first_and_errors_on_unseen(tmp_path):
    root = make_png_tree(tmp_path/'d', {'train': {'a': 2, 'b': 2}, 'val': {'b': 1, 'c': 1}})
    il = ImageList.from_files(root)
    sd = SplitData.split_by_func(il, partial(grandparent_splitter, valid_name='val'))
    with pytest.raises(ValueError, match="label 'c'"):
        label_by_func(sd, parent_labeler, proc_y=CategoryProcessor())

def test_pipeline_items_batches_and_labels(tmp_path):
    root = make_png_tree(tmp_path/'d', {'train': {'a': 3, 'b': 2}, 'val': {'a': 1, 'b': 2}})
    tfms = [to_float_tensor, ResizeFixed((4, 3)), to_byte_tensor]  # any order: they sort by _order
    il = ImageList.from_files(root, tfms=tfms)
    sd = SplitData.split_by_func(il, partial(grandparent_splitter, valid_name='val'))
    ll = label_by_func(sd, parent_labeler, proc_y=CategoryProcessor())
    x, y = ll.train[0]
    assert x.shape == (1, 4, 3) and x.dtype == torch.float32 and y == 0
    assert ll.valid.y_obj(slice(None)) == ['a', 'b', 'b']
    assert ll.train.y_obj(3) == 'b'
    data = databunchify(ll, 2)
    assert (data.c_in, data.c_out, data.c) == (1, 2, 2)
    xb, yb = next(iter(data.valid_dl))
    assert xb.shape == (3, 1, 4, 3) and yb.tolist() == [0, 1, 1]
    assert ll.valid.deproc_y(yb) == ['a', 'b', 'b']

def test_transforms():
    img = Image.new('RGB', (5, 4), (255, 128, 0))
    t = to_byte_tensor(img)
    assert t.shape == (3, 4, 5) and t.dtype == torch.uint8 and t[:, 0, 0].tolist() == [255, 128, 0]
    assert torch.allclose(to_float_tensor(t)[:, 0, 0], torch.tensor([1.0, 128 / 255, 0.0]))
    assert ResizeFixed(7)(img).size == (7, 7)
    assert ResizeFixed((2, 9))(img).size == (9, 2)  # (height, width) in, PIL's (width, height) out
    assert to_byte_tensor(make_rgb(Image.new('L', (3, 3), 7))).shape == (3, 3, 3)
    with pytest.raises(ValueError, match="mode 'P'.*make_rgb"): to_byte_tensor(Image.new('P', (3, 3)))
    assert to_byte_tensor(make_rgb(Image.new('P', (3, 3)))).shape == (3, 3, 3)
    assert [f._order for f in (make_rgb, ResizeFixed(3), to_byte_tensor, to_float_tensor)] == [0, 10, 20, 30]

def test_normalize_chan():
    x = torch.rand(4, 3, 5, 5)
    mean, std = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1., 2., 4.])
    want = (x - mean[:, None, None]) / std[:, None, None]
    assert torch.allclose(normalize_chan(x, mean, std), want)
    assert torch.allclose(normalize_chan(x[0], mean, std), want[0])
    with pytest.raises(ValueError, match='2 means'): normalize_chan(x, [0., 1.], [1., 1.])

def test_itemlist_indexing():
    il = ItemList(list(range(10)), tfms=[lambda o: o * 10])
    assert il[3] == 30 and il[np.int64(2)] == 20 and il[torch.tensor(1)] == 10
    assert il[1:3] == [10, 20] and il[[0, 9]] == [0, 90] and il[torch.tensor([4, 5])] == [40, 50]
    assert il[torch.tensor([4])] == [40] and il[np.array([7])] == [70] and il[(1, 2)] == [10, 20]
    assert il[[i % 5 == 0 for i in range(10)]] == [0, 50]
    with pytest.raises(IndexError): il[[True, False]]
    assert list(il)[:2] == [0, 10] and len(il.new([1, 2])) == 2 and il.new([1])[0] == 10

# ---------------------------------------------------------------------------------------------------- the Fashion-MNIST tree

def idx_bytes(arr):
    arr = np.asarray(arr, dtype=np.uint8)
    return gzip.compress(bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f'>{arr.ndim}I', *arr.shape) + arr.tobytes())

N_TRAIN, N_VALID = 23, 11

@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    "A tiny IDX 'Fashion-MNIST' in an empty cache (MYLIB_DATA), with Debian's copy hidden; returns the arrays."
    cache = tmp_path/'cache'
    monkeypatch.setenv('MYLIB_DATA', str(cache))
    monkeypatch.setattr(ds, 'DEBIAN_FASHION', tmp_path/'no-debian-here')
    rng = np.random.default_rng(0)
    arrays = {'train-images-idx3-ubyte.gz': rng.integers(0, 256, (N_TRAIN, 28, 28)),
              'train-labels-idx1-ubyte.gz': np.arange(N_TRAIN) % 10,
              't10k-images-idx3-ubyte.gz': rng.integers(0, 256, (N_VALID, 28, 28)),
              't10k-labels-idx1-ubyte.gz': np.arange(N_VALID) % 7}  # classes 7-9 missing from val
    for name, arr in arrays.items(): touch(cache/'fashion_mnist'/name, idx_bytes(arr))
    return arrays

def all_pngs(root): return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob('*.png'))

def test_fashion_folder_builds_the_tree(fake_fashion):
    path = fashion_folder(show_progress=False)
    assert path == ds.data_dir()/'fashion_mnist_png'
    counts = json.loads((path/TREE_MARKER).read_text())['counts']
    assert sum(counts['train'].values()) == N_TRAIN and sum(counts['val'].values()) == N_VALID
    assert sorted(counts['val']) == sorted(ds.FASHION_FOLDER_CLASSES[:7])
    assert set(counts['train']) == set(ds.FASHION_FOLDER_CLASSES) and 't-shirt_top' in counts['train']
    x = fake_fashion['train-images-idx3-ubyte.gz']
    for i in (0, 13, 22):
        fn = path/'train'/ds.FASHION_FOLDER_CLASSES[i % 10]/f'{i:05d}.png'
        assert np.array_equal(np.array(Image.open(fn)), x[i])
    assert sorted(p.name for p in path.parent.iterdir()) == ['fashion_mnist', 'fashion_mnist_png']  # no temporary folders

def test_fashion_folder_is_idempotent(fake_fashion, monkeypatch):
    path = fashion_folder(show_progress=False)
    before = {p: p.stat().st_mtime_ns for p in path.rglob('*')}
    def no_writes(job): raise AssertionError('rebuilt a complete tree')
    monkeypatch.setattr(ds, '_write_pngs', no_writes)
    assert fashion_folder(show_progress=False) == path
    assert {p: p.stat().st_mtime_ns for p in path.rglob('*')} == before

@pytest.mark.parametrize('damage', ['no-marker', 'marker-counts', 'marker-garbage', 'file-deleted', 'file-added',
                                    'class-folder-deleted'])
def test_fashion_folder_rebuilds_a_broken_tree(fake_fashion, damage, capsys):
    path = fashion_folder(show_progress=False)
    good = all_pngs(path)
    marker = path/TREE_MARKER
    if damage == 'no-marker': marker.unlink()
    elif damage == 'marker-counts':
        info = json.loads(marker.read_text()); info['counts']['train']['bag'] += 1; marker.write_text(json.dumps(info))
    elif damage == 'marker-garbage': marker.write_text('{not json')
    elif damage == 'file-deleted': (path/'val'/'coat'/'00004.png').unlink()
    elif damage == 'file-added': touch(path/'train'/'coat'/'99999.png')
    elif damage == 'class-folder-deleted':
        import shutil; shutil.rmtree(path/'train'/'bag')
    assert fashion_folder(show_progress=False) == path
    assert 'building it again' in capsys.readouterr().out
    assert all_pngs(path) == good
    assert json.loads(marker.read_text())['counts']['train']['bag'] == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ['fashion_mnist', 'fashion_mnist_png']

def test_fashion_folder_half_written_tree_without_marker(fake_fashion):
    # what a build killed before the rename leaves at the final name if it was copied by hand: some files, no marker
    path = ds.data_dir()/'fashion_mnist_png'
    touch(path/'train'/'bag'/'00008.png', b'not even a png')
    fashion_folder(show_progress=False)
    assert len(all_pngs(path)) == N_TRAIN + N_VALID
    assert np.array(Image.open(path/'train'/'bag'/'00008.png')).shape == (28, 28)

def test_fashion_folder_failed_build_leaves_nothing(fake_fashion, monkeypatch):
    def boom(job): raise OSError('disk full')
    monkeypatch.setattr(ds, '_write_pngs', boom)
    with pytest.raises(OSError, match='disk full'): fashion_folder(show_progress=False)
    assert sorted(p.name for p in ds.data_dir().iterdir()) == ['fashion_mnist']

def test_fashion_folder_removes_partials_of_dead_processes_only(fake_fashion):
    dead = subprocess.Popen([sys.executable, '-c', 'pass']); dead.wait()
    stale = touch(ds.data_dir()/f'.fashion_mnist_png.{dead.pid}.abc.partial'/'train'/'x.png').parent.parent
    live = touch(ds.data_dir()/f'.fashion_mnist_png.{os.getppid()}.def.partial'/'x').parent  # a running process
    other = touch(ds.data_dir()/f'.fashion_mnist_png_5.{dead.pid}.ghi.partial'/'x').parent   # another tree's
    fashion_folder(show_progress=False)
    assert not stale.exists() and live.exists() and other.exists()

def test_fashion_folder_subset(fake_fashion):
    path = fashion_folder(2, show_progress=False)
    assert path.name == 'fashion_mnist_png_2'
    counts = ds.tree_info(path)['counts']
    assert counts['train'] == {c: 2 for c in ds.FASHION_FOLDER_CLASSES}
    assert counts['val'] == {c: 2 for c in ds.FASHION_FOLDER_CLASSES[:4]} | {c: 1 for c in ds.FASHION_FOLDER_CLASSES[4:7]}
    assert (path/'train'/'trouser'/'00011.png').exists() and not (path/'train'/'trouser'/'00021.png').exists()
    for bad in (0, -1, 2.5, True, '3'):
        with pytest.raises(ValueError, match='n_per_class'): fashion_folder(bad)

def test_fashion_folder_missing_source(tmp_path, monkeypatch):
    monkeypatch.setenv('MYLIB_DATA', str(tmp_path/'cache'))
    monkeypatch.setattr(ds, 'DEBIAN_FASHION', tmp_path/'no-debian-here')
    with pytest.raises(DatasetMissing, match='Fashion-MNIST not found'): fashion_folder()

def test_fashion_folder_feeds_the_pipeline(fake_fashion):
    path = fashion_folder(show_progress=False)
    il = ImageList.from_files(path, tfms=[to_byte_tensor, to_float_tensor])
    sd = SplitData.split_by_func(il, partial(grandparent_splitter, valid_name='val'))
    ll = label_by_func(sd, parent_labeler, proc_y=CategoryProcessor())
    assert (len(ll.train), len(ll.valid)) == (N_TRAIN, N_VALID)
    x = fake_fashion['t10k-images-idx3-ubyte.gz']
    for i in range(len(ll.valid)):
        fn = ll.valid.x.items[i]
        assert torch.equal(ll.valid[i][0][0], torch.tensor(x[int(fn.stem)], dtype=torch.float32) / 255)
        assert ll.valid.y_obj(i) == fn.parent.name

# ---------------------------------------------------------------------------------------------------- untar_data

def tarball(members, mode='w:gz'):
    "The bytes of a tarball holding `members`: {name: bytes} files, or TarInfo objects as they are."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo): tar.addfile(m, io.BytesIO(b'x' * m.size) if m.isfile() else None)
            else:
                ti = tarfile.TarInfo(m[0]); ti.size = len(m[1])
                tar.addfile(ti, io.BytesIO(m[1]))
    return buf.getvalue()

GOOD_TGZ = tarball([('tiny/train/a/1.png', b'one'), ('tiny/val/a/2.png', b'two'), ('tiny/README', b'hi')])

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('MYLIB_DATA', str(tmp_path/'cache'))
    return tmp_path/'cache'

def test_untar_data_downloads_and_extracts_once(local_server, cache):
    local_server.files['/tiny.tgz'] = GOOD_TGZ
    url = local_server.url + '/tiny.tgz'
    path = untar_data(url, md5=md5(GOOD_TGZ), show_progress=False)
    assert path == cache/'tiny'
    assert (path/'train'/'a'/'1.png').read_bytes() == b'one' and (path/'README').read_bytes() == b'hi'
    assert (cache/'archives'/'tiny.tgz').read_bytes() == GOOD_TGZ
    assert untar_data(url, md5=md5(GOOD_TGZ)) == path
    assert local_server.requests == ['/tiny.tgz']  # the second call did not download
    assert sorted(p.name for p in cache.iterdir()) == ['archives', 'tiny']

def test_untar_data_archive_without_top_folder(local_server, cache):
    data = tarball([('train/a/1.png', b'1'), ('val/a/2.png', b'2')], mode='w')
    local_server.files['/flat.tar'] = data
    path = untar_data(local_server.url + '/flat.tar', show_progress=False)
    assert path == cache/'flat' and (path/'val'/'a'/'2.png').read_bytes() == b'2'

def test_untar_data_reuses_a_verified_archive(local_server, cache):
    touch(cache/'archives'/'tiny.tgz', GOOD_TGZ)
    path = untar_data(local_server.url + '/tiny.tgz', md5=md5(GOOD_TGZ))
    assert local_server.requests == [] and (path/'README').exists()

def test_untar_data_bad_checksum(local_server, cache):
    local_server.files['/tiny.tgz'] = GOOD_TGZ
    with pytest.raises(DataError, match='checksum mismatch'):
        untar_data(local_server.url + '/tiny.tgz', md5='0' * 32, show_progress=False)
    assert not (cache/'tiny').exists()
    assert list((cache/'archives').iterdir()) == []

EVIL = {
    'dotdot': [('tiny/ok.txt', b'ok'), ('../evil.txt', b'gotcha')],
    'dotdot-inside': [('tiny/../../evil.txt', b'gotcha')],
    'absolute': [('/tmp/evil.txt', b'gotcha')],
}

def _link(kind, name, target):
    ti = tarfile.TarInfo(name); ti.type = kind; ti.linkname = target
    return ti

@pytest.mark.parametrize('members,match', [
    (EVIL['dotdot'], r"refusing to extract member '\.\./evil\.txt'.*outside"),
    (EVIL['dotdot-inside'], r"'tiny/\.\./\.\./evil\.txt'.*outside"),
    (EVIL['absolute'], r"'/tmp/evil\.txt'.*outside"),
    ([('tiny/a', b'a'), _link(tarfile.SYMTYPE, 'tiny/passwd', '/etc/passwd')], r"'tiny/passwd'.*link"),
    ([('tiny/a', b'a'), _link(tarfile.LNKTYPE, 'tiny/hard', '/etc/passwd')], r"'tiny/hard'.*link"),
], ids=['dotdot', 'dotdot-inside', 'absolute', 'symlink', 'hardlink'])
def test_untar_data_refuses_unsafe_members(local_server, cache, tmp_path, members, match):
    local_server.files['/evil.tgz'] = tarball(members)
    with pytest.raises(DataError, match=match) as e:
        untar_data(local_server.url + '/evil.tgz', show_progress=False)
    assert str(e.value).startswith('evil ')  # the message names the dataset
    assert not (cache/'evil').exists() and not (cache/'evil.txt').exists() and not (tmp_path/'evil.txt').exists()
    assert sorted(p.name for p in cache.iterdir()) == ['archives']  # nothing extracted, no temporary folder left

def test_untar_data_not_a_tarball(local_server, cache):
    local_server.files['/junk.tgz'] = b'this is not a tarball at all'
    with pytest.raises(DataError, match='junk.*not a readable tar archive'):
        untar_data(local_server.url + '/junk.tgz', show_progress=False)
    assert sorted(p.name for p in cache.iterdir()) == ['archives'] and not (cache/'archives'/'junk.tgz').exists()

def test_untar_data_unreachable_names_the_dataset(local_server, cache):
    with pytest.raises(DatasetMissing, match=r'^imagenette2-160: could not download .*Not Found.*fashion_mnist'):
        untar_data(local_server.url + '/imagenette2-160.tgz', show_progress=False)
    with pytest.raises(DatasetMissing, match=r'^imagewoof2-160: could not download'):
        untar_data('http://127.0.0.1:9/imagewoof2-160.tgz', show_progress=False)  # nothing listens on port 9
    assert not (cache/'imagenette2-160').exists()

def test_untar_data_needs_an_archive_url():
    with pytest.raises(ValueError, match='does not name'): untar_data('http://127.0.0.1:9/data.zip')

def test_get_image_folder(local_server, cache, monkeypatch):
    local_server.files['/imagenette2-160.tgz'] = tarball([('imagenette2-160/train/n0/1.JPEG', b'j')])
    monkeypatch.setitem(ds.IMAGENETTE_URLS, 'imagenette2-160', local_server.url + '/imagenette2-160.tgz')
    path = get_image_folder('imagenette2-160', show_progress=False)
    assert path == cache/'imagenette2-160' and (path/'train'/'n0'/'1.JPEG').exists()
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"): get_image_folder('imagenet')

def test_imagenette_urls():
    assert ds.IMAGENETTE_URLS['imagenette2-160'] == 'https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz'
    assert set(ds.IMAGENETTE_MD5) <= set(ds.IMAGENETTE_URLS.values())


def test_rgb_folders_train_through_the_cnn_builders(tmp_path):
    "Colour and greyscale files, made RGB by make_rgb, give a DataBunch with c_in=3 that get_learner's CNN trains on."
    import torch.nn.functional as F
    from mylib.core import set_seed
    from mylib.learner import get_learner
    from mylib.stats import AvgStatsCallback
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for cls in ('cat', 'dog'):
            d = tmp_path/split/cls; d.mkdir(parents=True)
            for i in range(6):
                mode = 'L' if i % 3 == 0 else 'RGB'  # a few greyscale files among the colour ones, as in Imagenette
                shape = (16, 16) if mode == 'L' else (16, 16, 3)
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(d/f'{i}.png')
    il = ImageList.from_files(tmp_path, tfms=[make_rgb, ResizeFixed(16), to_byte_tensor, to_float_tensor])
    sd = SplitData.split_by_func(il, partial(grandparent_splitter, valid_name='val'))
    data = label_by_func(sd, parent_labeler, proc_y=CategoryProcessor()).to_databunch(4)
    assert (data.c_in, data.c_out) == (3, 2)
    set_seed(0)
    learn = get_learner([4, 8], data, lr=1e-2, cb_funcs=partial(AvgStatsCallback, [], show=False))
    assert learn.model[0][0].in_channels == 3
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1)
    assert any(not torch.equal(b, p) for b, p in zip(before, learn.model.parameters()))
    assert learn.avg_stats.history[-1]['valid_loss'] == learn.avg_stats.history[-1]['valid_loss']  # not NaN
