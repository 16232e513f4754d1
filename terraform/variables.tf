# Where to deploy. No defaults: a missing value is an error, never a guess.

variable "project" {
  description = "Google Cloud project id that holds everything."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service, the image repository and the bucket."
  type        = string
}

variable "image" {
  description = "Container image of the service, e.g. REGION-docker.pkg.dev/PROJECT/all-docs/all-docs:TAG. Later rollouts change it with gcloud (see docs/deploy.md); Terraform sets the first one."
  type        = string
}

variable "bucket" {
  description = "Name of the bucket that holds the replica (globally unique). The service writes object names from the bucket's root (`v1/...`, `tmp/...`)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be a bucket name: 3-63 lowercase letters, digits, '.', '_' or '-'."
  }
}

variable "replicate_origin" {
  description = "Replication origin (serves /, _all_docs, _changes), e.g. https://replicate.example.com."
  type        = string

  validation {
    condition     = can(regex("^https://[^/@?#]+(/[^?#]*)?$", var.replicate_origin))
    error_message = "replicate_origin must be an https URL without credentials, query or fragment."
  }
}

variable "registry_origin" {
  description = "Registry origin (serves package documents by name), e.g. https://registry.example.com."
  type        = string

  validation {
    condition     = can(regex("^https://[^/@?#]+(/[^?#]*)?$", var.registry_origin))
    error_message = "registry_origin must be an https URL without credentials, query or fragment."
  }
}

# Names.

variable "service_name" {
  description = "Name of the Cloud Run service; also the prefix of its two service accounts and the image repository."
  type        = string
  default     = "all-docs"
}

variable "topic_partition_set" {
  description = "Topic of partition-set items (ALL_DOCS_TOPIC_PARTITION_SET)."
  type        = string
  default     = "partition-set"
}

variable "topic_partition" {
  description = "Topic of partition items (ALL_DOCS_TOPIC_PARTITION)."
  type        = string
  default     = "partition"
}

variable "topic_packument" {
  description = "Topic of packument items (ALL_DOCS_TOPIC_PACKUMENT)."
  type        = string
  default     = "packument"
}

variable "topic_changes" {
  description = "Topic of the change-feed ticks (POST /work/changes reads one batch of _changes per tick)"
  type        = string
  default     = "changes"
}

variable "changes_schedule" {
  description = "Cloud Scheduler cron of the change-feed ticks (each reads up to 10000 changes)"
  type        = string
  default     = "* * * * *"
}

variable "push_audience" {
  description = "Audience of the push requests' OIDC tokens: set on the subscriptions, accepted by Cloud Run as a custom audience and checked again by the service (ALL_DOCS_PUSH_AUDIENCE). An identifier, not an address: the .invalid domain never resolves."
  type        = string
  default     = "https://all-docs.invalid/push"
}

# The service's size. service.yaml states the same values; tests/deploy checks they agree.

variable "concurrency" {
  description = "Requests one instance serves at once (containerConcurrency; also ALL_DOCS_MAX_IN_FLIGHT)."
  type        = number
  default     = 100
}

variable "cpu" {
  description = "CPU limit of an instance."
  type        = string
  default     = "2"
}

variable "memory" {
  description = "Memory limit of an instance (a 100 MB packument is streamed, never held twice)."
  type        = string
  default     = "2Gi"
}

variable "timeout_seconds" {
  description = "Cloud Run request timeout. Must not exceed the push subscriptions' ack deadline, or Pub/Sub would redeliver work that is still running."
  type        = number
  default     = 300
}

variable "request_budget_seconds" {
  description = "Time one push request may take inside the service before it answers 503 and the message is redelivered (ALL_DOCS_REQUEST_BUDGET). Below timeout_seconds, so the service answers before Cloud Run cuts the request."
  type        = number
  default     = 240

  validation {
    condition     = var.request_budget_seconds >= 1 && var.request_budget_seconds < var.timeout_seconds
    error_message = "request_budget_seconds must be at least 1 and below timeout_seconds."
  }
}

# The upstream's rate budget, and how it is shared. Each instance has its own rate governor
# (ALL_DOCS_MAX_RPS caps it; it adapts below that on 429s), and instances do not coordinate, so
# the fleet's worst case is max_instances * max_rps_per_instance requests per second per origin.

variable "upstream_rps_budget" {
  description = "Requests per second the whole deployment may send to one origin. Measured well-behaved crawls sustain about 84 full documents/s; 80 stays under that."
  type        = number
  default     = 80
}

variable "max_rps_per_instance" {
  description = "Requests per second one instance may send to one origin at most (ALL_DOCS_MAX_RPS)."
  type        = number
  default     = 20
}

variable "max_instances" {
  description = "Most instances Cloud Run may start: upstream_rps_budget / max_rps_per_instance = 80 / 20 = 4."
  type        = number
  default     = 4

  validation {
    condition     = var.max_instances >= 1 && var.max_instances * var.max_rps_per_instance <= var.upstream_rps_budget
    error_message = "max_instances * max_rps_per_instance must not exceed upstream_rps_budget."
  }
}

# Pub/Sub delivery.

variable "ack_deadline_seconds" {
  description = "Ack deadline of the push subscriptions: how long Pub/Sub waits for the service's answer (Pub/Sub allows 10-600)."
  type        = number
  default     = 600

  validation {
    condition     = var.ack_deadline_seconds >= var.timeout_seconds && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be at least timeout_seconds and at most 600."
  }
}

variable "min_backoff_seconds" {
  description = "Retry policy: first wait before a nacked message is redelivered."
  type        = number
  default     = 10
}

variable "max_backoff_seconds" {
  description = "Retry policy: longest wait between redeliveries (Pub/Sub allows up to 600)."
  type        = number
  default     = 600

  validation {
    condition     = var.max_backoff_seconds >= var.min_backoff_seconds && var.max_backoff_seconds <= 600
    error_message = "max_backoff_seconds must be at least min_backoff_seconds and at most 600."
  }
}

variable "max_delivery_attempts" {
  description = "Deliveries before a message moves to its dead-letter topic (Pub/Sub allows 5-100). The service waits for the rate governor instead of nacking on 429s, so rate limiting does not use these up."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be 5..100."
  }
}

variable "message_retention_seconds" {
  description = "How long the push subscriptions keep unacknowledged work (Pub/Sub allows 600-2678400)."
  type        = number
  default     = 604800
}

variable "dead_letter_retention_seconds" {
  description = "How long the dead-letter subscriptions keep dead letters: the longest Pub/Sub allows (31 days), time to inspect and replay them."
  type        = number
  default     = 2678400
}

# The bucket.

variable "bucket_versioning" {
  description = "Keep overwritten and deleted objects as noncurrent versions, so a bad run can be undone."
  type        = bool
  default     = true
}

variable "noncurrent_version_days" {
  description = "Days a noncurrent version is kept before the lifecycle rule deletes it."
  type        = number
  default     = 14
}

variable "deletion_protection" {
  description = "Refuse to destroy the Cloud Run service and the bucket (with objects) from Terraform."
  type        = bool
  default     = true
}
