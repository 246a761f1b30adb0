variable "service_name" { type = string }
variable "upstream" { type = string }

resource "terraform_data" "service" {
  input = "${var.service_name}.internal"
}

output "hostname" { value = terraform_data.service.output }
output "port" { value = 8443 }
output "url" { value = "https://${terraform_data.service.output}:8443 (upstream ${var.upstream})" }
