variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "region" { type = string }
variable "banner" { type = string }

resource "terraform_data" "gateway" {
  input = "gw.${var.region}.internal"
}

output "hostname" { value = terraform_data.gateway.output }
output "port" { value = 443 }
