"""Packaging for mylib (nbdev 2): metadata from settings.ini, exact pins from requirements.txt."""
from configparser import ConfigParser
from pathlib import Path
import re
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

def pinned(names):
    "Each runtime requirement `names` pinned to the exact version in requirements.txt (the one place versions live)."
    pins = {}
    for line in (here/'requirements.txt').read_text().splitlines():
        m = re.match(r'^([A-Za-z0-9_.\-]+)==(\S+)', line.strip())
        if m: pins[m[1].lower().replace('_', '-')] = line.strip()
    missing = [n for n in names if n.lower() not in pins]
    if missing: raise SystemExit(f'setup.py: {missing} not pinned in requirements.txt; add them with an exact version')
    return [pins[n.lower()] for n in names]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    long_description=(here/'README.md').read_text(encoding='utf-8'), long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'], license='Apache-2.0', keywords=cfg['keywords'].split(),
    url=cfg['git_url'], packages=setuptools.find_packages(include=['mylib', 'mylib.*']),
    include_package_data=True, python_requires='>=' + cfg['min_python'],
    install_requires=pinned(cfg['requirements'].split()), zip_safe=False,
    entry_points={'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']},
)
