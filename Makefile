# Quick start: `make serve` and `make test` on a fresh machine (see README.md).
PYTHON ?= python3
VENV   ?= .venv
# The CPU wheel lies on disk on CPU hosts; on a GPU host pick the CUDA build you want.
TORCH  ?= torch==2.13.0
EXTRAS ?= onnx,train,dev,loadtest
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell echo '$(TORCH) $(EXTRAS)' | md5sum | cut -c1-8)

HOST ?= 127.0.0.1
PORT ?= 8000
MODEL ?= models/scott-tiny

.PHONY: venv model embedded-model serve test lint fmt bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

# Until the distilled embedded model is committed (issue 3), make a small random-weight model of
# the same architecture, deterministic from seed 0.
$(MODEL)/model_index.json: | $(STAMP)
	$(BIN)/scott make-model --preset tiny --seed 0 --out $(MODEL)

model: $(MODEL)/model_index.json

# The full embedded-model recipe (VAE -> latents -> teacher -> SCott student), resumable; see scott/recipe/README.md.
embedded-model: $(STAMP)
	$(BIN)/python -m scott.recipe.embedded --out runs/embedded --config recipes/embedded.toml --resume --export $(MODEL)

serve: $(STAMP) $(MODEL)/model_index.json
	$(BIN)/scott serve --model $(MODEL) --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python benchmarks/serving.py

# Deploy (README "Deploy"): the images need a Docker engine; deploy-check validates the deploy files without one.
.PHONY: image image-cpu deploy-check
image:
	docker build -t scott-serve:0.1.0 .

image-cpu:
	docker build --target cpu -t scott-serve:0.1.0-cpu .

deploy-check: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_deploy_compose.py tests/test_deploy_docker.py tests/test_deploy_k8s.py \
		tests/test_deploy_dashboard.py

clean:
	rm -rf $(VENV) build *.egg-info
