//! The cloud commands: `serve` (the push service), `publish` (start a run from the command
//! line) and `dev pubsub-setup` (topics and subscriptions on an emulator, as Terraform makes
//! them in the cloud). Flags read the environment the deployment files set.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Global;
use crate::error::Error;
use crate::handlers::Ctx;
use crate::queue::pubsub::{self, PubSubConfig, PubSubPublisher, Publish as _, SetupOptions};
use crate::registry::client::Client;
use crate::work::{Work, WorkItem};

use super::auth::{PushAuth, PushAuthConfig};
use super::{AppState, Limits, Server};

/// The Google issuers of push tokens, and where their signing keys are published.
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// Where Pub/Sub is: project, topics, emulator.
#[derive(Debug, Clone, clap::Args)]
pub struct PubSubArgs {
    /// Google Cloud project of the topics.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT", value_name = "PROJECT")]
    pub project: Option<String>,
    /// Topic of `partition-set` items.
    #[arg(long, env = "ALL_DOCS_TOPIC_PARTITION_SET", default_value = "partition-set")]
    pub topic_partition_set: String,
    /// Topic of `partition` items.
    #[arg(long, env = "ALL_DOCS_TOPIC_PARTITION", default_value = "partition")]
    pub topic_partition: String,
    /// Topic of `packument` items.
    #[arg(long, env = "ALL_DOCS_TOPIC_PACKUMENT", default_value = "packument")]
    pub topic_packument: String,
    /// Topic of the change-feed ticks (Cloud Scheduler publishes; pushed to `/work/changes`).
    #[arg(long, env = "ALL_DOCS_TOPIC_CHANGES", default_value = "changes")]
    pub topic_changes: String,
    /// `host:port` of a Pub/Sub emulator (no credentials are used with it).
    #[arg(long, env = "PUBSUB_EMULATOR_HOST", value_name = "HOST:PORT")]
    pub pubsub_emulator_host: Option<String>,
}

impl PubSubArgs {
    pub fn config(&self) -> Result<PubSubConfig, Error> {
        let project = self
            .project
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| Error::usage("no Google Cloud project: pass --project or set GOOGLE_CLOUD_PROJECT"))?;
        for (flag, t) in [
            ("--topic-partition-set", &self.topic_partition_set),
            ("--topic-partition", &self.topic_partition),
            ("--topic-packument", &self.topic_packument),
            ("--topic-changes", &self.topic_changes),
        ] {
            if t.len() < 3 || t.contains('/') {
                return Err(Error::usage(format!(
                    "{flag}: `{t}` is not a topic name (at least 3 characters, no `/`)"
                )));
            }
        }
        Ok(PubSubConfig::new(
            project,
            [
                Some(&self.topic_partition_set),
                Some(&self.topic_partition),
                Some(&self.topic_packument),
                Some(&self.topic_changes),
            ]
            .map(|t| t.map(String::as_str)),
            self.pubsub_emulator_host.as_deref(),
        ))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub global: Global,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "ALL_DOCS_LISTEN", default_value = "0.0.0.0")]
    pub listen: IpAddr,
    #[command(flatten)]
    pub pubsub: PubSubArgs,
    /// Audience push tokens must carry (the service URL, or what the subscriptions set).
    #[arg(long, env = "ALL_DOCS_PUSH_AUDIENCE", value_name = "AUDIENCE")]
    pub push_audience: Option<String>,
    /// E-mail of the service account Pub/Sub signs push tokens as.
    #[arg(long, env = "ALL_DOCS_PUSH_SERVICE_ACCOUNT", value_name = "EMAIL")]
    pub push_service_account: Option<String>,
    /// Where the token signing keys are published [default: Google's OAuth2 certificates].
    #[arg(long, env = "ALL_DOCS_PUSH_JWKS_URL", value_name = "URL")]
    pub push_jwks_url: Option<String>,
    /// Accept push requests without verifying their token. For emulators only: logs a warning
    /// on every start.
    #[arg(long, env = "ALL_DOCS_INSECURE_SKIP_PUSH_AUTH")]
    pub insecure_skip_push_auth: bool,
    /// Work requests in flight at most (match the service's container concurrency); more are
    /// answered 429.
    #[arg(long, env = "ALL_DOCS_MAX_IN_FLIGHT", default_value_t = 100)]
    pub max_in_flight: usize,
    /// Seconds one request may take before it answers 503 and is redelivered; keep it below
    /// the request timeout and the subscriptions' ack deadline.
    #[arg(long, env = "ALL_DOCS_REQUEST_BUDGET", default_value_t = 240)]
    pub request_budget: u64,
    /// Seconds an HTTP/1 connection may stay idle between requests before the service closes
    /// it, so connections a client abandons cannot use up the file descriptors.
    #[arg(long, env = "ALL_DOCS_IDLE_TIMEOUT", default_value_t = super::IDLE_TIMEOUT.as_secs())]
    pub idle_timeout: u64,
}

/// `serve`: the push service, until SIGTERM or Ctrl-C.
pub async fn serve(args: &ServeArgs) -> Result<(), Error> {
    let g = &args.global;
    let replicate = g.replicate()?;
    let registry = g.registry()?;
    if args.request_budget == 0 || args.request_budget > 3600 {
        return Err(Error::usage(format!(
            "--request-budget must be 1..=3600 seconds, got {}",
            args.request_budget
        )));
    }
    if args.idle_timeout == 0 || args.idle_timeout > 3600 {
        return Err(Error::usage(format!(
            "--idle-timeout must be 1..=3600 seconds, got {}",
            args.idle_timeout
        )));
    }
    let auth_config = push_auth_config(args)?;
    let pubsub = args.pubsub.config()?;
    let store = crate::commands::open_store(g, crate::store::Access::Write).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let client_config = g.client_config()?;
    let client = Arc::new(Client::new(client_config, stop.clone()).map_err(|e| Error::Internal(e.to_string()))?);
    let auth = auth_config.map(|c| PushAuth::new(c, client.http().clone()));
    if auth.is_none() {
        tracing::warn!("push authentication is OFF (--insecure-skip-push-auth): anyone who can reach this service can make it work; use only with emulators");
    }
    let publisher = PubSubPublisher::connect(pubsub.clone())
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let state = Arc::new(AppState {
        ctx: Ctx {
            client,
            store,
            replicate,
            registry,
        },
        publisher: Arc::new(publisher),
        auth,
        budget: Duration::from_secs(args.request_budget),
    });
    let addr = SocketAddr::new(args.listen, args.port);
    let server = Server::bind(
        addr,
        state,
        Limits {
            max_in_flight: args.max_in_flight,
            idle_timeout: Duration::from_secs(args.idle_timeout),
        },
    )
    .await
    .map_err(|e| Error::usage(format!("cannot listen on {addr}: {e}")))?;
    let bound = server.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
    tracing::info!(%bound, project = %pubsub.project, "serving: POST /work/{{partition-set,partition,packument,changes}}, GET /healthz, /readyz");
    let shutdown = crate::shutdown::signal();
    println!("listening on http://{bound}");
    server
        .run(shutdown, Duration::from_secs(10), move || {
            stop.cancel();
        })
        .await
        .map_err(|e| Error::Internal(format!("server: {e}")))
}

/// A flag that must be given, and not blank; `missing` says how to give it.
fn required(value: &Option<String>, missing: &str) -> Result<String, Error> {
    value
        .clone()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::usage(missing))
}

fn push_auth_config(args: &ServeArgs) -> Result<Option<PushAuthConfig>, Error> {
    if args.insecure_skip_push_auth {
        return Ok(None);
    }
    let audience = required(
        &args.push_audience,
        "push authentication needs an audience: pass --push-audience (ALL_DOCS_PUSH_AUDIENCE), \
         or --insecure-skip-push-auth (ALL_DOCS_INSECURE_SKIP_PUSH_AUTH=true) for emulators only",
    )?;
    let jwks_url = args.push_jwks_url.clone().unwrap_or_else(|| GOOGLE_JWKS_URL.to_owned());
    if !(jwks_url.starts_with("https://") || jwks_url.starts_with("http://127.0.0.1")) {
        return Err(Error::usage(format!(
            "--push-jwks-url `{jwks_url}` must be an https URL (or http://127.0.0.1 for tests)"
        )));
    }
    // Without the sender's e-mail, any Google-signed token for the (not secret) audience would
    // pass: require it.
    let service_account = required(
        &args.push_service_account,
        "push authentication needs the push subscriptions' service account: pass \
         --push-service-account (ALL_DOCS_PUSH_SERVICE_ACCOUNT), or --insecure-skip-push-auth \
         for emulators only",
    )?;
    Ok(Some(PushAuthConfig {
        audience,
        service_account: Some(service_account),
        jwks_url,
        issuers: GOOGLE_ISSUERS.iter().map(|s| (*s).to_owned()).collect(),
    }))
}

#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub pubsub: PubSubArgs,
    /// Work item files (JSON, one item or an array of items; `-` for stdin), each published to
    /// its type's topic.
    #[arg(value_name = "ITEM.json")]
    pub items: Vec<PathBuf>,
    /// Publish to this topic instead of the item type's.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Publish one partition-set of N partitions (cut evenly over the name space).
    #[arg(long, value_name = "N", conflicts_with_all = ["items", "pivots"])]
    pub partitions: Option<usize>,
    /// Publish one partition-set from a pivots file (JSON or JavaScript array, `null` first).
    #[arg(long, value_name = "FILE", conflicts_with = "items")]
    pub pivots: Option<PathBuf>,
}

/// `publish`: sends work items to Pub/Sub.
pub async fn publish(args: &PublishArgs) -> Result<(), Error> {
    let items = publish_items(args)?;
    let mut config = args.pubsub.config()?;
    if let Some(topic) = &args.topic {
        if topic.len() < 3 || topic.contains('/') {
            return Err(Error::usage(format!("--topic: `{topic}` is not a topic name")));
        }
        for t in config.topics.values_mut() {
            t.clone_from(topic);
        }
    }
    let publisher = PubSubPublisher::connect(config.clone())
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    publisher
        .publish(&items)
        .await
        .map_err(|e| Error::Incomplete(e.to_string()))?;
    for item in &items {
        println!("published {} to {}", item.id, config.topic_path(item.work.kind()));
    }
    Ok(())
}

fn publish_items(args: &PublishArgs) -> Result<Vec<WorkItem>, Error> {
    if let Some(n) = args.partitions {
        if n == 0 {
            return Err(Error::usage("--partitions must be at least 1"));
        }
        let pivots = crate::pivots::even(n);
        return Ok(vec![WorkItem::new(Work::PartitionSet { pivots })]);
    }
    if let Some(path) = &args.pivots {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::usage(format!("cannot read pivots file `{}`: {e}", path.display())))?;
        let pivots =
            crate::pivots::parse(&text).map_err(|e| Error::usage(format!("pivots file `{}`: {e}", path.display())))?;
        return Ok(vec![WorkItem::new(Work::PartitionSet { pivots })]);
    }
    if args.items.is_empty() {
        return Err(Error::usage(
            "nothing to publish: name ITEM.json files, or pass --partitions N or --pivots FILE",
        ));
    }
    let mut items = Vec::new();
    for path in &args.items {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).map_err(|e| Error::usage(format!("cannot read stdin: {e}")))?
        } else {
            std::fs::read_to_string(path).map_err(|e| Error::usage(format!("cannot read `{}`: {e}", path.display())))?
        };
        let bad = |e: String| Error::usage(format!("`{}`: {e}", path.display()));
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let values = match value {
            serde_json::Value::Array(a) => a,
            other => vec![other],
        };
        for (i, v) in values.into_iter().enumerate() {
            let bytes = serde_json::to_vec(&v).map_err(|e| bad(e.to_string()))?;
            items.push(WorkItem::from_json(&bytes).map_err(|e| bad(format!("item {}: {e}", i + 1)))?);
        }
    }
    Ok(items)
}

#[derive(Debug, Clone, clap::Args)]
pub struct PubSubSetupArgs {
    #[command(flatten)]
    pub pubsub: PubSubArgs,
    /// Base URL of the service the push subscriptions deliver to.
    #[arg(long, value_name = "URL")]
    pub push_url: String,
    /// Ack deadline of the push subscriptions, seconds (10..=600).
    #[arg(long, default_value_t = 600)]
    pub ack_deadline: u64,
    /// Retry policy: minimum backoff, seconds.
    #[arg(long, default_value_t = 10)]
    pub min_backoff: u64,
    /// Retry policy: maximum backoff, seconds.
    #[arg(long, default_value_t = 600)]
    pub max_backoff: u64,
    /// Create the push subscriptions without a retry policy, so a nacked message comes back at
    /// once. For tests on the emulator (0.8.20), whose retry-policy backoff stops redelivering
    /// messages after a few failures when several messages of a subscription fail together.
    #[arg(long, conflicts_with_all = ["min_backoff", "max_backoff"])]
    pub no_retry_policy: bool,
    /// Deliveries before a message goes to its dead-letter topic (5..=100).
    #[arg(long, default_value_t = 10)]
    pub max_delivery_attempts: i32,
}

/// `dev pubsub-setup`: the topics and subscriptions of `terraform/`, on an emulator.
pub async fn pubsub_setup(args: &PubSubSetupArgs) -> Result<(), Error> {
    let config = args.pubsub.config()?;
    if config.emulator.is_none() {
        return Err(Error::usage(
            "dev pubsub-setup is for emulators: set PUBSUB_EMULATOR_HOST (use terraform/ for a real project)",
        ));
    }
    if !(args.push_url.starts_with("http://") || args.push_url.starts_with("https://")) {
        return Err(Error::usage(format!(
            "--push-url `{}` is not an http(s) URL",
            args.push_url
        )));
    }
    if !(10..=600).contains(&args.ack_deadline) {
        return Err(Error::usage(format!(
            "--ack-deadline must be 10..=600 seconds, got {}",
            args.ack_deadline
        )));
    }
    if args.min_backoff > args.max_backoff || args.max_backoff > 600 {
        return Err(Error::usage(
            "--min-backoff must not exceed --max-backoff, which is at most 600 seconds",
        ));
    }
    if !(5..=100).contains(&args.max_delivery_attempts) {
        return Err(Error::usage(format!(
            "--max-delivery-attempts must be 5..=100, got {}",
            args.max_delivery_attempts
        )));
    }
    let opts = SetupOptions {
        push_url: args.push_url.clone(),
        ack_deadline: Duration::from_secs(args.ack_deadline),
        backoff: (!args.no_retry_policy).then(|| {
            (
                Duration::from_secs(args.min_backoff),
                Duration::from_secs(args.max_backoff),
            )
        }),
        max_delivery_attempts: args.max_delivery_attempts,
    };
    let created = pubsub::setup(&config, &opts)
        .await
        .map_err(|e| Error::Incomplete(e.to_string()))?;
    for name in &created {
        println!("created {name}");
    }
    if created.is_empty() {
        println!("everything already existed");
    }
    Ok(())
}
