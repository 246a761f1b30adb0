variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
resource "terraform_data" "web" {
  input = var.nclav_partition
}
