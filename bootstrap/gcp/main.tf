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
resource "google_cloud_run_v2_service" "api" {
  name                = "nclav-api"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

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
      args  = ["serve", "--bind", "0.0.0.0", "--port", "8080", "--cloud", var.default_cloud]

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
