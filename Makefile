# The two commands: `make test` (quick, what CI runs) and `make course` (the full run that writes the outputs).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Debian packages that hold the course's offline data (see mylib.datasets).
DATA_DEBS := dataset-fashion-mnist

.PHONY: env data test course export clean-nbs check-export

# The environment: made once, rebuilt only when the pins or the packaging change.
$(STAMP): requirements.txt setup.py settings.ini
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

env: $(STAMP)

# Data: Debian's packages where apt-get works as root, else downloads through mylib.datasets.
data: $(STAMP)
	@if [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then \
	  echo "data: Fashion-MNIST found in /usr/share/datasets/fashion-mnist"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(DATA_DEBS); \
	else \
	  $(PY) -m mylib.datasets fashion_mnist; \
	fi

check-export: $(STAMP)
	$(PY) tools/check_export.py

test: $(STAMP) data check-export
	# two notebooks at a time, one torch thread each: 2 cores, and no thread waits for a busy core
	MYLIB_QUICK=1 MYLIB_THREADS=1 $(VENV)/bin/nbdev_test --n_workers 2 --timing
	$(PY) -m pytest -q tests/

course: $(STAMP) data
	$(PY) tools/run_course.py $(NBS)

export: $(STAMP)
	$(VENV)/bin/nbdev_export

clean-nbs: $(STAMP)
	$(VENV)/bin/nbdev_clean
