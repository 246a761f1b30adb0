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
variable "region" { type = string }
variable "public_host" { type = string }
variable "project_id" {
  type    = string
  default = ""
}

output "hostname" { value = var.public_host }
output "port" { value = 443 }
