locals {
  image   = "${azurerm_container_registry.nclav.login_server}/nclav:${var.image_tag}"
  db_name = "nclav"
  db_url  = "postgres://nclav:${urlencode(random_password.db.result)}@${azurerm_postgresql_flexible_server.state.fqdn}:5432/${local.db_name}?sslmode=require"

  agents = var.agent_count > 0
  agent_args = concat(
    ["agent", "--parallelism", tostring(var.agent_parallelism)],
    var.agent_pool != "" ? ["--labels", "pool=${var.agent_pool}"] : [],
  )
  # The token agents hold; the server is given only <id>:<sha256 of the secret part>, which
  # it registers in the database at start (`nclav agent-token hash` prints the same).
  agent_token        = local.agents ? "nclav-agent.${random_id.agent_token_id[0].hex}.${random_id.agent_token_secret[0].hex}" : ""
  agent_registration = local.agents ? "${random_id.agent_token_id[0].hex}:${sha256(random_id.agent_token_secret[0].hex)}" : ""
}

resource "random_string" "suffix" {
  length  = 6
  special = false
  upper   = false
}

# Phase 1 (targeted by `make bootstrap-azure` before the image push): the group and the registry.
resource "azurerm_resource_group" "nclav" {
  name     = var.resource_group_name
  location = var.location
}

resource "azurerm_container_registry" "nclav" {
  name                = var.acr_name
  resource_group_name = azurerm_resource_group.nclav.name
  location            = azurerm_resource_group.nclav.location
  sku                 = "Basic"
  admin_enabled       = false
}

# The server's identity: pulls the image, reads Key Vault, vends subscriptions.
resource "azurerm_user_assigned_identity" "server" {
  name                = "nclav-server"
  resource_group_name = azurerm_resource_group.nclav.name
  location            = azurerm_resource_group.nclav.location
}

resource "azurerm_role_assignment" "acr_pull" {
  scope                = azurerm_container_registry.nclav.id
  role_definition_name = "AcrPull"
  principal_id         = azurerm_user_assigned_identity.server.principal_id
}

# State database: PostgreSQL Flexible Server 16.
resource "random_password" "db" {
  length  = 32
  special = false
}

resource "azurerm_postgresql_flexible_server" "state" {
  name                          = "nclav-state-${random_string.suffix.result}"
  resource_group_name           = azurerm_resource_group.nclav.name
  location                      = azurerm_resource_group.nclav.location
  version                       = "16"
  sku_name                      = var.postgres_sku
  storage_mb                    = 32768
  backup_retention_days         = 14
  administrator_login           = "nclav"
  administrator_password        = random_password.db.result
  public_network_access_enabled = true

  lifecycle {
    ignore_changes = [zone]
  }
}

resource "azurerm_postgresql_flexible_server_database" "nclav" {
  name      = local.db_name
  server_id = azurerm_postgresql_flexible_server.state.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

# Container Apps egress comes from Azure: allow Azure services (0.0.0.0 rule), TLS required.
resource "azurerm_postgresql_flexible_server_firewall_rule" "azure_services" {
  name             = "allow-azure-services"
  server_id        = azurerm_postgresql_flexible_server.state.id
  start_ip_address = "0.0.0.0"
  end_ip_address   = "0.0.0.0"
}

# Secrets: only Key Vault holds the token and the database URL.
resource "random_bytes" "api_token" {
  length = 32
}

resource "azurerm_key_vault" "nclav" {
  name                       = var.key_vault_name
  resource_group_name        = azurerm_resource_group.nclav.name
  location                   = azurerm_resource_group.nclav.location
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  rbac_authorization_enabled = true
  purge_protection_enabled   = true
  soft_delete_retention_days = 30
}

resource "azurerm_role_assignment" "deployer_secrets" {
  scope                = azurerm_key_vault.nclav.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_role_assignment" "server_secrets" {
  scope                = azurerm_key_vault.nclav.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.server.principal_id
}

resource "azurerm_key_vault_secret" "api_token" {
  name         = "nclav-api-token"
  value        = random_bytes.api_token.hex
  key_vault_id = azurerm_key_vault.nclav.id
  depends_on   = [azurerm_role_assignment.deployer_secrets]
}

resource "azurerm_key_vault_secret" "db_url" {
  name         = "nclav-db-url"
  value        = local.db_url
  key_vault_id = azurerm_key_vault.nclav.id
  depends_on   = [azurerm_role_assignment.deployer_secrets]
}

# The API: a Container App with a public HTTPS ingress; every route but /health and /ready
# needs the token.
resource "azurerm_log_analytics_workspace" "nclav" {
  name                = "nclav-logs-${random_string.suffix.result}"
  resource_group_name = azurerm_resource_group.nclav.name
  location            = azurerm_resource_group.nclav.location
  sku                 = "PerGB2018"
  retention_in_days   = 30
}

resource "azurerm_container_app_environment" "nclav" {
  name                       = "nclav"
  resource_group_name        = azurerm_resource_group.nclav.name
  location                   = azurerm_resource_group.nclav.location
  log_analytics_workspace_id = azurerm_log_analytics_workspace.nclav.id
}

resource "azurerm_container_app" "api" {
  name                         = "nclav-api"
  resource_group_name          = azurerm_resource_group.nclav.name
  container_app_environment_id = azurerm_container_app_environment.nclav.id
  revision_mode                = "Single"

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.server.id]
  }

  registry {
    server   = azurerm_container_registry.nclav.login_server
    identity = azurerm_user_assigned_identity.server.id
  }

  secret {
    name                = "nclav-api-token"
    key_vault_secret_id = azurerm_key_vault_secret.api_token.versionless_id
    identity            = azurerm_user_assigned_identity.server.id
  }

  secret {
    name                = "nclav-db-url"
    key_vault_secret_id = azurerm_key_vault_secret.db_url.versionless_id
    identity            = azurerm_user_assigned_identity.server.id
  }

  ingress {
    external_enabled = true
    target_port      = 8080
    transport        = "http"
    traffic_weight {
      latest_revision = true
      percentage      = 100
    }
  }

  template {
    min_replicas = var.min_replicas
    max_replicas = var.max_replicas

    container {
      name   = "nclav"
      image  = local.image
      cpu    = 1
      memory = "2Gi"
      # With agents the server runs no terraform itself: runs become jobs for the agents app.
      args = concat(
        ["serve", "--bind", "0.0.0.0", "--port", "8080", "--cloud", var.default_cloud],
        local.agents ? ["--agents-only"] : [],
      )

      env {
        name        = "NCLAV_TOKEN"
        secret_name = "nclav-api-token"
      }
      env {
        name        = "NCLAV_POSTGRES_URL"
        secret_name = "nclav-db-url"
      }
      env {
        name  = "AZURE_CLIENT_ID"
        value = azurerm_user_assigned_identity.server.client_id
      }
      env {
        name  = "NCLAV_AZURE_TENANT_ID"
        value = data.azurerm_client_config.current.tenant_id
      }
      env {
        name  = "NCLAV_AZURE_MANAGEMENT_GROUP_ID"
        value = var.management_group_id
      }
      env {
        name  = "NCLAV_AZURE_BILLING_ACCOUNT_NAME"
        value = var.billing_account_name
      }
      env {
        name  = "NCLAV_AZURE_BILLING_PROFILE_NAME"
        value = var.billing_profile_name
      }
      env {
        name  = "NCLAV_AZURE_INVOICE_SECTION_NAME"
        value = var.invoice_section_name
      }
      env {
        name  = "NCLAV_AZURE_DEFAULT_LOCATION"
        value = var.location
      }
      env {
        name  = "NCLAV_AZURE_SUBSCRIPTION_PREFIX"
        value = var.subscription_prefix
      }
      # A hash, not a secret: it lets the server recognise the agents' token.
      dynamic "env" {
        for_each = local.agents ? [local.agent_registration] : []
        content {
          name  = "NCLAV_AGENT_TOKEN_HASHES"
          value = env.value
        }
      }

      startup_probe {
        transport               = "HTTP"
        port                    = 8080
        path                    = "/ready"
        interval_seconds        = 5
        failure_count_threshold = 10
      }

      readiness_probe {
        transport = "HTTP"
        port      = 8080
        path      = "/ready"
      }

      liveness_probe {
        transport        = "HTTP"
        port             = 8080
        path             = "/health"
        interval_seconds = 30
      }
    }
  }

  depends_on = [azurerm_role_assignment.acr_pull, azurerm_role_assignment.server_secrets]
}

# Agents (agent_count > 0): a Container App of `nclav agent` replicas that claim the server's
# runs over the API and run terraform; the server (`--agents-only`) then runs none itself.
resource "random_id" "agent_token_secret" {
  count       = local.agents ? 1 : 0
  byte_length = 32
}

resource "random_id" "agent_token_id" {
  count       = local.agents ? 1 : 0
  byte_length = 6
  # The server registers a token's hash once per id and never overwrites it, so a new secret
  # needs a new id: `-replace` of the secret replaces both.
  keepers = {
    secret = sha256(random_id.agent_token_secret[0].hex)
  }
}

resource "azurerm_key_vault_secret" "agent_token" {
  count        = local.agents ? 1 : 0
  name         = "nclav-agent-token"
  value        = local.agent_token
  key_vault_id = azurerm_key_vault.nclav.id
  depends_on   = [azurerm_role_assignment.deployer_secrets]
}

# The agents run as nclav-server's managed identity, not one of their own. Without an OIDC
# issuer, the Azure driver hands terraform nclav's own managed identity: each job carries
# ARM_USE_MSI, that identity's client id and the managed-identity endpoint as the server
# sees it (a localhost address, the same in every Container App), and terraform asks the
# agent's own endpoint for a token for that identity, which only works when it is attached
# here too. The same identity pulls the image and reads the token from Key Vault.
resource "azurerm_container_app" "agents" {
  count                        = local.agents ? 1 : 0
  name                         = "nclav-agents"
  resource_group_name          = azurerm_resource_group.nclav.name
  container_app_environment_id = azurerm_container_app_environment.nclav.id
  revision_mode                = "Single"

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.server.id]
  }

  registry {
    server   = azurerm_container_registry.nclav.login_server
    identity = azurerm_user_assigned_identity.server.id
  }

  secret {
    name                = "nclav-agent-token"
    key_vault_secret_id = azurerm_key_vault_secret.agent_token[0].versionless_id
    identity            = azurerm_user_assigned_identity.server.id
  }

  # No ingress and no probes: agents serve no port; they call the API's public HTTPS address.
  template {
    min_replicas = var.agent_count
    max_replicas = var.agent_count
    # SIGTERM interrupts running terraform (SIGINT, then SIGKILL after the server's
    # --run-grace-period, 60 s by default) and reports it before the agent exits.
    termination_grace_period_seconds = 120

    container {
      name  = "nclav-agent"
      image = local.image
      cpu   = var.agent_cpu
      # The Consumption profile pairs each vCPU with 2 GiB.
      memory = "${var.agent_cpu * 2}Gi"
      args   = local.agent_args

      env {
        name  = "NCLAV_URL"
        value = "https://${azurerm_container_app.api.ingress[0].fqdn}"
      }
      env {
        name        = "NCLAV_AGENT_TOKEN"
        secret_name = "nclav-agent-token"
      }
      # Not read by nclav. A changed secret alone starts no new revision (secrets belong to
      # the app, not the template); a new token comes with a new id, and this changed value
      # starts a revision that reads the new secret.
      env {
        name  = "NCLAV_AGENT_TOKEN_ID"
        value = random_id.agent_token_id[0].hex
      }
    }
  }

  depends_on = [azurerm_role_assignment.acr_pull, azurerm_role_assignment.server_secrets]
}
