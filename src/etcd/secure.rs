//! Connecting to etcd, secured or not: the [`EtcdOptions`] an
//! [`EtcdManager`](super::EtcdManager) connects with (request timeout, TLS, client
//! certificate, user and password), and the proof that the whole chain works before
//! [`EtcdManager::connect_with`](super::EtcdManager::connect_with) returns.
//!
//! Connecting proves, each step bounded by the request timeout and each failure named:
//! the TLS handshake (a server certificate we do not trust, or a client certificate the
//! server refuses, says "TLS … certificate"), the login ("authentication"), and read and
//! write permission on the prefix ("permission denied"), through a transaction that etcd
//! checks exactly like a write under the prefix but that never writes anything.
//!
//! Auth tokens expire (etcd's simple tokens after `--auth-token-ttl` of disuse, 5 minutes
//! by default): the client re-authenticates with the stored password and retries the
//! request once when etcd answers "invalid auth token", so a tracker keeps leading
//! across expiries.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Identity, TlsOptions, Txn, TxnOp,
};
use tokio::time::Instant;
use tracing::info;

use super::EtcdConfig;
use crate::LeaseError;

/// The key whose permission `connect` checks: a write to it is asked for but never made
/// (see [`probe`]). Under the prefix, so a role granting the prefix covers it.
const PROBE_KEY: &str = ".leadership-permission-probe";

/// How an [`EtcdManager`](super::EtcdManager) connects: the bound on each request, and,
/// for a secured cluster, TLS (the CA to trust, an optional client certificate, an
/// optional server name) and a user with its password.
///
/// Built with chained calls; nothing is read or checked until
/// [`EtcdManager::connect_with`](super::EtcdManager::connect_with), which reports every
/// problem (an unreadable file, a key that does not match its certificate, …) as an
/// error naming the file.
///
/// ```no_run
/// # async fn demo() -> Result<(), leadership::LeaseError> {
/// use std::time::Duration;
/// use leadership::etcd::{EtcdConfig, EtcdManager, EtcdOptions};
///
/// let config = EtcdConfig::new(vec!["https://etcd-0.internal:2379".into()], "/leadership");
/// let options = EtcdOptions::new()
///     .request_timeout(Duration::from_secs(2))
///     .ca_file("/etc/leadership/etcd-ca.pem")
///     .client_cert_files("/etc/leadership/client.pem", "/etc/leadership/client-key.pem")
///     .user("leadership", "secret");
/// let manager = EtcdManager::connect_with(config, options).await?;
/// # drop(manager); Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdOptions {
    request_timeout: Duration,
    ca: Option<Pem>,
    identity: Option<(Pem, Pem)>,
    domain: Option<String>,
    user: Option<(String, String)>,
}

/// PEM text, read from a file at connect time or given in memory.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Inline(Vec<u8>),
}

impl Pem {
    /// Where the PEM comes from, for error messages: `the CA certificate file /x`.
    fn describe(&self, what: &str) -> String {
        match self {
            Pem::File(path) => format!("the {what} file {}", path.display()),
            Pem::Inline(_) => format!("the {what} given in memory"),
        }
    }

    /// The PEM text; an unreadable file is `Invalid`, naming it. (A blocking read, once
    /// at connect time, of a file of a few kilobytes.)
    fn load(&self, what: &str) -> Result<Vec<u8>, LeaseError> {
        match self {
            Pem::File(path) => std::fs::read(path).map_err(|e| {
                LeaseError::Invalid(format!("cannot read {}: {e}", self.describe(what)))
            }),
            Pem::Inline(bytes) => Ok(bytes.clone()),
        }
    }

    /// Loads the PEM text and checks that it holds a block whose label ends with
    /// `label_end` (e.g. `CERTIFICATE-----`), so a wrong or empty file is reported by
    /// name rather than as a failed handshake.
    fn load_block(&self, what: &str, label_end: &str, kind: &str) -> Result<Vec<u8>, LeaseError> {
        let bytes = self.load(what)?;
        let text = String::from_utf8_lossy(&bytes);
        let found = text.match_indices("-----BEGIN ").any(|(at, _)| {
            text[at..]
                .lines()
                .next()
                .is_some_and(|l| l.ends_with(label_end))
        });
        if found {
            Ok(bytes)
        } else {
            Err(LeaseError::Invalid(format!(
                "{} holds no PEM {kind} (no \"-----BEGIN …{label_end}\" line)",
                self.describe(what)
            )))
        }
    }
}

impl Default for EtcdOptions {
    fn default() -> EtcdOptions {
        EtcdOptions::new()
    }
}

impl fmt::Debug for EtcdOptions {
    /// Shows where each part comes from; never the password or an in-memory key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("request_timeout", &self.request_timeout)
            .field(
                "ca",
                &self.ca.as_ref().map(|p| p.describe("CA certificate")),
            )
            .field(
                "client_cert",
                &self
                    .identity
                    .as_ref()
                    .map(|(c, _)| c.describe("certificate")),
            )
            .field(
                "client_key",
                &self.identity.as_ref().map(|(_, k)| k.describe("key")),
            )
            .field("domain_name", &self.domain)
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .finish()
    }
}

impl EtcdOptions {
    /// Plain HTTP, no user, requests bounded by
    /// [`EtcdManager::DEFAULT_REQUEST_TIMEOUT`](super::EtcdManager::DEFAULT_REQUEST_TIMEOUT).
    pub fn new() -> EtcdOptions {
        EtcdOptions {
            request_timeout: super::EtcdManager::DEFAULT_REQUEST_TIMEOUT,
            ca: None,
            identity: None,
            domain: None,
            user: None,
        }
    }

    /// Bounds each request to etcd, and each step of connecting. A claim is further
    /// bounded by a quarter of its duration (see the [module documentation](super)).
    /// Connecting with a zero timeout is `Invalid`.
    pub fn request_timeout(mut self, timeout: Duration) -> EtcdOptions {
        self.request_timeout = timeout;
        self
    }

    /// Speaks TLS, trusting the server certificates signed by the CA certificate(s) in
    /// this PEM file (etcdctl's `--cacert`). The endpoints must then be `https://` URLs.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> EtcdOptions {
        self.ca = Some(Pem::File(path.into()));
        self
    }

    /// Like [`ca_file`](EtcdOptions::ca_file), with the PEM text itself.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> EtcdOptions {
        self.ca = Some(Pem::Inline(pem.into()));
        self
    }

    /// Presents this client certificate (PEM, etcdctl's `--cert`) with its private key
    /// (PEM, PKCS#8, PKCS#1 or SEC1; etcdctl's `--key`), for a server started with
    /// `--client-cert-auth`. Needs [`ca_file`](EtcdOptions::ca_file) too.
    pub fn client_cert_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> EtcdOptions {
        self.identity = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Like [`client_cert_files`](EtcdOptions::client_cert_files), with the PEM texts
    /// themselves.
    pub fn client_cert_pem(
        mut self,
        cert: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> EtcdOptions {
        self.identity = Some((Pem::Inline(cert.into()), Pem::Inline(key.into())));
        self
    }

    /// Checks the server's certificate against this name instead of each endpoint's
    /// host, e.g. when connecting by IP address to servers whose certificates name a
    /// DNS name. Needs [`ca_file`](EtcdOptions::ca_file) too.
    pub fn domain_name(mut self, name: impl Into<String>) -> EtcdOptions {
        self.domain = Some(name.into());
        self
    }

    /// Logs in as this etcd user (etcdctl's `--user NAME:PASSWORD`); the token etcd
    /// hands out is renewed with the same password whenever it expires.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> EtcdOptions {
        self.user = Some((name.into(), password.into()));
        self
    }

    /// The bound on each request.
    pub(crate) fn timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The TLS configuration, every file read and checked; `None` for plain HTTP.
    fn tls(&self) -> Result<Option<TlsOptions>, LeaseError> {
        let Some(ca) = &self.ca else {
            if self.identity.is_some() || self.domain.is_some() {
                return Err(LeaseError::Invalid(
                    "a client certificate or a TLS domain name needs TLS, and TLS needs the \
                     CA certificate that signed etcd's server certificate (EtcdOptions::ca_file)"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let ca_pem = ca.load_block("CA certificate", "CERTIFICATE-----", "certificate")?;
        let mut tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .timeout(self.request_timeout);
        if let Some((cert, key)) = &self.identity {
            let cert_pem =
                cert.load_block("client certificate", "CERTIFICATE-----", "certificate")?;
            let key_pem = key.load_block("client key", "PRIVATE KEY-----", "private key")?;
            tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
        }
        if let Some(domain) = &self.domain {
            tls = tls.domain_name(domain.clone());
        }
        Ok(Some(tls))
    }
}

/// Connects and proves the chain (TLS, login, permission on the prefix); see the
/// [module documentation](self). Errors are `Invalid` for bad options, `Failed`
/// otherwise, each message naming its cause.
pub(super) async fn open(config: &EtcdConfig, options: &EtcdOptions) -> Result<Client, LeaseError> {
    let timeout = options.request_timeout;
    if config.endpoints.is_empty() {
        return Err(LeaseError::Invalid("no etcd endpoints given".into()));
    }
    if timeout.is_zero() {
        return Err(LeaseError::Invalid(
            "etcd request timeout must be positive".into(),
        ));
    }
    // One deadline for the whole of connecting.
    let deadline = Instant::now()
        .checked_add(timeout)
        .ok_or_else(|| LeaseError::Invalid("etcd request timeout is too long".into()))?;
    let tls = options.tls()?;
    check_schemes(&config.endpoints, tls.is_some())?;

    // HTTP/2 pings only while a stream (a watch) is open, and no more often than etcd's
    // default keep-alive policy accepts (every 5 s): a dead connection under a pending
    // block is then noticed within 15 s.
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(false);
    if let Some(tls) = tls {
        connect = connect.with_tls(tls);
    }
    if let Some((name, password)) = &options.user {
        // etcd-client re-authenticates and retries once on "invalid auth token".
        connect = connect
            .with_user(name.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    let explain = |e: etcd_client::Error, during: &str| explain(&e, during, config, options);

    // With a user, this is the TLS handshake and the login; without, no I/O yet.
    let connecting = Client::connect(&config.endpoints, Some(connect));
    let mut client = match tokio::time::timeout_at(deadline, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(explain(e, "connecting to etcd")),
        Err(_) => return Err(timed_out("connecting to etcd", timeout)),
    };
    let status = match tokio::time::timeout_at(deadline, client.status()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(explain(e, "etcd status")),
        Err(_) => return Err(timed_out("etcd status", timeout)),
    };
    match tokio::time::timeout_at(deadline, probe(&mut client, &config.prefix)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(explain(e, "checking permissions on the prefix")),
        Err(_) => return Err(timed_out("checking permissions on the prefix", timeout)),
    }
    info!(
        endpoints = ?config.endpoints,
        prefix = %config.prefix,
        version = status.version(),
        tls = options.ca.is_some(),
        user = options.user.as_ref().map(|(name, _)| name.as_str()),
        "connected to etcd"
    );
    Ok(client)
}

/// Asks etcd for read and write permission under the prefix without writing: a
/// transaction whose guard can never hold (no key has a negative version) and whose
/// success branch puts the probe key. etcd checks the permissions of the guard (read)
/// and of both branches (write) before evaluating anything, so a user without write
/// permission gets "permission denied", and nothing is ever written.
async fn probe(client: &mut Client, prefix: &str) -> Result<(), etcd_client::Error> {
    let key = format!("{prefix}/{PROBE_KEY}");
    let txn = Txn::new()
        .when([Compare::version(key.as_str(), CompareOp::Less, 0)])
        .and_then([TxnOp::put(key.as_str(), "", None)]);
    let resp = client.txn(txn).await?;
    debug_assert!(!resp.succeeded(), "a version is never negative");
    Ok(())
}

/// TLS options need `https://` endpoints and `https://` endpoints need TLS options: say
/// so by name rather than as a refused handshake.
fn check_schemes(endpoints: &[String], tls: bool) -> Result<(), LeaseError> {
    for endpoint in endpoints {
        if tls && endpoint.starts_with("http://") {
            return Err(LeaseError::Invalid(format!(
                "etcd endpoint {endpoint} is plain HTTP but TLS options were given: use https://"
            )));
        }
        if !tls && endpoint.starts_with("https://") {
            return Err(LeaseError::Invalid(format!(
                "etcd endpoint {endpoint} is HTTPS: give the CA certificate that signed its \
                 server certificate (EtcdOptions::ca_file, --cacert)"
            )));
        }
    }
    Ok(())
}

fn timed_out(during: &str, timeout: Duration) -> LeaseError {
    LeaseError::Failed(format!("{during}: timed out after {timeout:?}"))
}

/// An error and its sources, each once: the cause of a failed handshake is several
/// levels down (transport, connection, rustls).
fn chain(e: &etcd_client::Error) -> String {
    use std::error::Error as _;
    let mut parts: Vec<String> = vec![match e {
        // Its display repeats the wrapped error's: "transport error: transport error".
        etcd_client::Error::TransportError(inner) => inner.to_string(),
        _ => e.to_string(),
    }];
    // etcd_client::Error reports no source; the errors it wraps do.
    let mut source = match e {
        etcd_client::Error::TransportError(inner) => inner.source(),
        etcd_client::Error::GRpcStatus(inner) => inner.source(),
        etcd_client::Error::IoError(inner) => inner.source(),
        _ => None,
    };
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Turns a failure while connecting into an error saying what is wrong: bad options are
/// `Invalid`; TLS, authentication and permission failures are `Failed` with a message
/// that says which ("TLS … certificate", "authentication", "permission denied").
fn explain(
    e: &etcd_client::Error,
    during: &str,
    config: &EtcdConfig,
    options: &EtcdOptions,
) -> LeaseError {
    let detail = chain(e);
    let lower = detail.to_lowercase();
    let has = |needle: &str| lower.contains(needle);
    let key_files = || {
        options.identity.as_ref().map_or_else(
            || "the client key and certificate".to_owned(),
            |(cert, key)| {
                format!(
                    "{} and {}",
                    key.describe("client key"),
                    cert.describe("client certificate")
                )
            },
        )
    };
    let ca = || {
        options
            .ca
            .as_ref()
            .map_or_else(|| "no CA".to_owned(), |ca| ca.describe("CA certificate"))
    };
    let user = || {
        options.user.as_ref().map_or_else(
            || "the client certificate's user (its CN)".to_owned(),
            |(name, _)| format!("user {name:?}"),
        )
    };

    // Bad options, found before any I/O.
    if matches!(
        e,
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_)
    ) {
        return LeaseError::Invalid(format!("etcd endpoints {:?}: {e}", config.endpoints));
    }
    if has("keys may not be consistent") || has("keymismatch") {
        return LeaseError::Invalid(format!("{} do not match: {detail}", key_files()));
    }
    if has("parsing tls private key") {
        return LeaseError::Invalid(format!(
            "{} cannot be used (a PEM private key, PKCS#8, PKCS#1 or SEC1, unencrypted): {detail}",
            key_files()
        ));
    }
    if has("parsing tls certificate") {
        return LeaseError::Invalid(format!(
            "a certificate cannot be parsed ({}; {}): {detail}",
            ca(),
            key_files()
        ));
    }

    // What etcd answered.
    if has("permission denied") {
        return LeaseError::Failed(format!(
            "{during}: permission denied on the prefix {}: {} needs a role granting \
             readwrite on it (etcdctl role grant-permission ROLE readwrite --prefix=true \
             {}/): {detail}",
            config.prefix,
            user(),
            config.prefix
        ));
    }
    if has("authentication failed") || has("invalid user id or password") {
        return LeaseError::Failed(format!(
            "{during}: etcd authentication failed for {}: wrong user name or password: {detail}",
            user()
        ));
    }
    if has("user name is empty") {
        return LeaseError::Failed(format!(
            "{during}: etcd requires authentication: give a user and password, or a client \
             certificate whose CN is an etcd user: {detail}"
        ));
    }
    if has("authentication is not enabled") {
        return LeaseError::Failed(format!(
            "{during}: etcd authentication: a user was given but the server has authentication \
             disabled: {detail}"
        ));
    }
    if has("invalid auth token") || has("user name not found") {
        return LeaseError::Failed(format!(
            "{during}: etcd authentication failed for {}: {detail}",
            user()
        ));
    }

    // The TLS handshake, as rustls reports it.
    if has("unknownissuer") || has("badsignature") || has("unknown issuer") {
        return LeaseError::Failed(format!(
            "{during}: TLS: etcd's server certificate is not trusted: it is not signed by \
             {}: {detail}",
            ca()
        ));
    }
    if has("notvalidforname") || has("certificate not valid for name") {
        return LeaseError::Failed(format!(
            "{during}: TLS: etcd's server certificate is not valid for the name connected to \
             (give the name it was issued for: EtcdOptions::domain_name): {detail}"
        ));
    }
    if has("certificate expired") || has("certificate not valid yet") {
        return LeaseError::Failed(format!(
            "{during}: TLS: etcd's server certificate has expired or is not valid yet: {detail}"
        ));
    }
    let client_cert = || {
        options.identity.as_ref().map_or_else(
            || "none was given".to_owned(),
            |(cert, _)| cert.describe("client certificate"),
        )
    };
    if has("certificaterequired") || has("badcertificate") || has("unknownca") {
        return LeaseError::Failed(format!(
            "{during}: TLS: etcd refused the client certificate ({}; it accepts only \
             certificates signed by a CA in its --trusted-ca-file): {detail}",
            client_cert()
        ));
    }
    // With TLS 1.3 the client finishes its side of the handshake before the server has
    // checked the client's certificate; a server that refuses it just closes the
    // connection, and hyper reports no more than that.
    if options.ca.is_some()
        && (has("connection closed") || has("connection reset") || has("broken pipe"))
    {
        return LeaseError::Failed(format!(
            "{during}: TLS: etcd closed the connection during or right after the handshake: \
             most likely it refused the client certificate ({}; a server started with \
             --client-cert-auth accepts only certificates signed by a CA in its \
             --trusted-ca-file): {detail}",
            client_cert()
        ));
    }
    if has("tls") || has("certificate") || has("handshake") || has("alert") || has("corrupt") {
        return LeaseError::Failed(format!(
            "{during}: TLS handshake with etcd failed: {detail}"
        ));
    }
    LeaseError::Failed(format!("{during}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory for one test, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "leadership-options-{name}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A self-signed certificate and its key, as PEM.
    fn cert_and_key(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn config(endpoint: &str) -> EtcdConfig {
        EtcdConfig::new(vec![endpoint.to_owned()], "/p")
    }

    /// Connects to a port nothing listens on: every error expected here comes before
    /// any I/O.
    async fn invalid(endpoint: &str, options: EtcdOptions) -> String {
        match open(&config(endpoint), &options).await {
            Err(LeaseError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {:?}", other.map(|_| "a client")),
        }
    }

    const TLS_ENDPOINT: &str = "https://127.0.0.1:1";

    #[actix_rt::test]
    async fn a_missing_ca_file_is_named() {
        let message = invalid(
            TLS_ENDPOINT,
            EtcdOptions::new().ca_file("/nonexistent/ca.pem"),
        )
        .await;
        assert!(
            message.contains("cannot read the CA certificate file /nonexistent/ca.pem"),
            "{message}"
        );
    }

    #[actix_rt::test]
    async fn files_without_the_right_pem_block_are_named() {
        let scratch = Scratch::new("pem");
        let (cert, key) = cert_and_key("client");
        let ca = scratch.file("ca.pem", &cert);
        let cert_file = scratch.file("client.pem", &cert);
        let key_file = scratch.file("client-key.pem", &key);
        let garbage = scratch.file("garbage.pem", "not a certificate\n");

        let message = invalid(TLS_ENDPOINT, EtcdOptions::new().ca_file(&garbage)).await;
        assert!(message.contains("CA certificate file"), "{message}");
        assert!(message.contains("garbage.pem"), "{message}");
        assert!(message.contains("no PEM certificate"), "{message}");

        // The key given where the certificate belongs, and the other way round.
        let swapped = EtcdOptions::new()
            .ca_file(&ca)
            .client_cert_files(&key_file, &cert_file);
        let message = invalid(TLS_ENDPOINT, swapped).await;
        assert!(
            message.contains("client certificate file") && message.contains("client-key.pem"),
            "{message}"
        );
        let key_is_a_cert = EtcdOptions::new()
            .ca_file(&ca)
            .client_cert_files(&cert_file, &cert_file);
        let message = invalid(TLS_ENDPOINT, key_is_a_cert).await;
        assert!(
            message.contains("client key file") && message.contains("no PEM private key"),
            "{message}"
        );
    }

    #[actix_rt::test]
    async fn a_key_that_does_not_match_its_certificate_is_named() {
        let scratch = Scratch::new("mismatch");
        let (cert, _) = cert_and_key("client");
        let (_, other_key) = cert_and_key("other");
        let ca = scratch.file("ca.pem", &cert);
        let cert_file = scratch.file("client.pem", &cert);
        let key_file = scratch.file("other-key.pem", &other_key);
        let options = EtcdOptions::new()
            .ca_file(&ca)
            .client_cert_files(&cert_file, &key_file);
        let message = invalid(TLS_ENDPOINT, options).await;
        assert!(message.contains("do not match"), "{message}");
        assert!(message.contains("other-key.pem"), "{message}");
        assert!(message.contains("client.pem"), "{message}");

        // The same in memory; and a matching pair passes the check (and then fails to
        // connect, which is not `Invalid`).
        let (cert, key) = cert_and_key("client");
        let message = invalid(
            TLS_ENDPOINT,
            EtcdOptions::new()
                .ca_pem(cert.clone())
                .client_cert_pem(cert.clone(), other_key),
        )
        .await;
        assert!(message.contains("given in memory"), "{message}");
        let matching = EtcdOptions::new()
            .request_timeout(Duration::from_millis(500))
            .ca_pem(cert.clone())
            .client_cert_pem(cert, key);
        let result = open(&config(TLS_ENDPOINT), &matching).await;
        assert!(
            matches!(result, Err(LeaseError::Failed(_))),
            "{:?}",
            result.err()
        );
    }

    #[actix_rt::test]
    async fn tls_options_and_url_schemes_must_agree() {
        let (cert, key) = cert_and_key("client");
        let message = invalid(TLS_ENDPOINT, EtcdOptions::new()).await;
        assert!(
            message.contains("HTTPS") && message.contains("CA"),
            "{message}"
        );

        let message = invalid(
            "http://127.0.0.1:1",
            EtcdOptions::new().ca_pem(cert.clone()),
        )
        .await;
        assert!(message.contains("plain HTTP"), "{message}");

        let no_ca = EtcdOptions::new().client_cert_pem(cert, key);
        let message = invalid(TLS_ENDPOINT, no_ca).await;
        assert!(message.contains("needs TLS"), "{message}");
        let message = invalid(TLS_ENDPOINT, EtcdOptions::new().domain_name("etcd")).await;
        assert!(message.contains("needs TLS"), "{message}");
    }

    #[actix_rt::test]
    async fn endpoints_and_timeout_are_checked() {
        let empty = EtcdConfig::new(vec![], "/p");
        assert!(matches!(
            open(&empty, &EtcdOptions::new()).await,
            Err(LeaseError::Invalid(_))
        ));
        let zero = EtcdOptions::new().request_timeout(Duration::ZERO);
        let message = invalid("http://127.0.0.1:1", zero).await;
        assert!(message.contains("timeout"), "{message}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let options = EtcdOptions::new()
            .ca_file("/etc/ca.pem")
            .client_cert_pem("CERT-TEXT", "KEY-TEXT")
            .user("app", "hunter2");
        let shown = format!("{options:?}");
        assert!(
            shown.contains("/etc/ca.pem") && shown.contains("\"app\""),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("KEY-TEXT"), "{shown}");
    }
}
