terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.0" }
  }
}

provider "aws" {
  region = var.region
}

variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "project_id" { type = string }
variable "region" { type = string }
variable "database" { type = string }
variable "events" { type = string }

output "hostname" { value = "api.shop.internal" }
output "port" { value = 8443 }
