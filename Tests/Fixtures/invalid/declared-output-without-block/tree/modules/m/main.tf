resource "terraform_data" "m" { input = 1 }
output "port" {
  value = 1
}
