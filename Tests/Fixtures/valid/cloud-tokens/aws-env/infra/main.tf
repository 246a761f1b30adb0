variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "project" { type = string }
variable "region" { type = string }
variable "nclav_account_id" { type = string }
variable "nclav_role_arn" { type = string }
resource "terraform_data" "infra" {
  input = var.project
}
