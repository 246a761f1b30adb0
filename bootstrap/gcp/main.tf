locals {
  apis = [
    "artifactregistry.googleapis.com",
    "cloudasset.googleapis.com",
    "cloudbilling.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "dns.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "sqladmin.googleapis.com",
  ]
  image           = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.nclav.repository_id}/nclav:${var.image_tag}"
  billing_account = trimprefix(var.billing_account, "billingAccounts/")
  # Cloud Run reaches Cloud SQL through the mounted connector socket: no public IP, no TLS to
  # manage, and the nclav URL names the socket directory (libpq's host=/dir form).
  db_url = "postgres://${google_sql_user.nclav.name}:${urlencode(random_password.db.result)}@localhost/${google_sql_database.nclav.name}?host=/cloudsql/${google_sql_database_instance.state.connection_name}&sslmode=disable"

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

# Phase 1 (targeted by `make bootstrap-gcp` before the image push): the APIs and the registry.
resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  service            = each.value
  disable_on_destroy = false
}

resource "google_artifact_registry_repository" "nclav" {
  location      = var.region
  repository_id = "nclav"
  format        = "DOCKER"
  description   = "nclav server images"
  depends_on    = [google_project_service.apis]
}

# The server's identity. Folder/org and billing grants are printed as iam_setup_commands.
resource "google_service_account" "server" {
  account_id   = "nclav-server"
  display_name = "nclav API server"
  depends_on   = [google_project_service.apis]
}

resource "google_project_iam_member" "server" {
  for_each = toset(["roles/cloudsql.client", "roles/logging.logWriter", "roles/monitoring.metricWriter"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.server.email}"
}

# State database: Cloud SQL for PostgreSQL 16.
resource "random_password" "db" {
  length  = 32
  special = false
}

resource "google_sql_database_instance" "state" {
  name                = "nclav-state"
  database_version    = "POSTGRES_16"
  region              = var.region
  deletion_protection = var.deletion_protection

  settings {
    tier              = var.db_tier
    edition           = "ENTERPRISE"
    availability_type = var.db_high_availability ? "REGIONAL" : "ZONAL"

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }

    ip_configuration {
      ipv4_enabled = true
      ssl_mode     = "ENCRYPTED_ONLY"
    }

    database_flags {
      name  = "max_connections"
      value = "100"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_sql_database" "nclav" {
  name     = "nclav"
  instance = google_sql_database_instance.state.name
}

resource "google_sql_user" "nclav" {
  name     = "nclav"
  instance = google_sql_database_instance.state.name
  password = random_password.db.result
}

# Secrets: only Secret Manager holds the token and the database URL.
resource "random_bytes" "api_token" {
  length = 32
}

resource "google_secret_manager_secret" "api_token" {
  secret_id = "nclav-api-token"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "api_token" {
  secret      = google_secret_manager_secret.api_token.id
  secret_data = random_bytes.api_token.hex
}

resource "google_secret_manager_secret" "db_url" {
  secret_id = "nclav-db-url"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "db_url" {
  secret      = google_secret_manager_secret.db_url.id
  secret_data = local.db_url
}

resource "google_secret_manager_secret_iam_member" "server" {
  for_each  = { token = google_secret_manager_secret.api_token.id, db = google_secret_manager_secret.db_url.id }
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.server.email}"
}

# The API: a private Cloud Run service (callers need run.invoker; `make connect` proxies).
# With agents it is private by network instead: agents cannot pass the IAM check (terraform's
# HTTP state backend sends no Google identity token), so the invoker check is off and only
# internal traffic reaches the service: the agents' VPC, and other networks of this project.
# Every route but /health and /ready still needs the token. People then call it from inside
# a VPC too (`gcloud run services proxy` from outside is refused); see the README.
resource "google_cloud_run_v2_service" "api" {
  name                 = "nclav-api"
  location             = var.region
  ingress              = local.agents ? "INGRESS_TRAFFIC_INTERNAL_ONLY" : "INGRESS_TRAFFIC_ALL"
  invoker_iam_disabled = local.agents
  deletion_protection  = var.deletion_protection

  template {
    service_account = google_service_account.server.email
    timeout         = "3600s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.state.connection_name]
      }
    }

    containers {
      image = local.image
      # With agents the server runs no terraform itself: runs become jobs for the worker pool.
      args = concat(
        ["serve", "--bind", "0.0.0.0", "--port", "8080", "--cloud", var.default_cloud],
        local.agents ? ["--agents-only"] : [],
      )

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = "2"
          memory = "2Gi"
        }
        # Terraform runs in the background of a request: keep CPU allocated.
        cpu_idle = false
      }

      env {
        name = "NCLAV_TOKEN"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.api_token.secret_id
            version = "latest"
          }
        }
      }

      env {
        name = "NCLAV_POSTGRES_URL"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.db_url.secret_id
            version = "latest"
          }
        }
      }

      env {
        name  = "NCLAV_GCP_PARENT"
        value = var.enclave_parent
      }

      env {
        name  = "NCLAV_GCP_BILLING_ACCOUNT"
        value = "billingAccounts/${local.billing_account}"
      }

      env {
        name  = "NCLAV_GCP_PROJECT_PREFIX"
        value = var.project_prefix
      }

      env {
        name  = "NCLAV_GCP_DEFAULT_REGION"
        value = var.region
      }

      # A hash, not a secret: it lets the server recognise the agents' token.
      dynamic "env" {
        for_each = local.agents ? [local.agent_registration] : []
        content {
          name  = "NCLAV_AGENT_TOKEN_HASHES"
          value = env.value
        }
      }

      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }

      startup_probe {
        initial_delay_seconds = 2
        period_seconds        = 5
        failure_threshold     = 24
        http_get {
          path = "/ready"
          port = 8080
        }
      }

      liveness_probe {
        period_seconds    = 30
        failure_threshold = 3
        http_get {
          path = "/health"
          port = 8080
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.server,
    google_secret_manager_secret_version.api_token,
    google_secret_manager_secret_version.db_url,
    google_project_iam_member.server,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(var.invoker_members)
  name     = google_cloud_run_v2_service.api.name
  location = var.region
  role     = "roles/run.invoker"
  member   = each.value
}

# Agents (agent_count > 0): a Cloud Run worker pool of `nclav agent` instances that claim the
# server's runs over the API and run terraform; the server (`--agents-only`) then runs none.
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

resource "google_secret_manager_secret" "agent_token" {
  count     = local.agents ? 1 : 0
  secret_id = "nclav-agent-token"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "agent_token" {
  count       = local.agents ? 1 : 0
  secret      = google_secret_manager_secret.agent_token[0].id
  secret_data = local.agent_token
}

# The agents' own identity, not nclav-server's: terraform on an agent never acts as it. Each
# job carries an access token the server mints for the partition's service account, and the
# agent runs terraform with every GOOGLE_/CLOUDSDK_ variable replaced by it. So the agents
# need none of the folder and billing roles; they read their token and write logs.
resource "google_service_account" "agent" {
  count        = local.agents ? 1 : 0
  account_id   = "nclav-agent"
  display_name = "nclav agents"
  depends_on   = [google_project_service.apis]
}

resource "google_project_iam_member" "agent" {
  for_each = local.agents ? toset(["roles/logging.logWriter", "roles/monitoring.metricWriter"]) : toset([])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.agent[0].email}"
}

resource "google_secret_manager_secret_iam_member" "agent" {
  count     = local.agents ? 1 : 0
  secret_id = google_secret_manager_secret.agent_token[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.agent[0].email}"
}

# The agents' network. Cloud Run counts a request to the API's run.app URL as internal only
# when it comes through a VPC: Direct VPC egress with all traffic sent into the VPC, on a
# subnet with Private Google Access (which also carries the Google API calls terraform makes).
# Everything else (provider downloads, other clouds' APIs) leaves through Cloud NAT.
resource "google_compute_network" "agents" {
  count                   = local.agents ? 1 : 0
  name                    = "nclav-agents"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "agents" {
  count                    = local.agents ? 1 : 0
  name                     = "nclav-agents"
  region                   = var.region
  network                  = google_compute_network.agents[0].id
  ip_cidr_range            = var.agent_subnet_cidr
  private_ip_google_access = true
}

resource "google_compute_router" "agents" {
  count   = local.agents ? 1 : 0
  name    = "nclav-agents"
  region  = var.region
  network = google_compute_network.agents[0].id
}

resource "google_compute_router_nat" "agents" {
  count                              = local.agents ? 1 : 0
  name                               = "nclav-agents"
  router                             = google_compute_router.agents[0].name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
}

resource "google_cloud_run_v2_worker_pool" "agents" {
  count    = local.agents ? 1 : 0
  name     = "nclav-agents"
  location = var.region
  # Agents hold no state: scaling to 0 (which removes the pool) must not need a second apply.
  deletion_protection = false

  scaling {
    scaling_mode          = "MANUAL"
    manual_instance_count = var.agent_count
  }

  template {
    service_account = google_service_account.agent[0].email

    vpc_access {
      egress = "ALL_TRAFFIC"
      network_interfaces {
        network    = google_compute_network.agents[0].id
        subnetwork = google_compute_subnetwork.agents[0].id
      }
    }

    # No probes: an agent serves no port. Cloud Run keeps its filesystem in memory, so the
    # workspaces and the provider plugin cache count against agent_memory.
    containers {
      image = local.image
      args  = local.agent_args

      resources {
        limits = {
          cpu    = var.agent_cpu
          memory = var.agent_memory
        }
      }

      env {
        name  = "NCLAV_URL"
        value = google_cloud_run_v2_service.api.uri
      }

      env {
        name = "NCLAV_AGENT_TOKEN"
        value_source {
          # The version this apply wrote: a new token starts a new revision by itself.
          secret_key_ref {
            secret  = google_secret_manager_secret.agent_token[0].secret_id
            version = google_secret_manager_secret_version.agent_token[0].version
          }
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.agent,
    google_secret_manager_secret_version.agent_token,
    google_project_iam_member.agent,
    google_compute_router_nat.agents,
  ]
}
