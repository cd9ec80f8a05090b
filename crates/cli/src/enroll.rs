//! What `palisade agent` and `palisade sensor` share to be managed by a server: the `--server`,
//! `--enroll-token`, `--ca` and `--spool-max-mb` options, the identity kept in `DATA/identity`
//! (or made by enrolling once with the token), and the spool in `DATA/spool`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use palisade_agent::session;
use palisade_agent::spool::{Spool, SpoolConfig};
use palisade_agent::uplink::{self, About, Identity};

/// The options naming the server and bounding the spool.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Run managed by this server's agent gateway (`https://HOST:PORT`).
    #[arg(long)]
    pub server: Option<String>,
    /// The enrollment token, needed on the first start only.
    #[arg(long, env = "PALISADE_ENROLL_TOKEN", requires = "server")]
    pub enroll_token: Option<String>,
    /// The server's CA certificate (its `DIR/ca.pem`), needed to enroll.
    #[arg(long, requires = "server")]
    pub ca: Option<PathBuf>,
    /// The spool's size bound; the oldest events are evicted (and counted) beyond it.
    #[arg(long, default_value_t = 256)]
    pub spool_max_mb: u64,
}

/// Opens the spool in `DATA/spool`, bounded by `--spool-max-mb`, forced to the disk every
/// 100 ms.
pub fn open_spool(data: &Path, args: &ServerArgs) -> anyhow::Result<Spool> {
    Spool::open(
        &data.join("spool"),
        SpoolConfig {
            max_bytes: args.spool_max_mb.saturating_mul(1 << 20),
            ..SpoolConfig::default()
        },
    )
    .context("opening the spool")
}

/// The identity kept in `DATA/identity`, or a new one from enrolling at `server` with the token;
/// with the group joined when it is new.
pub async fn identity(
    server: &str,
    args: &ServerArgs,
    data: &Path,
) -> anyhow::Result<(Identity, Option<String>)> {
    let dir = data.join("identity");
    if let Ok(identity) = Identity::load(&dir) {
        return Ok((identity, None));
    }
    let token = args
        .enroll_token
        .as_deref()
        .context("not enrolled yet: give --enroll-token")?;
    let ca = args
        .ca
        .as_deref()
        .context("give --ca, the server's ca.pem, to enroll")?;
    let ca_pem =
        std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
    let about = About {
        hostname: hostname(),
        os: std::env::consts::OS.to_owned(),
        version: session::VERSION.to_owned(),
    };
    let enrolled = uplink::enroll(server, &ca_pem, token, &about)
        .await
        .context("enrolling")?;
    enrolled
        .identity
        .save(&dir)
        .context("keeping the identity")?;
    Ok((enrolled.identity, Some(enrolled.group)))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
