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
variable "identity" { type = string }

output "hostname" { value = "ingress.${var.region}.platform.internal" }
output "port" { value = 443 }
