resource "terraform_data" "a" { input = 1 }
output "hostname" { value = "h" }
# output "url" is only a comment
