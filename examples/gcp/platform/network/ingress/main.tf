terraform {
  required_providers {
    google = { source = "hashicorp/google", version = "~> 6.0" }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "project_id" { type = string }
variable "region" { type = string }
variable "identity" { type = string }

output "hostname" { value = "ingress.${var.region}.platform.internal" }
output "port" { value = 443 }
