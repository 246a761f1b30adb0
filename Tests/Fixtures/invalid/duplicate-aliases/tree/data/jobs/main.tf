resource "terraform_data" "this" {
  input = var.nclav_partition
}

variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
output "queue_url" { value = "queue_url" }
