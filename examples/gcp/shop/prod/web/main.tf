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
variable "region" { type = string }
variable "public_host" { type = string }
variable "project_id" {
  type    = string
  default = ""
}

output "hostname" { value = var.public_host }
output "port" { value = 443 }
