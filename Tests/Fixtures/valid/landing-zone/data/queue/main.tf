variable "nclav_enclave" { type = string }
variable "nclav_partition" { type = string }
resource "terraform_data" "queue" {
  input = "queue://${var.nclav_enclave}/events"
}

output "queue_url" { value = terraform_data.queue.output }
