//! One server node: open the store, bootstrap on first start, load (or create) the internal CA,
//! connect the bus, start the background tasks (the distribution hub's, the ingest writers, the
//! retention timer, the agent watchdog, SQLite's checkpoint timer), serve HTTP and the agent
//! gateway until stopped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::Clock;
use crate::agents::Liveness;
use crate::bootstrap::{self, BootstrapError};
use crate::bus::{Bus, BusError, BusOptions};
use crate::ca::{Ca, CaError};
use crate::credentials::{CredentialError, Secret};
use crate::distribution::Distribution;
use crate::gateway::GatewayService;
use crate::http::{self, AppState};
use crate::https::Https;
use crate::ingest::Pipeline;
use crate::metrics::Metrics;
use crate::oidc::{Oidc, OidcConfig};
use crate::store::{Store, StoreError};

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `DIR/palisade.db` in the data directory (the default).
    Sqlite,
    /// A PostgreSQL URL, `postgres://...`.
    Postgres(String),
}

impl Database {
    /// `postgres://` and `postgresql://` URLs select PostgreSQL; nothing selects SQLite.
    pub fn from_url(url: Option<&str>) -> Result<Database, StartError> {
        match url {
            None => Ok(Database::Sqlite),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                Ok(Database::Postgres(u.to_owned()))
            }
            Some(_) => Err(StartError::DatabaseUrl),
        }
    }
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// SQLite in the data directory, or PostgreSQL.
    pub database: Database,
    /// Address for the HTTP interface; port 0 picks a free port.
    pub http: SocketAddr,
    /// Serve the HTTP interface over TLS, with this certificate; none serves plain HTTP.
    pub https: Option<Https>,
    /// Address for the agent gateway (gRPC over mutual TLS); port 0 picks a free port.
    pub grpc: SocketAddr,
    /// When an agent counts as offline.
    pub liveness: Liveness,
    /// On first start, also create an admin API token with exactly this value.
    pub bootstrap_token: Option<Secret>,
    /// The bus: `amqp://...` is RabbitMQ (several nodes), none the in-process bus.
    pub amqp_url: Option<String>,
    /// RabbitMQ: the first part of the queue and exchange names; none means `palisade`.
    pub amqp_prefix: Option<String>,
    /// How often the retention timer runs (it also runs once at start); see
    /// [`crate::retention::DEFAULT_INTERVAL`].
    pub retention_interval: Duration,
    /// How often the behaviour model is trained; see [`crate::training::DEFAULT_INTERVAL`].
    pub training_interval: Duration,
    /// Single sign-on to the console; none means only local users sign in.
    pub oidc: Option<OidcConfig>,
}

/// The node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database URL names no supported database.
    #[error("database URL: only postgres://... is supported (SQLite needs no URL)")]
    DatabaseUrl,
    /// The database cannot be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The first start did not complete.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The internal CA cannot be loaded or created.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The bus URL is not supported, or the broker cannot be reached.
    #[error("message bus: {0}")]
    Bus(#[from] BusError),
    /// No node identifier could be made (the system's random source failed).
    #[error("node identifier: {0}")]
    NodeId(CredentialError),
    /// The HTTPS certificate cannot be read or used.
    #[error("HTTPS certificate: {0}")]
    Https(String),
    /// The gateway's TLS configuration was refused.
    #[error("agent gateway TLS: {0}")]
    Tls(String),
    /// The HTTP client for single sign-on cannot be set up.
    #[error("single sign-on: {0}")]
    Oidc(String),
    /// The HTTP address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A node that is serving.
pub struct RunningServer {
    /// The address HTTP is served on (the chosen port when 0 was asked for).
    pub http: SocketAddr,
    /// The base URL of the console and API: `http://` or `https://` and the address.
    pub http_url: String,
    /// The address the agent gateway is served on (the chosen port when 0 was asked for).
    pub grpc: SocketAddr,
    /// The CA certificate agents must trust (`DIR/ca.pem`).
    pub ca_cert: PathBuf,
    /// The credentials file, when this start created the first admin.
    pub initial_credentials: Option<PathBuf>,
    /// The database, shared with the handlers.
    pub store: Arc<Store>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    grpc_shutdown: oneshot::Sender<()>,
    stopping: tokio::sync::watch::Sender<bool>,
    grpc_task: JoinHandle<Result<(), tonic::transport::Error>>,
    /// The distribution hub's tasks, the ingest writers, the retention timer and the agent
    /// watchdog; aborted at stop.
    background: Vec<JoinHandle<()>>,
}

/// Opens the store, bootstraps on first start, binds and starts serving.
pub async fn start(config: Config, clock: Clock) -> Result<RunningServer, StartError> {
    create_data_dir(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let store = Arc::new(match &config.database {
        Database::Sqlite => Store::open_sqlite(&config.data_dir).await?,
        Database::Postgres(url) => Store::open_postgres(url).await?,
    });
    let initial_credentials = bootstrap::first_start(
        &store,
        &config.data_dir,
        config.bootstrap_token.as_ref(),
        clock(),
    )
    .await?;
    let listener = TcpListener::bind(config.http)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.http,
            source,
        })?;
    let http = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.http,
        source,
    })?;
    let ca_existed = config.data_dir.join(crate::ca::CA_CERT_FILE).exists();
    let ca = Arc::new(Ca::load_or_create(&config.data_dir, clock())?);
    if !ca_existed && matches!(config.database, Database::Postgres(_)) {
        tracing::warn!(
            dir = %config.data_dir.display(),
            "created a new internal CA; every node of this install needs the same ca.pem and ca.key \
             in its data directory before its first start (docs/server.md, \"Several nodes\")"
        );
    }
    let grpc_listener =
        TcpListener::bind(config.grpc)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.grpc,
                source,
            })?;
    let grpc = grpc_listener
        .local_addr()
        .map_err(|source| StartError::Listen {
            addr: config.grpc,
            source,
        })?;
    let mut bus_options = BusOptions::default();
    if let Some(prefix) = &config.amqp_prefix {
        bus_options.prefix.clone_from(prefix);
    }
    let bus = Bus::connect(config.amqp_url.as_deref(), bus_options).await?;
    let node_id = crate::credentials::random_token().map_err(StartError::NodeId)?;
    let (hub, mut background) =
        Distribution::over_bus(bus.clone(), node_id.expose().to_owned()).await;
    // SQLite has one writer; PostgreSQL works on several transactions at once (half its pool).
    let writers = match config.database {
        Database::Sqlite => 1,
        Database::Postgres(_) => 8,
    };
    let through_bus = config.amqp_url.is_some();
    let (pipeline, ingest_tasks) =
        Pipeline::start(store.clone(), writers, bus.clone(), through_bus).await;
    background.extend(ingest_tasks);
    let metrics = Arc::new(Metrics::with_bus(bus.clone()));
    background
        .extend(crate::detection::spawn(bus, store.clone(), metrics.clone(), clock.clone()).await);
    background.push(crate::training::spawn(
        store.clone(),
        metrics.clone(),
        clock.clone(),
        config.training_interval,
    ));
    background.push(crate::retention::spawn(
        store.clone(),
        metrics.clone(),
        clock.clone(),
        config.retention_interval,
    ));
    if matches!(config.database, Database::Sqlite) {
        background.push(crate::checkpoint::spawn(store.clone()));
    }
    background.push(crate::watchdog::spawn(
        store.clone(),
        config.liveness,
        clock.clone(),
    ));
    let tls = match &config.https {
        None => None,
        Some(https) => Some(https_config(https, &ca, http, clock())?),
    };
    let http_url = match tls {
        None => format!("http://{http}"),
        Some(_) => format!("https://{http}"),
    };
    let oidc = match config.oidc {
        Some(oidc) => Some(Arc::new(
            Oidc::new(oidc, &http_url).map_err(|e| StartError::Oidc(e.to_string()))?,
        )),
        None => None,
    };
    let app = http::router(AppState {
        store: store.clone(),
        metrics,
        clock: clock.clone(),
        hub: hub.clone(),
        liveness: config.liveness,
        oidc,
    });
    let identity = ca.server_identity(clock())?;
    let gateway_tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(identity.cert_pem, identity.key_pem))
        .client_ca_root(tonic::transport::Certificate::from_pem(ca.cert_pem()))
        // Enroll comes without a certificate; every other call is checked for one.
        .client_auth_optional(true);
    let (stopping_sender, stopping) = tokio::sync::watch::channel(false);
    let gateway = GatewayService {
        store: store.clone(),
        ca,
        hub,
        pipeline,
        clock,
        isolation: crate::isolation::policy(grpc.port()),
        stopping,
    }
    .into_server();
    let router = tonic::transport::Server::builder()
        .tls_config(gateway_tls)
        .map_err(|e| StartError::Tls(e.to_string()))?
        .add_service(gateway);
    let (grpc_shutdown, grpc_stopped) = oneshot::channel::<()>();
    let grpc_task = tokio::spawn(router.serve_with_incoming_shutdown(
        TcpIncoming::from(grpc_listener),
        async {
            let _ = grpc_stopped.await;
        },
    ));
    let (shutdown, stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let task = match tls {
        None => tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }),
        Some(tls) => {
            let (listener, accepting) =
                crate::https::listen(listener, tls).map_err(|source| StartError::Listen {
                    addr: config.http,
                    source,
                })?;
            background.push(accepting);
            let app = app.layer(axum::middleware::map_response(crate::https::secure_cookies));
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
    };
    tracing::info!(%http, %grpc, backend = store.backend(), bus = if config.amqp_url.is_some() { "amqp" } else { "in-process" }, "serving");
    Ok(RunningServer {
        http,
        http_url,
        grpc,
        ca_cert: config.data_dir.join(crate::ca::CA_CERT_FILE),
        initial_credentials,
        store,
        shutdown,
        task,
        grpc_shutdown,
        stopping: stopping_sender,
        grpc_task,
        background,
    })
}

/// The TLS configuration of the HTTP address: the operator's files, or a certificate from the
/// internal CA for `localhost`, the loopback addresses, `http`'s address when it is a specific
/// one, and the names configured.
fn https_config(
    https: &Https,
    ca: &Ca,
    http: SocketAddr,
    now: jiff::Timestamp,
) -> Result<rustls::ServerConfig, StartError> {
    let (cert, key) = match https {
        Https::Files { cert, key } => {
            let read = |path: &PathBuf| {
                std::fs::read(path)
                    .map_err(|e| StartError::Https(format!("{}: {e}", path.display())))
            };
            (read(cert)?, read(key)?)
        }
        Https::Generated { names } => {
            let mut all = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            if !http.ip().is_unspecified() && !all.contains(&http.ip().to_string()) {
                all.push(http.ip().to_string());
            }
            all.extend(names.iter().cloned());
            let identity = ca.identity_for(&all, now)?;
            (
                identity.cert_pem.into_bytes(),
                identity.key_pem.into_bytes(),
            )
        }
    };
    crate::https::server_config(&cert, &key).map_err(StartError::Https)
}

/// Creates the data directory, readable only by its owner (it holds the database with password
/// hashes and the credentials file); an existing directory is left as it is.
fn create_data_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

impl RunningServer {
    /// Stops accepting (HTTP and the gateway), finishes the requests in flight, and closes the
    /// database. Open policy streams end.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        let _ = self.grpc_shutdown.send(());
        // Open policy streams never end by themselves; end them so the gateway can stop.
        let _ = self.stopping.send(true);
        for task in &self.background {
            task.abort();
        }
        let served = self
            .task
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let gateway = self
            .grpc_task
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .map_err(|e| std::io::Error::other(e.to_string()));
        self.store.close().await;
        served.and(gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_certificate_file_is_named() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let ca = Ca::generate(now).unwrap();
        let missing = PathBuf::from("/nonexistent/console.pem");
        let https = Https::Files {
            cert: missing.clone(),
            key: missing,
        };
        let Err(e) = https_config(&https, &ca, "127.0.0.1:443".parse().unwrap(), now) else {
            panic!("a certificate was made of a missing file");
        };
        assert!(e.to_string().contains("/nonexistent/console.pem"), "{e}");
    }

    #[test]
    fn a_generated_certificate_is_usable() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let ca = Ca::generate(now).unwrap();
        let https = Https::Generated {
            names: vec!["palisade.example.com".to_owned()],
        };
        assert!(https_config(&https, &ca, "10.0.0.5:443".parse().unwrap(), now).is_ok());
    }
}
