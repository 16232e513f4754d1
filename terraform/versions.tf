terraform {
  # 1.9 is the first version whose variable validations may refer to other variables (the
  # timeout/ack-deadline and rate-budget rules in variables.tf rely on it).
  required_version = ">= 1.9"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
