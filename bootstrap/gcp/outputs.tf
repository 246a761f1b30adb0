output "api_url" {
  description = "The Cloud Run URL (private: reach it through `make connect`, which runs `gcloud run services proxy`; with agents, from inside a VPC of the project instead)."
  value       = google_cloud_run_v2_service.api.uri
}

output "image" {
  description = "The image reference the service runs; `make push-ar` pushes to it."
  value       = local.image
}

output "registry" {
  description = "Artifact Registry host and repository for docker push."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.nclav.repository_id}"
}

output "service_account" {
  description = "The server's service account."
  value       = google_service_account.server.email
}

output "database_instance" {
  description = "The Cloud SQL connection name."
  value       = google_sql_database_instance.state.connection_name
}

output "token_secret" {
  description = "Secret Manager secret holding the API token."
  value       = google_secret_manager_secret.api_token.secret_id
}

output "agent_count" {
  description = "Agent instances (0: the service runs terraform itself)."
  value       = var.agent_count
}

output "agent_token_secret" {
  description = "Secret Manager secret holding the agents' token (null without agents)."
  value       = one(google_secret_manager_secret.agent_token[*].secret_id)
}

output "agent_token_id" {
  description = "Id of the agents' token, as `nclav agent-token list` shows it (revoke an old one after a rotation)."
  value       = one(random_id.agent_token_id[*].hex)
}

output "connect_commands" {
  description = "Commands that point the nclav CLI at this server."
  value       = <<-EOT
    ${local.agents ? "# With agents the service takes internal traffic only: run these inside a VPC of ${var.project_id}." : "gcloud run services proxy ${google_cloud_run_v2_service.api.name} --project=${var.project_id} --region=${var.region} --port=8080 &"}
    export NCLAV_URL=${local.agents ? google_cloud_run_v2_service.api.uri : "http://localhost:8080"}
    export NCLAV_TOKEN=$(gcloud secrets versions access latest --secret=${google_secret_manager_secret.api_token.secret_id} --project=${var.project_id})
  EOT
}

output "iam_setup_commands" {
  description = "One-time grants an organization admin runs: folder/org roles for project vending and billing use."
  value       = <<-EOT
    # Roles on ${var.enclave_parent} for nclav-server (project creation, IAM, networking, DNS, asset search):
    %{for role in ["roles/resourcemanager.projectCreator", "roles/resourcemanager.projectDeleter", "roles/resourcemanager.projectIamAdmin", "roles/iam.serviceAccountAdmin", "roles/serviceusage.serviceUsageAdmin", "roles/compute.networkAdmin", "roles/dns.admin", "roles/cloudasset.viewer"]~}
    gcloud ${startswith(var.enclave_parent, "folders/") ? "resource-manager folders" : "organizations"} add-iam-policy-binding ${split("/", var.enclave_parent)[1]} --member=serviceAccount:${google_service_account.server.email} --role=${role}
    %{endfor~}
    # Link enclave projects to the billing account:
    gcloud billing accounts add-iam-policy-binding ${local.billing_account} --member=serviceAccount:${google_service_account.server.email} --role=roles/billing.user
  EOT
}
