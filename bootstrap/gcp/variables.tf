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

variable "agent_count" {
  description = "Worker pool instances running `nclav agent` (0: none, and the service runs terraform itself). With agents the server runs `--agents-only`, and the API takes internal traffic only, without the IAM invoker check: see the README."
  type        = number
  default     = 0

  validation {
    condition     = var.agent_count >= 0 && floor(var.agent_count) == var.agent_count
    error_message = "agent_count must be a whole number, 0 or more."
  }
}

variable "agent_parallelism" {
  description = "Runs one agent instance executes at the same time (`nclav agent --parallelism`); each terraform process may take 200-500 MB."
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
  description = "vCPUs per agent instance."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.agent_cpu)
    error_message = "agent_cpu must be one of Cloud Run's sizes: 1, 2, 4, 6 or 8."
  }
}

variable "agent_memory" {
  description = "Memory per agent instance (Cloud Run allows up to 4Gi per vCPU). The filesystem lives in memory too: about agent_parallelism x 500Mi for terraform, plus the providers in the plugin cache."
  type        = string
  default     = "4Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.agent_memory))
    error_message = "agent_memory must look like 4Gi or 3072Mi."
  }
}

variable "agent_subnet_cidr" {
  description = "Range of the nclav-agents subnet the worker pool sends its traffic through (Direct VPC egress; /26 at the smallest)."
  type        = string
  default     = "10.42.0.0/24"

  validation {
    condition     = can(cidrnetmask(var.agent_subnet_cidr)) && try(tonumber(split("/", var.agent_subnet_cidr)[1]) <= 26, false)
    error_message = "agent_subnet_cidr must be an IPv4 range of /26 or larger, e.g. 10.42.0.0/24."
  }
}
