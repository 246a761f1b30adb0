terraform {
  required_providers {
    azurerm = { source = "hashicorp/azurerm", version = "~> 4.0" }
  }
}

provider "azurerm" {
  features {}
  subscription_id = var.project_id
}

variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "project_id" { type = string }
variable "region" { type = string }
variable "identity" { type = string }

output "hostname" { value = "ingress.${var.region}.platform.internal" }
output "port" { value = 443 }
