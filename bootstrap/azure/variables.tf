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
