variable "project_id" {
  description = "The dedicated platform project that hosts the nclav API (not an enclave project)."
  type        = string
}

variable "region" {
  description = "Region for Cloud Run, Cloud SQL and Artifact Registry."
  type        = string
  default     = "us-central1"
}

variable "enclave_parent" {
  description = "Where enclave projects are created: folders/<id> or organizations/<id>."
  type        = string

  validation {
    condition     = can(regex("^(folders|organizations)/[0-9]+$", var.enclave_parent))
    error_message = "enclave_parent must look like folders/123456789 or organizations/123456789."
  }
}

variable "billing_account" {
  description = "Billing account linked to enclave projects: billingAccounts/XXXXXX-YYYYYY-ZZZZZZ or the bare id."
  type        = string
}

variable "project_prefix" {
  description = "Prefix for enclave project ids (acme -> acme-product-a-dev)."
  type        = string
  default     = ""
}

variable "default_cloud" {
  description = "The server's default cloud for enclaves without `cloud:` (`gcp`: enclaves get their own project; `local`: no cloud calls)."
  type        = string
  default     = "gcp"

  validation {
    condition     = contains(["local", "gcp"], var.default_cloud)
    error_message = "default_cloud must be local or gcp for this platform."
  }
}

variable "image_tag" {
  description = "Tag of the nclav image pushed to Artifact Registry (make push-ar)."
  type        = string
  default     = "latest"
}

variable "db_tier" {
  description = "Cloud SQL machine tier for the state database."
  type        = string
  default     = "db-custom-1-3840"
}

variable "db_high_availability" {
  description = "REGIONAL (high availability) instead of ZONAL Cloud SQL."
  type        = bool
  default     = false
}

variable "min_instances" {
  description = "Cloud Run instances kept warm. At least 1: runs in flight live in the server process."
  type        = number
  default     = 1
}

variable "max_instances" {
  description = "Cloud Run instances at most. Replicas share the database and reconcile one at a time."
  type        = number
  default     = 2
}

variable "invoker_members" {
  description = "Principals allowed to call the private Cloud Run service (user:you@example.com, group:platform@example.com)."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Protect the database and service from `terraform destroy`."
  type        = bool
  default     = true
}
