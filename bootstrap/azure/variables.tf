variable "subscription_id" {
  description = "The dedicated platform subscription that hosts the nclav API (not an enclave subscription)."
  type        = string
}

variable "location" {
  description = "Azure region for every platform resource."
  type        = string
  default     = "eastus2"
}

variable "resource_group_name" {
  description = "Resource group for the platform."
  type        = string
  default     = "nclav-platform"
}

variable "acr_name" {
  description = "Azure Container Registry name (globally unique, 5-50 letters and digits)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9]{5,50}$", var.acr_name))
    error_message = "acr_name must be 5-50 letters and digits."
  }
}

variable "key_vault_name" {
  description = "Key Vault name (globally unique, 3-24 characters)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$", var.key_vault_name))
    error_message = "key_vault_name must be 3-24 letters, digits and dashes, starting with a letter."
  }
}

variable "management_group_id" {
  description = "Management group that enclave subscriptions are moved into."
  type        = string
}

variable "billing_account_name" {
  description = "MCA billing account name for subscription aliases."
  type        = string
}

variable "billing_profile_name" {
  description = "MCA billing profile name."
  type        = string
}

variable "invoice_section_name" {
  description = "MCA invoice section name."
  type        = string
}

variable "subscription_prefix" {
  description = "Prefix for enclave subscription aliases (myorg -> myorg-product-a-dev)."
  type        = string
  default     = ""
}

variable "default_cloud" {
  description = "The server's default cloud for enclaves without `cloud:` (`azure`: enclaves get their own subscription; `local`: no cloud calls)."
  type        = string
  default     = "azure"

  validation {
    condition     = contains(["local", "azure"], var.default_cloud)
    error_message = "default_cloud must be local or azure for this platform."
  }
}

variable "image_tag" {
  description = "Tag of the nclav image pushed to ACR (make push-acr)."
  type        = string
  default     = "latest"
}

variable "postgres_sku" {
  description = "PostgreSQL Flexible Server SKU."
  type        = string
  default     = "B_Standard_B1ms"
}

variable "min_replicas" {
  description = "Container App replicas kept running (at least 1: runs in flight live in the server process)."
  type        = number
  default     = 1
}

variable "max_replicas" {
  description = "Container App replicas at most; they share the database and reconcile one at a time."
  type        = number
  default     = 2
}

variable "agent_count" {
  description = "Replicas of the nclav-agents Container App running `nclav agent` (0: none, and the API app runs terraform itself). With agents the server runs `--agents-only` and every run waits for an agent."
  type        = number
  default     = 0

  validation {
    condition     = var.agent_count >= 0 && var.agent_count <= 300 && floor(var.agent_count) == var.agent_count
    error_message = "agent_count must be a whole number from 0 to 300 (a Container App's replica limit)."
  }
}

variable "agent_parallelism" {
  description = "Runs one agent replica executes at the same time (`nclav agent --parallelism`); each terraform process may take 200-500 MB."
  type        = number
  default     = 2

  validation {
    condition     = var.agent_parallelism >= 1 && floor(var.agent_parallelism) == var.agent_parallelism
    error_message = "agent_parallelism must be a whole number, 1 or more."
  }
}

variable "agent_pool" {
  description = "Pool the agents serve (`--labels pool=<name>`): they also run enclaves with that `agent_pool`. Empty: only enclaves that name no pool."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z]([a-z0-9-]{0,61}[a-z0-9])?)?$", var.agent_pool))
    error_message = "agent_pool must be empty or an nclav id, as the enclaves' `agent_pool`: 1-63 lowercase letters, digits and dashes, starting with a letter, not ending with a dash."
  }
}

variable "agent_cpu" {
  description = "vCPUs per agent replica; the Consumption profile gives 2 GiB of memory per vCPU (1 -> 2Gi). Size it for agent_parallelism x 500 MB."
  type        = number
  default     = 1

  validation {
    condition     = var.agent_cpu >= 0.25 && var.agent_cpu <= 4 && floor(var.agent_cpu * 4) == var.agent_cpu * 4
    error_message = "agent_cpu must be 0.25 to 4 in steps of 0.25."
  }
}
