# nclav — developer targets. The hosted-platform targets (bootstrap-*, push-*, connect*)
# arrive with the hosted platform work; see the README's status table.
SWIFT ?= swift
NCLAV := .build/debug/nclav

.PHONY: setup deps build test validate-examples demo clean

## setup: install what is missing, build, validate the examples, then apply them (demo)
setup: deps build validate-examples demo

## demo: apply examples/local through a background `nclav serve` (run it again: "No changes.")
demo: build
	@bash scripts/demo.sh

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
