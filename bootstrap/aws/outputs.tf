output "api_url" {
  description = "api_url when set, else the load balancer's URL (HTTPS when certificate_arn is set)."
  value       = local.api_url
}

output "registry" {
  description = "ECR repository URL; `make push-ecr` pushes nclav:<tag> to it."
  value       = aws_ecr_repository.nclav.repository_url
}

output "image" {
  description = "The image reference the service runs."
  value       = local.image
}

output "task_role_arn" {
  description = "The server's identity (nclav-server)."
  value       = aws_iam_role.server.arn
}

output "token_secret" {
  description = "Secrets Manager secret holding the API token."
  value       = aws_secretsmanager_secret.api_token.name
}

output "agent_count" {
  description = "Agent tasks (0: the API tasks run terraform themselves)."
  value       = var.agent_count
}

output "agent_token_secret" {
  description = "Secrets Manager secret holding the agents' token (null without agents)."
  value       = one(aws_secretsmanager_secret.agent_token[*].name)
}

output "agent_token_id" {
  description = "Id of the agents' token, as `nclav agent-token list` shows it (revoke an old one after a rotation)."
  value       = one(random_id.agent_token_id[*].hex)
}

output "connect_commands" {
  description = "Commands that point the nclav CLI at this server."
  value       = <<-EOT
    export NCLAV_URL=${local.api_url}
    export NCLAV_TOKEN=$(aws secretsmanager get-secret-value --region ${var.region} --secret-id ${aws_secretsmanager_secret.api_token.name} --query SecretString --output text)
  EOT
}

output "iam_setup_commands" {
  description = "One-time steps in the Organizations management account."
  value       = <<-EOT
    # nclav creates accounts with Organizations; all features must be on:
    aws organizations describe-organization --query Organization.FeatureSet   # expect "ALL"
    # The OU that receives enclave accounts must exist:
    aws organizations describe-organizational-unit --organizational-unit-id ${var.org_unit_id}
    # Tag-based orphan search across accounts needs trusted access for the tagging service:
    aws organizations enable-aws-service-access --service-principal tagpolicies.tag.amazonaws.com
    # The task role ${aws_iam_role.server.arn} already has the Organizations and sts:AssumeRole
    # (${var.cross_account_role}) permissions; run this module from the management account
    # (or a delegated administrator) so they take effect.
  EOT
}
