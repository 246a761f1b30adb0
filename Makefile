# nclav — developer targets. The hosted-platform targets (bootstrap-*, push-*, connect*)
# arrive with the hosted platform work; see the README's status table.
SWIFT ?= swift
NCLAV := .build/debug/nclav

.PHONY: setup deps build test validate-examples clean

## setup: install what is missing, build, then validate the shipped examples
setup: deps build validate-examples
	@echo
	@echo "nclav is built at $(NCLAV). Try: $(NCLAV) validate examples/local"

## deps: system packages and tool checks (idempotent)
deps:
	@bash scripts/setup.sh

build:
	$(SWIFT) build

## test: the whole test suite (real terraform, real processes)
test: deps
	$(SWIFT) test

validate-examples: build
	$(NCLAV) validate examples/local

clean:
	rm -rf .build
