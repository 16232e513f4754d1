# Two identities, each with only the grants its job needs (all of them on single resources).

# The service's own identity: writes the replica and publishes the work it fans out.
# Granted in storage.tf (object admin on the bucket) and pubsub.tf (publisher and viewer on the
# three work topics).
resource "google_service_account" "run" {
  account_id   = "${var.service_name}-run"
  display_name = "all-docs service (${var.service_name})"
  description  = "Runs the all-docs Cloud Run service: writes the replica bucket, publishes to the work topics."
}

# The identity Pub/Sub signs push requests as. Its only grant is run.invoker on the service
# (run.tf); the Pub/Sub service agent may mint its tokens (pubsub.tf).
resource "google_service_account" "push" {
  account_id   = "${var.service_name}-push"
  display_name = "all-docs push (${var.service_name})"
  description  = "Identity of Pub/Sub's push requests to the all-docs service."
}
