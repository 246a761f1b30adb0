variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "region" { type = string }

resource "terraform_data" "edge" {
  input = "edge.${var.region}.${var.nclav_enclave}.internal"
}

output "hostname" { value = terraform_data.edge.output }
output "port" { value = 443 }
