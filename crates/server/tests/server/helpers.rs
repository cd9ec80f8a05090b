//! `spawn_server()` and the typed client the tests use.

use std::sync::Arc;

use jiff::Timestamp;
use palisade_server::agents::Liveness;
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
}

/// Starts the real server on 127.0.0.1:0 with a fresh data directory (and, for PostgreSQL, a
/// fresh schema). `None`, after saying so, when PostgreSQL is asked for but not configured.
pub async fn spawn_server(backend: Backend) -> Option<TestServer> {
    spawn_server_with(backend, Liveness::default()).await
}

/// [`spawn_server`] with agents counted offline (and the watchdog ticking) as `liveness` says.
pub async fn spawn_server_with(backend: Backend, liveness: Liveness) -> Option<TestServer> {
    let (database, schema) = match backend {
        Backend::Sqlite => (Database::Sqlite, None),
        Backend::Postgres => {
            let Ok(url) = std::env::var("PALISADE_TEST_DATABASE_URL") else {
                eprintln!("skipped: set PALISADE_TEST_DATABASE_URL to run this case on PostgreSQL");
                return None;
            };
            let schema = PgSchema::create(&url).await;
            (Database::Postgres(schema.url.clone()), Some(schema))
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        database: database.clone(),
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: "127.0.0.1:0".parse().unwrap(),
        liveness,
        bootstrap_token: Some(Secret::new(ADMIN_TOKEN.to_owned())),
        amqp_url: None,
        amqp_prefix: None,
    };
    let server = palisade_server::start(config, Arc::new(now)).await.unwrap();
    Some(TestServer {
        base: format!("http://{}", server.http),
        client: reqwest::Client::new(),
        server: Some(server),
        dir,
        database,
        _schema: schema,
    })
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

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.unwrap();
        }
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, body, text }
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
/// variable). With `liveness = FN;` first, the servers are started with
/// `spawn_server_with(backend, FN())` (the module imports `spawn_server_with`).
macro_rules! on_both_backends {
    (liveness = $liveness:ident; $($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let liveness = super::$liveness();
                    if let Some(s) = super::spawn_server_with(super::Backend::Sqlite, liveness).await {
                        super::$case(&s).await;
                        s.stop().await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let liveness = super::$liveness();
                    if let Some(s) = super::spawn_server_with(super::Backend::Postgres, liveness).await {
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
