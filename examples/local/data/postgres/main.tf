variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
variable "project" { type = string }
variable "jobs_queue" { type = string }

resource "terraform_data" "db" {
  input = "pg.${var.project}.internal"
  provisioner "local-exec" {
    command = "echo 'postgres for ${var.project} will drain ${var.jobs_queue}'"
  }
}

output "hostname" { value = terraform_data.db.output }
output "port" { value = 5432 }
