//! `palisade server` processes as an operator runs them, on SQLite in their data directory or on a
//! shared PostgreSQL schema and RabbitMQ prefix of their own (both deleted at the end).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use serde_json::Value;
use sqlx::Connection as _;

/// The bootstrap admin token of every install these tests start.
pub const ADMIN_TOKEN: &str = "cli-test-bootstrap-token-0123456789";

/// One node: its process (killed on drop, so nothing is left running) and what it printed.
pub struct Node {
    pub child: Child,
    pub http: String,
    pub grpc: String,
    pub ca: PathBuf,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- {} ---\n{log}", self.log.display());
        }
    }
}

impl Node {
    /// `palisade server` with its data in `data`, on `shared` when given (else SQLite), on the
    /// given addresses (port 0: any); its log goes to `log`. Returns once it printed its
    /// addresses.
    pub fn start(
        data: &Path,
        shared: Option<&Shared>,
        (http, grpc): (&str, &str),
        log: PathBuf,
    ) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_palisade"));
        command
            .args(["server", "--http", http, "--grpc", grpc, "--data"])
            .arg(data)
            // Only the first start of an install uses it; a later node finds the admin.
            .env("PALISADE_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
            .env_remove("PALISADE_HTTP")
            .env_remove("PALISADE_GRPC")
            .env_remove("PALISADE_DATA")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        match shared {
            Some(shared) => command
                .env("PALISADE_DATABASE_URL", &shared.schema.url)
                .env("PALISADE_AMQP_URL", &shared.topology.url)
                .env("PALISADE_AMQP_PREFIX", &shared.topology.prefix),
            None => command
                .env_remove("PALISADE_DATABASE_URL")
                .env_remove("PALISADE_AMQP_URL"),
        };
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut node = Node {
            child,
            http: String::new(),
            grpc: String::new(),
            ca: PathBuf::new(),
            log,
        };
        let mut lines = BufReader::new(stdout).lines();
        while node.http.is_empty() || node.grpc.is_empty() || node.ca.as_os_str().is_empty() {
            let line = match lines.next() {
                Some(line) => line.unwrap(),
                None => panic!("{} exited before printing its addresses", data.display()),
            };
            if let Some(url) = line.strip_prefix("http: ") {
                node.http = url.to_owned();
            } else if let Some(url) = line.strip_prefix("grpc: ") {
                node.grpc = url.to_owned();
            } else if let Some(path) = line.strip_prefix("ca: ") {
                node.ca = PathBuf::from(path);
            }
        }
        node
    }

    /// A new single-use enrollment token, valid for ten minutes.
    pub async fn enrollment_token(&self) -> String {
        let made = self
            .post(
                "/api/v1/enrollment-tokens",
                &serde_json::json!({"expires_in_seconds": 600}),
            )
            .await;
        made["token"].as_str().unwrap().to_owned()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Value {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.http))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// What the nodes of one install share: a PostgreSQL schema and a RabbitMQ prefix.
pub struct Shared {
    schema: Schema,
    topology: Topology,
}

impl Shared {
    /// A fresh schema and prefix on `PALISADE_TEST_DATABASE_URL` and `PALISADE_TEST_AMQP_URL`;
    /// `None` (with a note saying so) when either is not set.
    pub async fn from_env(test: &str) -> Option<Shared> {
        let (Ok(database), Ok(amqp)) = (
            std::env::var("PALISADE_TEST_DATABASE_URL"),
            std::env::var("PALISADE_TEST_AMQP_URL"),
        ) else {
            eprintln!(
                "skipped: set PALISADE_TEST_DATABASE_URL and PALISADE_TEST_AMQP_URL to run {test}"
            );
            return None;
        };
        Some(Shared {
            schema: Schema::create(&database).await,
            topology: Topology {
                url: amqp,
                prefix: format!("palisade-test-{}", random_hex()),
            },
        })
    }
}

/// A PostgreSQL schema of its own, dropped at the end.
struct Schema {
    admin_url: String,
    name: String,
    url: String,
}

impl Schema {
    async fn create(url: &str) -> Schema {
        let name = format!("t_cli_{}", random_hex());
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("PALISADE_TEST_DATABASE_URL={url} cannot be reached: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        Schema {
            admin_url: url.to_owned(),
            url: format!("{url}{sep}options=-c%20search_path%3D{name}"),
            name,
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        on_own_runtime(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
                .execute(&mut conn)
                .await?;
            conn.close().await
        });
    }
}

/// The bus's queues and exchanges under one prefix, deleted at the end (after the nodes).
struct Topology {
    url: String,
    prefix: String,
}

impl Drop for Topology {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        on_own_runtime(async move {
            let properties = lapin::ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio::current());
            let connection = lapin::Connection::connect(&url, properties).await?;
            let channel = connection.create_channel().await?;
            for queue in ["event-batches", "alerts"] {
                let name = format!("{prefix}.{queue}");
                channel
                    .queue_delete(&name, QueueDeleteOptions::default())
                    .await?;
            }
            for exchange in ["policy-updates", "commands"] {
                let name = format!("{prefix}.{exchange}");
                channel
                    .exchange_delete(&name, ExchangeDeleteOptions::default())
                    .await?;
            }
            connection.close(200, "done").await
        });
    }
}

/// Runs a clean-up to its end from `Drop`, which cannot await: on a thread with a runtime of
/// its own. A failed clean-up is left behind (it only costs a leftover schema or queue).
fn on_own_runtime<E>(cleanup: impl Future<Output = Result<(), E>> + Send + 'static)
where
    E: Send + 'static,
{
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(cleanup)
    })
    .join();
}

fn random_hex() -> String {
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).unwrap();
    random.iter().map(|b| format!("{b:02x}")).collect()
}

#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
