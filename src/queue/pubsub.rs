//! Pub/Sub: publishing work items to their topics, and creating the topics and subscriptions
//! on an emulator the way `terraform/` does in the cloud.
//!
//! Each work type has its own topic (`partition-set`, `partition`, `packument` by default); the
//! item's JSON is the message data and its type and id travel as attributes. Publishing uses the
//! official `google-cloud-pubsub` client with batching on; [`Publish::publish`] returns only
//! when Pub/Sub has accepted every message, so a handler that acks after it cannot lose the
//! work it fanned out.
//!
//! With `PUBSUB_EMULATOR_HOST` set, clients talk plain HTTP/2 to it without credentials;
//! otherwise they use Application Default Credentials (the metadata server on Cloud Run).

use std::collections::HashMap;
use std::time::Duration;

use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_pubsub::client::{Publisher, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{DeadLetterPolicy, Message, PushConfig, RetryPolicy, Subscription, Topic};

use crate::work::WorkItem;

/// The three work types, in fan-out order, then the change-feed tick (`POST /work/changes`).
pub const KINDS: [&str; 4] = ["partition-set", "partition", "packument", "changes"];

#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("Pub/Sub: no project: set GOOGLE_CLOUD_PROJECT (or pass --project)")]
    NoProject,
    #[error("Pub/Sub client for `{what}`: {reason}")]
    Client { what: String, reason: String },
    #[error("publishing {count} `{kind}` item(s) to `{topic}` failed: {reason}")]
    Publish {
        kind: String,
        topic: String,
        count: usize,
        reason: String,
    },
    #[error("Pub/Sub admin `{what}`: {reason}")]
    Admin { what: String, reason: String },
}

/// Where and how to reach Pub/Sub.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    pub project: String,
    /// Topic name (short, not `projects/..`) per work type.
    pub topics: HashMap<&'static str, String>,
    /// `host:port` of an emulator (from `PUBSUB_EMULATOR_HOST`).
    pub emulator: Option<String>,
}

impl PubSubConfig {
    /// Topic names from the defaults, overridden per type.
    pub fn new(project: &str, overrides: [Option<&str>; 4], emulator: Option<&str>) -> PubSubConfig {
        let topics = KINDS
            .iter()
            .zip(overrides)
            .map(|(kind, o)| (*kind, o.unwrap_or(kind).to_owned()))
            .collect();
        PubSubConfig {
            project: project.to_owned(),
            topics,
            emulator: emulator.filter(|e| !e.trim().is_empty()).map(str::to_owned),
        }
    }

    /// `projects/{project}/topics/{topic}` for a work type.
    pub fn topic_path(&self, kind: &str) -> String {
        let short = self.topics.get(kind).map_or(kind, String::as_str);
        format!("projects/{}/topics/{short}", self.project)
    }

    fn endpoint(&self) -> Option<String> {
        self.emulator.as_ref().map(|host| {
            if host.starts_with("http://") || host.starts_with("https://") {
                host.clone()
            } else {
                format!("http://{host}")
            }
        })
    }
}

/// Where handlers send the work they fan out.
#[async_trait::async_trait]
pub trait Publish: Send + Sync {
    /// Publishes every item to its type's topic; `Ok` once all are accepted.
    async fn publish(&self, items: &[WorkItem]) -> Result<(), PubSubError>;

    /// Whether publishing can work now (for the readiness probe).
    async fn ready(&self) -> Result<(), PubSubError>;
}

/// Publishes with the official client, one batching publisher per topic.
pub struct PubSubPublisher {
    config: PubSubConfig,
    publishers: HashMap<&'static str, Publisher>,
    admin: TopicAdmin,
}

impl PubSubPublisher {
    pub async fn connect(config: PubSubConfig) -> Result<PubSubPublisher, PubSubError> {
        let mut publishers = HashMap::new();
        for kind in KINDS {
            let topic = config.topic_path(kind);
            let mut builder = Publisher::builder(topic.clone())
                // Batching: a partition fans out thousands of items at once.
                .set_message_count_threshold(1000u32)
                .set_delay_threshold(Duration::from_millis(10));
            if let Some(endpoint) = config.endpoint() {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_credentials(Anonymous::new().build());
            }
            let publisher = builder.build().await.map_err(|e| PubSubError::Client {
                what: topic,
                reason: crate::registry::client::error_chain(&e),
            })?;
            publishers.insert(kind, publisher);
        }
        let mut admin = TopicAdmin::builder();
        if let Some(endpoint) = config.endpoint() {
            admin = admin.with_endpoint(endpoint).with_credentials(Anonymous::new().build());
        }
        let admin = admin.build().await.map_err(|e| PubSubError::Client {
            what: "topic admin".into(),
            reason: crate::registry::client::error_chain(&e),
        })?;
        Ok(PubSubPublisher {
            config,
            publishers,
            admin,
        })
    }

    pub fn config(&self) -> &PubSubConfig {
        &self.config
    }
}

#[async_trait::async_trait]
impl Publish for PubSubPublisher {
    async fn publish(&self, items: &[WorkItem]) -> Result<(), PubSubError> {
        let mut pending = Vec::with_capacity(items.len());
        for item in items {
            let kind = item.work.kind();
            let Some(publisher) = self.publishers.get(kind) else {
                return Err(PubSubError::Publish {
                    kind: kind.to_owned(),
                    topic: "-".to_owned(),
                    count: items.len(),
                    reason: "no topic is configured for this work type".to_owned(),
                });
            };
            let message = Message::new()
                .set_data(item.to_json().into_bytes())
                .set_attributes([("type", kind), ("id", item.id.as_str())]);
            pending.push((kind, publisher.publish(message)));
        }
        let mut failed: Option<(&str, String)> = None;
        let mut count = 0;
        for (kind, future) in pending {
            if let Err(e) = future.await {
                count += 1;
                failed.get_or_insert((kind, crate::registry::client::error_chain(&e)));
            }
        }
        match failed {
            None => Ok(()),
            Some((kind, reason)) => Err(PubSubError::Publish {
                kind: kind.to_owned(),
                topic: self.config.topic_path(kind),
                count,
                reason,
            }),
        }
    }

    /// Every work topic exists and is visible (needs `pubsub.topics.get` on the topics).
    async fn ready(&self) -> Result<(), PubSubError> {
        // The topics the service publishes to (not the change ticks', which it only receives).
        for kind in KINDS.iter().filter(|k| **k != "changes") {
            let topic = self.config.topic_path(kind);
            self.admin
                .get_topic()
                .set_topic(topic.clone())
                .send()
                .await
                .map_err(admin_err(format!("get topic {topic}")))?;
        }
        Ok(())
    }
}

/// How `setup` creates the subscriptions (the emulator's mirror of `terraform/`).
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The service's base URL; each type's subscription pushes to `{url}/work/{type}`.
    pub push_url: String,
    pub ack_deadline: Duration,
    /// Retry policy `(minimum, maximum)` backoff; `None` leaves the subscriptions without one
    /// (Pub/Sub then redelivers a nacked message at once).
    pub backoff: Option<(Duration, Duration)>,
    /// Deliveries before a message goes to the dead-letter topic (5..=100).
    pub max_delivery_attempts: i32,
}

/// Names of what [`setup`] creates for a work type.
pub fn subscription_name(topic: &str) -> String {
    format!("{topic}-push")
}

pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}-dead-letter")
}

pub fn dead_letter_subscription(topic: &str) -> String {
    format!("{topic}-dead-letter-pull")
}

fn wkt(d: Duration) -> google_cloud_wkt::Duration {
    google_cloud_wkt::Duration::clamp(d.as_secs() as i64, d.subsec_nanos() as i32)
}

fn admin_err(what: String) -> impl FnOnce(google_cloud_pubsub::Error) -> PubSubError {
    move |e| PubSubError::Admin {
        reason: crate::registry::client::error_chain(&e),
        what,
    }
}

/// Creates, for each work type: its topic, a dead-letter topic with a pull subscription that
/// keeps dead letters, and a push subscription to the service with retry and dead-letter
/// policies. Existing resources are left as they are, so it can run again.
pub async fn setup(config: &PubSubConfig, opts: &SetupOptions) -> Result<Vec<String>, PubSubError> {
    if !(5..=100).contains(&opts.max_delivery_attempts) {
        return Err(PubSubError::Admin {
            what: "dead-letter policy".into(),
            reason: format!(
                "max delivery attempts must be 5..=100, got {}",
                opts.max_delivery_attempts
            ),
        });
    }
    let endpoint = config.endpoint();
    let mut topics = TopicAdmin::builder();
    let mut subs = SubscriptionAdmin::builder();
    if let Some(e) = &endpoint {
        topics = topics
            .with_endpoint(e.clone())
            .with_credentials(Anonymous::new().build());
        subs = subs.with_endpoint(e.clone()).with_credentials(Anonymous::new().build());
    }
    let client_err = |e: google_cloud_gax::client_builder::Error| PubSubError::Client {
        what: "admin".into(),
        reason: crate::registry::client::error_chain(&e),
    };
    let topics = topics.build().await.map_err(client_err)?;
    let subs = subs.build().await.map_err(client_err)?;
    let project = &config.project;
    let mut created = Vec::new();
    let exists = |e: &google_cloud_pubsub::Error| {
        e.status()
            .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::AlreadyExists)
    };
    for kind in KINDS {
        let short = config.topics.get(kind).map_or(kind, String::as_str);
        let topic = config.topic_path(kind);
        let dlq = format!("projects/{project}/topics/{}", dead_letter_topic(short));
        for name in [&topic, &dlq] {
            match topics.create_topic().set_name(name.clone()).send().await {
                Ok(Topic { name, .. }) => created.push(name),
                Err(e) if exists(&e) => {}
                Err(e) => return Err(admin_err(format!("create topic {name}"))(e)),
            }
        }
        let dlq_sub = format!("projects/{project}/subscriptions/{}", dead_letter_subscription(short));
        let push_sub = format!("projects/{project}/subscriptions/{}", subscription_name(short));
        let pull = Subscription::new()
            .set_name(dlq_sub.clone())
            .set_topic(dlq.clone())
            .set_ack_deadline_seconds(60)
            .set_message_retention_duration(wkt(Duration::from_secs(7 * 24 * 3600)));
        let mut push = Subscription::new()
            .set_name(push_sub.clone())
            .set_topic(topic.clone())
            .set_ack_deadline_seconds(opts.ack_deadline.as_secs().clamp(10, 600) as i32)
            .set_push_config(
                PushConfig::new().set_push_endpoint(format!("{}/work/{kind}", opts.push_url.trim_end_matches('/'))),
            )
            .set_dead_letter_policy(
                DeadLetterPolicy::new()
                    .set_dead_letter_topic(dlq.clone())
                    .set_max_delivery_attempts(opts.max_delivery_attempts),
            );
        if let Some((min, max)) = opts.backoff {
            push = push.set_retry_policy(
                RetryPolicy::new()
                    .set_minimum_backoff(wkt(min))
                    .set_maximum_backoff(wkt(max)),
            );
        }
        for sub in [pull, push] {
            let name = sub.name.clone();
            match subs.create_subscription().with_request(sub).send().await {
                Ok(s) => created.push(s.name),
                Err(e) if exists(&e) => {}
                Err(e) => return Err(admin_err(format!("create subscription {name}"))(e)),
            }
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_default_to_the_type_and_can_be_renamed() {
        let c = PubSubConfig::new("p", [None, Some("parts"), None, None], Some("127.0.0.1:8085"));
        assert_eq!(c.topic_path("partition-set"), "projects/p/topics/partition-set");
        assert_eq!(c.topic_path("partition"), "projects/p/topics/parts");
        assert_eq!(c.endpoint().as_deref(), Some("http://127.0.0.1:8085"));
        let c = PubSubConfig::new("p", [None; 4], Some(" "));
        assert_eq!(c.endpoint(), None);
    }

    #[test]
    fn setup_names() {
        assert_eq!(subscription_name("packument"), "packument-push");
        assert_eq!(dead_letter_topic("packument"), "packument-dead-letter");
        assert_eq!(dead_letter_subscription("packument"), "packument-dead-letter-pull");
    }
}
