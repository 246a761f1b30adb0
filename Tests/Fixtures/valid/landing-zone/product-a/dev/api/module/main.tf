variable "db_url" { type = string }
variable "public_host" { type = string }

resource "terraform_data" "api" {
  input = var.public_host
}

output "hostname" { value = terraform_data.api.output }
output "port" { value = 8443 }
