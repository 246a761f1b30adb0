variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "project" { type = string }
variable "region" { type = string }
resource "terraform_data" "infra" {
  input = var.project
}
