# nclav — developer targets. The hosted-platform targets (bootstrap-*, push-*, connect*)
# arrive with the hosted platform work; see the README's status table.
SWIFT ?= swift
NCLAV := .build/debug/nclav

.PHONY: setup deps build test validate-examples demo docs completions clean

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
	@for example in examples/*/; do $(NCLAV) validate "$$example" | tail -n 1; done

## docs: regenerate docs/cli.md from the CLI's own help
docs: build
	@bash scripts/gen-cli-docs.sh

## completions: install bash/zsh/fish completion scripts for the current user
completions: build
	@mkdir -p $(HOME)/.local/share/bash-completion/completions $(HOME)/.zfunc $(HOME)/.config/fish/completions
	$(NCLAV) --generate-completion-script bash > $(HOME)/.local/share/bash-completion/completions/nclav
	$(NCLAV) --generate-completion-script zsh > $(HOME)/.zfunc/_nclav
	$(NCLAV) --generate-completion-script fish > $(HOME)/.config/fish/completions/nclav.fish
	@echo "installed completions for bash, zsh (add ~/.zfunc to fpath) and fish"

clean:
	rm -rf .build
