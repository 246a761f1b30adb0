output "api_url" {
  description = "The Container App's HTTPS URL."
  value       = "https://${azurerm_container_app.api.ingress[0].fqdn}"
}

output "registry" {
  description = "ACR login server; `make push-acr` pushes nclav:<tag> to it."
  value       = azurerm_container_registry.nclav.login_server
}

output "image" {
  description = "The image reference the app runs."
  value       = local.image
}

output "identity_principal_id" {
  description = "Object id of the nclav-server managed identity."
  value       = azurerm_user_assigned_identity.server.principal_id
}

output "key_vault_name" {
  description = "Key Vault holding nclav-api-token and nclav-db-url."
  value       = azurerm_key_vault.nclav.name
}

output "agent_count" {
  description = "Agent replicas (0: the API app runs terraform itself)."
  value       = var.agent_count
}

output "agent_token_secret" {
  description = "Key Vault secret holding the agents' token (null without agents)."
  value       = one(azurerm_key_vault_secret.agent_token[*].name)
}

output "agent_token_id" {
  description = "Id of the agents' token, as `nclav agent-token list` shows it (revoke an old one after a rotation)."
  value       = one(random_id.agent_token_id[*].hex)
}

output "connect_commands" {
  description = "Commands that point the nclav CLI at this server."
  value       = <<-EOT
    export NCLAV_URL=https://${azurerm_container_app.api.ingress[0].fqdn}
    export NCLAV_TOKEN=$(az keyvault secret show --vault-name ${azurerm_key_vault.nclav.name} --name nclav-api-token --query value -o tsv)
  EOT
}

output "iam_setup_commands" {
  description = "One-time grants an Azure admin runs: the management group and the MCA invoice section."
  value       = <<-EOT
    # Owner on the management group that receives enclave subscriptions:
    az role assignment create --assignee-object-id ${azurerm_user_assigned_identity.server.principal_id} --assignee-principal-type ServicePrincipal --role Owner --scope /providers/Microsoft.Management/managementGroups/${var.management_group_id}
    # Create subscriptions on the invoice section (MCA billing role "Azure subscription creator"):
    az rest --method put --url "https://management.azure.com/providers/Microsoft.Billing/billingAccounts/${var.billing_account_name}/billingProfiles/${var.billing_profile_name}/invoiceSections/${var.invoice_section_name}/billingRoleAssignments/${uuidv5("url", "nclav-server/${azurerm_user_assigned_identity.server.principal_id}")}?api-version=2019-10-01-preview" --body '{"properties":{"principalId":"${azurerm_user_assigned_identity.server.principal_id}","principalTenantId":"${data.azurerm_client_config.current.tenant_id}","roleDefinitionId":"/providers/Microsoft.Billing/billingAccounts/${var.billing_account_name}/billingProfiles/${var.billing_profile_name}/invoiceSections/${var.invoice_section_name}/billingRoleDefinitions/a0bcee42-bf30-4d1b-926a-48d21664ef71"}}'
  EOT
}
