resource "terraform_data" "this" {
  input = var.nclav_partition
}

variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
output "hostname" { value = "hostname" }
output "port" { value = "port" }
