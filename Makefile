# The two commands: `make test` (quick, what CI runs) and `make course` (the full run that writes the outputs).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Debian packages that hold the course's offline data (see mylib.datasets and mylib.corpora), and a file of each.
DATA_DEBS  := dataset-fashion-mnist python3.11-doc fortunes fortunes-min
DATA_FILES := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz \
              /usr/share/doc/python3.11/html/_sources/library/os.rst.txt \
              /usr/share/games/fortunes/people /usr/share/games/fortunes/fortunes

.PHONY: env data test course export clean-nbs check-export

# The environment: made once, rebuilt only when the pins or the packaging change.
$(STAMP): requirements.txt setup.py settings.ini
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

env: $(STAMP)

# Data: Debian's packages where apt-get works as root, else downloads through mylib.datasets (Fashion-MNIST only:
# the text corpora of notebooks 12-12c come from Debian's packages, or by URL as WikiText-103 and IMDB).
data: $(STAMP)
	@missing=""; for f in $(DATA_FILES); do [ -f "$$f" ] || missing="$$missing $$f"; done; \
	if [ -z "$$missing" ]; then \
	  echo "data: Fashion-MNIST, Python's documentation sources and the fortunes found in /usr/share"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DATA_DEBS); \
	else \
	  $(PY) -m mylib.datasets fashion_mnist; \
	  echo "data: not root, so the text corpora were not installed; run as root: apt-get install $(DATA_DEBS)"; \
	fi

check-export: $(STAMP)
	$(PY) tools/check_export.py

test: $(STAMP) data check-export
	# two notebooks at a time, one torch thread each: 2 cores, and no thread waits for a busy core
	MYLIB_QUICK=1 MYLIB_THREADS=1 $(VENV)/bin/nbdev_test --n_workers 2 --timing --skip_file_re '^([_.]|12b_|12c_|14a_gan)'
	# 12b starts from the word vectors 12_word_vectors saves, and 12c uses both and the language model 12b saves
	# (quick mode: their small ones), so they run after the others, in order
	MYLIB_QUICK=1 MYLIB_THREADS=1 $(VENV)/bin/nbdev_test --path nbs/12b_lm_pretrain.ipynb --timing
	MYLIB_QUICK=1 MYLIB_THREADS=1 $(VENV)/bin/nbdev_test --path nbs/12c_ulmfit.ipynb --timing
	# 14a starts from the U-Net that 14_unet saves (quick mode: its small one)
	MYLIB_QUICK=1 MYLIB_THREADS=1 $(VENV)/bin/nbdev_test --path nbs/14a_gan.ipynb --timing
	$(PY) -m pytest -q tests/

course: $(STAMP) data
	$(PY) tools/run_course.py $(NBS)

export: $(STAMP)
	$(VENV)/bin/nbdev_export

clean-nbs: $(STAMP)
	$(VENV)/bin/nbdev_clean
