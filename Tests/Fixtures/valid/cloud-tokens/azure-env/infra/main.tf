variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "project" { type = string }
variable "region" { type = string }
variable "nclav_subscription_id" { type = string }
variable "nclav_tenant_id" { type = string }
variable "nclav_resource_group" { type = string }
resource "terraform_data" "infra" {
  input = var.project
}
