variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "events" { type = string }
variable "port" { type = number }
variable "ha" { type = bool }

resource "terraform_data" "db" {
  input = "db.internal"
}

output "hostname" { value = terraform_data.db.output }
output "port" { value = var.port }
