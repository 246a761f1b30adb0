# nclav — developer targets, then the hosted-platform targets (bootstrap-*, push-*, connect*).
SWIFT ?= swift
NCLAV := .build/debug/nclav
# terraform or tofu drive the bootstrap modules.
TF ?= terraform
IMAGE_TAG ?= latest
DOCKER ?= docker

.PHONY: setup deps build test format format-check validate-examples demo docs completions clean image \
	bootstrap-gcp push-ar connect bootstrap-azure push-acr connect-azure bootstrap-aws push-ecr connect-aws

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

## test: the formatting check (.swift-format), then the whole test suite (real terraform, real processes)
test: deps format-check
	$(SWIFT) test

## format: apply .swift-format to the sources; format-check: fail on any difference
format:
	$(SWIFT) format --in-place --recursive Sources Tests Plugins Package.swift

format-check:
	$(SWIFT) format lint --strict --recursive Sources Tests Plugins Package.swift

validate-examples: build
	@for example in examples/*/; do printf '%s: ' "$${example%/}"; $(NCLAV) validate "$$example" | tail -n 1; done

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

## image: build the server image (multi-stage Dockerfile; terraform and tofu inside)
image:
	$(DOCKER) build --platform linux/amd64 -t nclav:$(IMAGE_TAG) .

# --- Hosted platform ---------------------------------------------------------------------
# `require` stops make while it expands a recipe, so `make -n` fails too when a variable is
# missing, before anything runs.
require = $(if $(strip $($(1))),,$(error $(1) is required: $(2)))

# GCP: Cloud Run + Cloud SQL + Secret Manager + Artifact Registry (bootstrap/gcp).
AR_REGION ?= us-central1
AR_IMAGE = $(AR_REGION)-docker.pkg.dev/$(GCP_PROJECT)/nclav/nclav:$(IMAGE_TAG)

## bootstrap-gcp: registry + APIs, image push, then everything else (GCP_PROJECT=…)
bootstrap-gcp:
	$(call require,GCP_PROJECT,make bootstrap-gcp GCP_PROJECT=my-platform-project [AR_REGION=us-central1])
	cd bootstrap/gcp && $(TF) init -input=false
	cd bootstrap/gcp && $(TF) apply -var project_id=$(GCP_PROJECT) -var region=$(AR_REGION) \
		-target=google_project_service.apis -target=google_artifact_registry_repository.nclav
	$(MAKE) --no-print-directory push-ar GCP_PROJECT=$(GCP_PROJECT) AR_REGION=$(AR_REGION) IMAGE_TAG=$(IMAGE_TAG)
	cd bootstrap/gcp && $(TF) apply -var project_id=$(GCP_PROJECT) -var region=$(AR_REGION) -var image_tag=$(IMAGE_TAG)
	@echo "next: cd bootstrap/gcp && $(TF) output -raw iam_setup_commands; then eval \$$(make connect GCP_PROJECT=$(GCP_PROJECT))"

## push-ar: build the image and push it to Artifact Registry (GCP_PROJECT=…, AR_REGION=…)
push-ar:
	$(call require,GCP_PROJECT,make push-ar GCP_PROJECT=my-platform-project [AR_REGION=us-central1])
	gcloud auth configure-docker $(AR_REGION)-docker.pkg.dev --quiet
	$(DOCKER) build --platform linux/amd64 -t $(AR_IMAGE) .
	$(DOCKER) push $(AR_IMAGE)

## connect: proxy the private Cloud Run service to :8080; prints exports for eval (GCP_PROJECT=…)
connect:
	$(call require,GCP_PROJECT,eval $$(make connect GCP_PROJECT=my-platform-project))
	@pgrep -f 'gcloud run services proxy nclav-api' >/dev/null || \
		(nohup gcloud run services proxy nclav-api --project=$(GCP_PROJECT) --region=$(AR_REGION) --port=8080 >/tmp/nclav-proxy.log 2>&1 &)
	@echo "export NCLAV_URL=http://localhost:8080; export NCLAV_TOKEN=$$(gcloud secrets versions access latest --secret=nclav-api-token --project=$(GCP_PROJECT))"

# Azure: Container App + PostgreSQL Flexible Server + Key Vault + ACR (bootstrap/azure).
ACR_IMAGE = $(AZURE_ACR).azurecr.io/nclav:$(IMAGE_TAG)

## bootstrap-azure: resource group + ACR, image push, then everything else (AZURE_ACR=…)
bootstrap-azure:
	$(call require,AZURE_ACR,make bootstrap-azure AZURE_ACR=myorgnclav)
	cd bootstrap/azure && $(TF) init -input=false
	cd bootstrap/azure && $(TF) apply -var acr_name=$(AZURE_ACR) \
		-target=azurerm_resource_group.nclav -target=azurerm_container_registry.nclav
	$(MAKE) --no-print-directory push-acr AZURE_ACR=$(AZURE_ACR) IMAGE_TAG=$(IMAGE_TAG)
	cd bootstrap/azure && $(TF) apply -var acr_name=$(AZURE_ACR) -var image_tag=$(IMAGE_TAG)
	@echo "next: cd bootstrap/azure && $(TF) output -raw iam_setup_commands; then eval \$$(make connect-azure)"

## push-acr: build the image and push it to ACR (AZURE_ACR=…)
push-acr:
	$(call require,AZURE_ACR,make push-acr AZURE_ACR=myorgnclav)
	az acr login --name $(AZURE_ACR)
	$(DOCKER) build --platform linux/amd64 -t $(ACR_IMAGE) .
	$(DOCKER) push $(ACR_IMAGE)

## connect-azure: prints exports for eval, from the module's outputs and Key Vault
connect-azure:
	@cd bootstrap/azure && echo "export NCLAV_URL=$$($(TF) output -raw api_url); export NCLAV_TOKEN=$$(az keyvault secret show --vault-name $$($(TF) output -raw key_vault_name) --name nclav-api-token --query value -o tsv)"

# AWS: ECS Fargate + ALB + RDS + ECR + Secrets Manager (bootstrap/aws).
AWS_REGION ?= us-east-1
ECR_HOST = $(AWS_ACCOUNT).dkr.ecr.$(AWS_REGION).amazonaws.com
ECR_IMAGE = $(ECR_HOST)/nclav:$(IMAGE_TAG)

## bootstrap-aws: ECR repository, image push, then everything else (AWS_ACCOUNT=…)
bootstrap-aws:
	$(call require,AWS_ACCOUNT,make bootstrap-aws AWS_ACCOUNT=123456789012 [AWS_REGION=us-east-1])
	cd bootstrap/aws && $(TF) init -input=false
	cd bootstrap/aws && $(TF) apply -var region=$(AWS_REGION) -target=aws_ecr_repository.nclav
	$(MAKE) --no-print-directory push-ecr AWS_ACCOUNT=$(AWS_ACCOUNT) AWS_REGION=$(AWS_REGION) IMAGE_TAG=$(IMAGE_TAG)
	cd bootstrap/aws && $(TF) apply -var region=$(AWS_REGION) -var image_tag=$(IMAGE_TAG)
	@echo "next: cd bootstrap/aws && $(TF) output -raw iam_setup_commands; then eval \$$(make connect-aws)"

## push-ecr: build the image and push it to ECR (AWS_ACCOUNT=…, AWS_REGION=…)
push-ecr:
	$(call require,AWS_ACCOUNT,make push-ecr AWS_ACCOUNT=123456789012 [AWS_REGION=us-east-1])
	aws ecr get-login-password --region $(AWS_REGION) | $(DOCKER) login --username AWS --password-stdin $(ECR_HOST)
	$(DOCKER) build --platform linux/amd64 -t $(ECR_IMAGE) .
	$(DOCKER) push $(ECR_IMAGE)

## connect-aws: prints exports for eval, from the module's outputs and Secrets Manager
connect-aws:
	@cd bootstrap/aws && echo "export NCLAV_URL=$$($(TF) output -raw api_url); export NCLAV_TOKEN=$$(aws secretsmanager get-secret-value --region $(AWS_REGION) --secret-id nclav-api-token --query SecretString --output text)"
