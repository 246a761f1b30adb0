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
variable "database" { type = string }
variable "events" { type = string }

output "hostname" { value = "api.shop.internal" }
output "port" { value = 8443 }
