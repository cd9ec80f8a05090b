//! The internal certificate authority: created on the first start in the data directory
//! (`ca.pem`, and `ca.key` readable only by its owner), reused afterwards. It signs the agents'
//! certificate requests (subject and SAN = the agent id) and the gateway's own server
//! certificate, which names [`GATEWAY_NAME`] whatever address agents dial.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

/// The CA certificate's file in the data directory (public; operators hand it to agents).
pub const CA_CERT_FILE: &str = "ca.pem";

/// The CA key's file in the data directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// The name the gateway's certificate carries; agents verify the server against this name
/// rather than against the address they dial.
pub const GATEWAY_NAME: &str = palisade_proto::gateway::SERVER_NAME;

/// How long an agent certificate is valid (there is no renewal yet).
const AGENT_CERT_DAYS: i64 = 5 * 365;

/// How long the CA is valid.
const CA_DAYS: i64 = 20 * 365;

/// How long a gateway certificate is valid (a new one is issued at every start).
const SERVER_CERT_DAYS: i64 = 365;

/// The CA could not be loaded, created or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A CA file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Key generation, parsing or signing failed.
    #[error("certificate authority: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The clock is outside what a certificate can express.
    #[error("the clock is out of range for a certificate")]
    Clock,
}

/// A certificate request that cannot be signed.
#[derive(Debug, thiserror::Error)]
#[error("certificate signing request: {0}")]
pub struct BadCsr(pub String);

/// The loaded CA: its certificate and its signing key.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM (the gateway's own identity).
pub struct ServerIdentity {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl Ca {
    /// Loads the CA from `dir`, or creates it there when neither file exists.
    pub fn load_or_create(dir: &Path, now: Timestamp) -> Result<Ca, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if key_path.exists() || cert_path.exists() {
            let read = |path: &Path| {
                std::fs::read_to_string(path).map_err(|source| CaError::File {
                    path: path.to_owned(),
                    source,
                })
            };
            let cert_pem = read(&cert_path)?;
            let key = KeyPair::from_pem(&read(&key_path)?)?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
            return Ok(Ca { cert_pem, issuer });
        }
        let ca = Ca::generate(now)?;
        // The key first, so that a certificate on disk always has its key.
        write_file(&key_path, &ca.issuer.key().serialize_pem(), true)?;
        write_file(&cert_path, &ca.cert_pem, false)?;
        tracing::info!(path = %cert_path.display(), "created the internal CA");
        Ok(ca)
    }

    /// A new CA, in memory only ([`Ca::load_or_create`] keeps it in the data directory).
    pub fn generate(now: Timestamp) -> Result<Ca, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "Palisade internal CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, now, CA_DAYS)?;
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs `message` with the CA's key (ECDSA P-256 with SHA-256, ASN.1 DER): what agents
    /// verify the policies they keep on disk with.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        Ok(rcgen::SigningKey::sign(self.issuer.key(), message)?)
    }

    /// Signs the key in `csr_pem` (whose signature must verify) for `agent_id`. Nothing the
    /// request asks for besides its key is used: the subject and SAN are the agent id, the
    /// certificate is for client authentication only and cannot sign others.
    pub fn sign_agent(
        &self,
        csr_pem: &str,
        agent_id: &str,
        now: Timestamp,
    ) -> Result<(String, String), BadCsr> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| BadCsr(e.to_string()))?;
        let mut params =
            CertificateParams::new(vec![agent_id.to_owned()]).map_err(|e| BadCsr(e.to_string()))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, agent_id);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, now, AGENT_CERT_DAYS).map_err(|e| BadCsr(e.to_string()))?;
        params.serial_number = Some(random_serial().map_err(|e| BadCsr(e.to_string()))?);
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| BadCsr(e.to_string()))?;
        Ok((cert.pem(), fingerprint(cert.der())))
    }

    /// A fresh key and certificate for the gateway, naming [`GATEWAY_NAME`].
    pub fn server_identity(&self, now: Timestamp) -> Result<ServerIdentity, CaError> {
        self.identity_for(&[GATEWAY_NAME.to_owned(), "localhost".to_owned()], now)
    }

    /// A new key and a certificate for a server reached by `names` (DNS names or addresses;
    /// the first is also its common name).
    pub fn identity_for(
        &self,
        names: &[String],
        now: Timestamp,
    ) -> Result<ServerIdentity, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            names.first().map_or(GATEWAY_NAME, String::as_str),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, now, SERVER_CERT_DAYS)?;
        params.serial_number = Some(random_serial()?);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// SHA-256 of a certificate's DER, lower-case hex: how the gateway recognises an agent's
/// certificate on every call.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    crate::audit::hex(&Sha256::digest(der))
}

fn validity(params: &mut CertificateParams, now: Timestamp, days: i64) -> Result<(), CaError> {
    let at = |seconds: i64| {
        time::OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| CaError::Clock)
    };
    let now = now.as_second();
    // An hour of slack for clocks that are a little behind.
    params.not_before = at(now.saturating_sub(3600))?;
    params.not_after = at(now.saturating_add(days.saturating_mul(86_400)))?;
    Ok(())
}

fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| CaError::File {
        path: PathBuf::from("(random source)"),
        source: std::io::Error::other(e.to_string()),
    })?;
    // Positive and non-zero as X.509 asks.
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CaError> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(if private { 0o600 } else { 0o644 });
        }
        let mut file = options.open(path)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|source| CaError::File {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn now() -> Timestamp {
        Timestamp::now()
    }

    #[test]
    fn the_ca_is_created_once_and_signs_only_the_agent_id() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path(), now()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = Ca::load_or_create(dir.path(), now()).unwrap();
        assert_eq!(ca.cert_pem(), again.cert_pem());

        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec!["evil.example".to_owned()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let (cert, fp) = again.sign_agent(&csr, "agent-1", now()).unwrap();
        assert_eq!(fp.len(), 64);
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap();
        let signed = pem.parse_x509().unwrap();
        let san = signed.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(names, ["DNSName(agent-1)"]);
        assert_eq!(signed.subject().to_string(), "CN=agent-1");
        assert!(!signed.is_ca());
        assert!(again.sign_agent("not a csr", "agent-1", now()).is_err());
    }

    #[test]
    fn hostile_requests_are_refused() {
        let ca = Ca::generate(now()).unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(vec!["agent".to_owned()])
            .unwrap()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        assert!(ca.sign_agent(&csr, "agent-1", now()).is_ok());
        let lines: Vec<&str> = csr.lines().collect();
        let (begin, body, end) = (lines[0], &lines[1..lines.len() - 1], lines[lines.len() - 1]);
        let pem = |body: &[&str]| format!("{begin}\n{}\n{end}\n", body.join("\n"));
        // One character of the signature changed (the base64 text stays valid).
        let mut signature = body.to_vec();
        let line = signature.len() - 2;
        let changed: String = signature[line]
            .char_indices()
            .map(|(i, c)| match (i, c) {
                (10, 'A') => 'B',
                (10, _) => 'A',
                _ => c,
            })
            .collect();
        assert_ne!(changed, signature[line]);
        signature[line] = &changed;
        for bad in [
            String::new(),
            "not a csr".to_owned(),
            pem(&[]),
            pem(&["!!!!"]),
            pem(&["MIA="]),
            pem(&["MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw"]),
            pem(&body[..body.len() / 2]),
            pem(&signature),
            // A sequence claiming 2 GiB.
            pem(&["MIR/////"]),
            ca.cert_pem().to_owned(),
        ] {
            assert!(
                ca.sign_agent(&bad, "agent-1", now()).is_err(),
                "{bad:?} signed"
            );
        }
    }
}
