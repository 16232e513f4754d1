output "service_url" {
  description = "URL of the Cloud Run service (reachable only from internal sources)."
  value       = google_cloud_run_v2_service.all_docs.uri
}

output "topics" {
  description = "Work type => topic name (publish work items here)."
  value       = { for kind, topic in google_pubsub_topic.work : kind => topic.name }
}

output "dead_letter_subscriptions" {
  description = "Work type => pull subscription that keeps its dead letters."
  value       = { for kind, sub in google_pubsub_subscription.dead_letter_pull : kind => sub.name }
}

output "bucket" {
  description = "Bucket holding the replica."
  value       = google_storage_bucket.replica.name
}

output "store" {
  description = "The service's ALL_DOCS_STORE."
  value       = "gs://${google_storage_bucket.replica.name}"
}

output "service_account" {
  description = "E-mail of the service's own identity."
  value       = google_service_account.run.email
}

output "push_service_account" {
  description = "E-mail of the identity Pub/Sub pushes as."
  value       = google_service_account.push.email
}

output "image_repository" {
  description = "Where to push images: REPOSITORY/all-docs:TAG."
  value       = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
}
