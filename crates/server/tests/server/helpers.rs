//! `spawn_server()` and the typed client the tests use.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use jiff::Timestamp;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection as AmqpConnection, ConnectionProperties};
use palisade_server::bus::{FanoutTopic, WorkTopic};
use palisade_server::credentials::Secret;
use palisade_server::{Config, Database, RunningServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

/// The admin token every test server is bootstrapped with.
pub const ADMIN_TOKEN: &str = "test-bootstrap-token-0123456789";

/// Which database a test server uses.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server, its data directory, and a client for it.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    database: Database,
    _schema: Option<PgSchema>,
    topology: Option<Topology>,
}

/// Starts the real server on 127.0.0.1:0 with a fresh data directory: SQLite with the
/// in-process bus, or PostgreSQL (a fresh schema) with RabbitMQ (queues and exchanges of its
/// own, deleted afterwards). `None`, after saying so, when PostgreSQL is asked for but not
/// configured; RabbitMQ is used when `PALISADE_TEST_AMQP_URL` is set.
pub async fn spawn_server(backend: Backend) -> Option<TestServer> {
    spawn_server_with(backend, |_| {}).await
}

/// [`spawn_server`] with the configuration changed by `configure` before the start.
pub async fn spawn_server_with(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
) -> Option<TestServer> {
    let (database, schema, topology) = match backend {
        Backend::Sqlite => (Database::Sqlite, None, None),
        Backend::Postgres => {
            let Ok(url) = std::env::var("PALISADE_TEST_DATABASE_URL") else {
                eprintln!("skipped: set PALISADE_TEST_DATABASE_URL to run this case on PostgreSQL");
                return None;
            };
            let schema = PgSchema::create(&url).await;
            let topology = match std::env::var("PALISADE_TEST_AMQP_URL") {
                Ok(url) => {
                    static NEXT: AtomicU32 = AtomicU32::new(0);
                    let prefix = format!(
                        "palisade-test-{}-server-{}",
                        std::process::id(),
                        NEXT.fetch_add(1, Ordering::Relaxed)
                    );
                    Some(Topology { url, prefix })
                }
                Err(_) => {
                    eprintln!("note: set PALISADE_TEST_AMQP_URL to run this case on RabbitMQ too");
                    None
                }
            };
            (
                Database::Postgres(schema.url.clone()),
                Some(schema),
                topology,
            )
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        database: database.clone(),
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: "127.0.0.1:0".parse().unwrap(),
        liveness: palisade_server::agents::Liveness::default(),
        bootstrap_token: Some(Secret::new(ADMIN_TOKEN.to_owned())),
        amqp_url: topology.as_ref().map(|t| t.url.clone()),
        amqp_prefix: topology.as_ref().map(|t| t.prefix.clone()),
        retention_interval: palisade_server::retention::DEFAULT_INTERVAL,
        training_interval: palisade_server::training::DEFAULT_INTERVAL,
        oidc: None,
        https: None,
    };
    configure(&mut config);
    let server = palisade_server::start(config, Arc::new(now)).await.unwrap();
    // Under HTTPS the client trusts the server's internal CA, as an operator's would.
    let ca = std::fs::read(&server.ca_cert).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    Some(TestServer {
        base: server.http_url.clone(),
        client,
        server: Some(server),
        dir,
        database,
        _schema: schema,
        topology,
    })
}

/// Waits up to 10 s for `check` to hold, e.g. for a batch behind the message bus, which is
/// stored just after the agent's acknowledgement; panics naming `what` if it never does.
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("waited 10 s for {what}");
}

#[allow(clippy::disallowed_methods)]
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// A status and a JSON (or text) body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl TestServer {
    /// The server's database, for what no API does (raising alerts as a detector would).
    pub fn store(&self) -> &palisade_server::Store {
        &self.server.as_ref().unwrap().store
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        reply(request.send().await.unwrap()).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let mut request = self.client.put(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        reply(request.send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.delete(format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        reply(request.send().await.unwrap()).await
    }

    /// The gateway's URL.
    pub fn grpc_url(&self) -> String {
        format!("https://{}", self.server.as_ref().unwrap().grpc)
    }

    /// The CA certificate agents trust (the operator hands over `DIR/ca.pem`).
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(&self.server.as_ref().unwrap().ca_cert).unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        reply(request.send().await.unwrap()).await
    }

    /// A new API token with `role`, created by the bootstrap admin.
    pub async fn token(&self, role: &str) -> String {
        let r = self
            .post(
                "/api/v1/tokens",
                Some(ADMIN_TOKEN),
                &json!({"name": format!("{role}-test"), "role": role}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["token"].as_str().unwrap().to_owned()
    }

    pub async fn create_policy(
        &self,
        token: &str,
        name: &str,
        format: &str,
        source: &str,
    ) -> Reply {
        self.post(
            "/api/v1/policies",
            Some(token),
            &json!({"name": name, "format": format, "source": source}),
        )
        .await
    }

    /// The value of an unlabelled metric.
    pub async fn metric(&self, name: &str) -> String {
        let text = self.get("/metrics", None).await.text;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    /// The database opened a second time, as another server node sharing it would.
    pub async fn another_node_store(&self) -> palisade_server::Store {
        match &self.database {
            Database::Sqlite => palisade_server::Store::open_sqlite(&self.dir.path().join("data"))
                .await
                .unwrap(),
            Database::Postgres(url) => palisade_server::Store::open_postgres(url).await.unwrap(),
        }
    }

    /// Runs SQL on the server's database directly, past the API (as an intruder with database
    /// access would); the error's text when the database refuses.
    pub async fn raw_execute(&self, sql: &str) -> Result<u64, String> {
        let done = match &self.database {
            Database::Sqlite => {
                let path = self.dir.path().join("data/palisade.db");
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .map(|r| r.rows_affected())
            }
            Database::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .map(|r| r.rows_affected())
            }
        };
        done.map_err(|e| e.to_string())
    }

    /// Whether event batches go through RabbitMQ (PostgreSQL with `PALISADE_TEST_AMQP_URL`):
    /// then an acknowledged batch is held by the broker and stored just after.
    pub fn through_bus(&self) -> bool {
        self.topology.is_some()
    }

    /// Takes, past the API, the database lock every event writer needs, as a store that has
    /// fallen behind would hold it; writers wait until [`Stall::release`]. Keep it under 5 s
    /// on SQLite, whose writers give up after that.
    pub async fn stall_event_writes(&self) -> Stall {
        match &self.database {
            Database::Sqlite => {
                let path = self.dir.path().join("data/palisade.db");
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Stall::Sqlite(conn)
            }
            Database::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("LOCK TABLE event_batches IN EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Stall::Postgres(conn)
            }
        }
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.unwrap();
        }
    }
}

/// A held database lock that keeps event writers waiting (see `stall_event_writes`).
pub enum Stall {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Stall {
    /// Lets the writers go on.
    pub async fn release(self) {
        match self {
            Stall::Sqlite(mut conn) => {
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
            Stall::Postgres(mut conn) => {
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
        }
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
}

/// The RabbitMQ queues and exchanges of one case, deleted on drop.
pub struct Topology {
    pub url: String,
    pub prefix: String,
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Drop cannot await: delete from a thread of its own with a runtime of its own.
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let deleted = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(delete_topology(&url, &prefix));
        })
        .join();
        if deleted.is_err() && !std::thread::panicking() {
            panic!(
                "could not delete the queues and exchanges of {}",
                self.prefix
            );
        }
    }
}

pub async fn delete_topology(url: &str, prefix: &str) {
    let connection = AmqpConnection::connect(url, connection_properties())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for topic in WorkTopic::ALL {
        let name = format!("{prefix}.{}", topic.name());
        channel
            .queue_delete(&name, QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    for topic in FanoutTopic::ALL {
        let name = format!("{prefix}.{}", topic.name());
        channel
            .exchange_delete(&name, ExchangeDeleteOptions::default())
            .await
            .unwrap();
    }
    connection.close(200, "done").await.unwrap();
}

pub fn connection_properties() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
}

/// A PostgreSQL schema of its own for one test server, dropped when the test ends.
pub struct PgSchema {
    admin_url: String,
    name: String,
    /// The URL that puts the server in this schema (`search_path`).
    pub url: String,
}

impl PgSchema {
    async fn create(url: &str) -> PgSchema {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).unwrap();
        let name = format!("t_{}", palisade_server::audit::hex(&random));
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("PALISADE_TEST_DATABASE_URL={url} cannot be reached: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        PgSchema {
            admin_url: url.to_owned(),
            url: format!("{url}{sep}options=-c%20search_path%3D{name}"),
            name,
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a thread with its own runtime does the async work.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// Runs each case (an `async fn(&TestServer)` in the invoking module, which also imports
/// `spawn_server` and `Backend`) once on SQLite and once on PostgreSQL (skipped without the
/// variable). `configured by F; case, ...` starts each server with `spawn_server_with(_, F)`,
/// `F` a function of the invoking module that changes the `Config`.
macro_rules! on_both_backends {
    (configured by $configure:ident; $($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let backend = crate::helpers::Backend::Sqlite;
                    if let Some(s) = crate::helpers::spawn_server_with(backend, super::$configure).await {
                        super::$case(&s).await;
                        s.stop().await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let backend = crate::helpers::Backend::Postgres;
                    if let Some(s) = crate::helpers::spawn_server_with(backend, super::$configure).await {
                        super::$case(&s).await;
                        s.stop().await;
                    }
                }
            }
        )*
    };
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    if let Some(s) = super::spawn_server(super::Backend::Sqlite).await {
                        super::$case(&s).await;
                        s.stop().await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(s) = super::spawn_server(super::Backend::Postgres).await {
                        super::$case(&s).await;
                        s.stop().await;
                    }
                }
            }
        )*
    };
}
