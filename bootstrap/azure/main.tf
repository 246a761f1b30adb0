locals {
  image   = "${azurerm_container_registry.nclav.login_server}/nclav:${var.image_tag}"
  db_name = "nclav"
  db_url  = "postgres://nclav:${urlencode(random_password.db.result)}@${azurerm_postgresql_flexible_server.state.fqdn}:5432/${local.db_name}?sslmode=require"
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
      args   = ["serve", "--bind", "0.0.0.0", "--port", "8080", "--cloud", var.default_cloud]

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
