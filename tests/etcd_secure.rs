//! The etcd-backed manager against a secured etcd: TLS with client certificates
//! (`--client-cert-auth`), authentication enabled, and a user whose role covers only its
//! prefix — as production clusters are run.
//!
//! Each test starts its own etcd (the `etcd` binary on PATH, with `etcdctl` to set it up)
//! on free loopback ports, with certificates generated at test time (rcgen): a CA, a
//! server certificate for 127.0.0.1, localhost and `etcd.internal`, client certificates
//! for `root` and `app`, and an unrelated "rogue" CA. Ignored by default, since they need
//! the binaries; CI runs them with
//! `.ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored`.
#![cfg(feature = "etcd")]

#[path = "etcd_support/ports.rs"]
mod ports;
#[path = "etcd_support/server.rs"]
mod server;
#[path = "etcd_support/unique.rs"]
mod unique;
#[path = "etcd_support/wait.rs"]
mod wait;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix::prelude::*;
use leadership::etcd::{EtcdConfig, EtcdManager, EtcdOptions};
use leadership::{Claimer, Leader, LeaseError, ReleaseLeadership, Tracker, UnitName};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::time::Instant;
use unique::scratch_dir;
use wait::{poll_until, within};

/// The prefix the `app` user's role covers (as `/app/`), and its password.
const PREFIX: &str = "/app";
const APP_PASSWORD: &str = "app-secret";
const READER_PASSWORD: &str = "reader-secret";
const ROOT_PASSWORD: &str = "root-secret";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

/// The certificates of one test, written to its directory.
#[derive(Debug)]
struct Pki {
    ca: PathBuf,
    rogue_ca: PathBuf,
    server: Pair,
    root: Pair,
    app: Pair,
    /// A client certificate signed by the rogue CA, with CN `app`.
    rogue_app: Pair,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Issues a leaf certificate for `cn` with these subject alt names and usage.
fn issue(
    dir: &Path,
    name: &str,
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Pair {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    Pair {
        cert: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
    }
}

impl Pki {
    fn generate(dir: &Path) -> Pki {
        let make_ca = |name: &str, file: &str| {
            let key = KeyPair::generate().unwrap();
            let params = ca_params(name);
            let cert = params.self_signed(&key).unwrap();
            (write(dir, file, &cert.pem()), Issuer::new(params, key))
        };
        let (ca, issuer) = make_ca("leadership test CA", "ca.pem");
        let (rogue_ca, rogue) = make_ca("rogue CA", "rogue-ca.pem");
        let server = issue(
            dir,
            "server",
            &issuer,
            "etcd",
            &["127.0.0.1", "localhost", "etcd.internal"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        Pki {
            root: issue(dir, "root", &issuer, "root", &[], client.clone()),
            app: issue(dir, "app", &issuer, "app", &[], client.clone()),
            rogue_app: issue(dir, "rogue-app", &rogue, "app", &[], client),
            ca,
            rogue_ca,
            server,
        }
    }
}

/// A private etcd with TLS, `--client-cert-auth` and authentication enabled: users
/// `root`, `app` (role `leadership`: readwrite on `/app/`) and `reader` (role `reader`:
/// read on `/app/`). Killed and cleaned up on drop.
#[derive(Debug)]
struct SecureEtcd {
    child: Child,
    dir: PathBuf,
    endpoint: String,
    pki: Pki,
}

impl SecureEtcd {
    /// Starts it (with `--auth-token-ttl` when given) and sets up auth; panics with the
    /// reason if it cannot.
    fn start(name: &str, auth_token_ttl: Option<u32>) -> SecureEtcd {
        let etcd = SecureEtcd::start_without_auth(name, auth_token_ttl);
        etcd.set_up_auth();
        etcd
    }

    /// Starts it with TLS and `--client-cert-auth` but authentication still disabled.
    fn start_without_auth(name: &str, auth_token_ttl: Option<u32>) -> SecureEtcd {
        let dir = scratch_dir(&format!("secure-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki::generate(&dir);
        let started = server::on_free_ports(|attempt, client, peer_url| {
            let endpoint = format!("https://127.0.0.1:{client}");
            let mut command = server::command(
                "s",
                &dir.join(format!("data-{attempt}")),
                &endpoint,
                &peer_url,
            );
            command
                .arg("--cert-file")
                .arg(&pki.server.cert)
                .arg("--key-file")
                .arg(&pki.server.key)
                .arg("--trusted-ca-file")
                .arg(&pki.ca)
                .arg("--client-cert-auth");
            if let Some(ttl) = auth_token_ttl {
                command.args(["--auth-token-ttl", &ttl.to_string()]);
            }
            let log = std::fs::File::create(dir.join(format!("etcd-{attempt}.log"))).unwrap();
            let mut child = command
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn etcd (is etcd-server installed? run under .ci/with-etcd)");
            let healthy = server::wait_healthy(&mut child, Duration::from_secs(20), || {
                etcdctl(&endpoint, &pki, &["endpoint", "health"])
                    .status
                    .success()
            });
            if !healthy {
                // Probably lost a port race: kill it and try other ports.
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Some((child, endpoint))
        });
        let Some((child, endpoint)) = started else {
            panic!("could not start a secured etcd; logs in {}", dir.display());
        };
        SecureEtcd {
            child,
            dir,
            endpoint,
            pki,
        }
    }

    /// etcdctl against this server, as root by its client certificate (CN `root`).
    fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        etcdctl(&self.endpoint, &self.pki, args)
    }

    fn must(&self, args: &[&str]) {
        let out = self.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The minimal role of docs/etcd.md, then `auth enable`.
    fn set_up_auth(&self) {
        self.must(&["role", "add", "leadership"]);
        self.must(&[
            "role",
            "grant-permission",
            "leadership",
            "readwrite",
            "--prefix=true",
            "/app/",
        ]);
        self.must(&["user", "add", "app", "--new-user-password", APP_PASSWORD]);
        self.must(&["user", "grant-role", "app", "leadership"]);
        self.must(&["role", "add", "reader"]);
        self.must(&[
            "role",
            "grant-permission",
            "reader",
            "read",
            "--prefix=true",
            "/app/",
        ]);
        self.must(&[
            "user",
            "add",
            "reader",
            "--new-user-password",
            READER_PASSWORD,
        ]);
        self.must(&["user", "grant-role", "reader", "reader"]);
        self.must(&["user", "add", "root", "--new-user-password", ROOT_PASSWORD]);
        self.must(&["user", "grant-role", "root", "root"]);
        self.must(&["auth", "enable"]);
    }

    /// Options for user `app` with its client certificate, trusting the right CA.
    fn app_options(&self) -> EtcdOptions {
        EtcdOptions::new()
            .request_timeout(secs(2.0))
            .ca_file(&self.pki.ca)
            .client_cert_files(&self.pki.app.cert, &self.pki.app.key)
            .user("app", APP_PASSWORD)
    }

    fn config(&self, prefix: &str) -> EtcdConfig {
        EtcdConfig::new(vec![self.endpoint.clone()], prefix)
    }

    /// The keys under `/app/`, as root sees them.
    fn keys(&self) -> String {
        let out = self.etcdctl(&["get", "--prefix", "--keys-only", "/app/"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// etcdctl against `endpoint`, as root by its client certificate (CN `root`).
fn etcdctl(endpoint: &str, pki: &Pki, args: &[&str]) -> std::process::Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout=2s"])
        .arg("--cacert")
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&pki.root.cert)
        .arg("--key")
        .arg(&pki.root.key)
        .args(args)
        .output()
        .expect("run etcdctl (is etcd-client installed? run under .ci/with-etcd)")
}

impl SecureEtcd {
    /// The ids of the live leases, as root sees them.
    fn leases(&self) -> Vec<String> {
        let out = self.etcdctl(&["lease", "list"]);
        assert!(out.status.success(), "{out:?}");
        // "found N leases" and then one id per line.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(str::to_owned)
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl Drop for SecureEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unit(name: &str) -> UnitName {
    UnitName::new(name).unwrap()
}

/// Asserts that `message` contains every one of `parts`.
fn assert_says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "no {part:?} in: {message}");
    }
}

/// Connects and expects a failure within the request timeout whose message says why.
async fn refused(config: EtcdConfig, options: EtcdOptions) -> String {
    let started = Instant::now();
    let result = within(
        secs(5.0),
        "connect to answer",
        EtcdManager::connect_with(config, options),
    )
    .await;
    let took = started.elapsed();
    let message = match result {
        Ok(_) => panic!("connected, but it should have failed"),
        Err(LeaseError::Failed(message)) => message,
        Err(other) => panic!("expected Failed, got {other:?}"),
    };
    println!("refused after {took:?}: {message}");
    assert!(
        !message.contains("timed out"),
        "the cause is known, not a timeout: {message}"
    );
    assert!(took < secs(2.0), "fast: {took:?}");
    message
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn a_tracker_leads_through_tls_a_client_certificate_and_a_user() {
    let etcd = SecureEtcd::start("leads", None);
    let manager = EtcdManager::connect_with(etcd.config(PREFIX), etcd.app_options())
        .await
        .expect("connect as app")
        .start();
    assert_eq!(
        etcd.keys(),
        "",
        "connecting wrote nothing, not even its probe"
    );

    let tracker = Tracker::start(unit("web/0"), Claimer::new(&manager), secs(1.0)).unwrap();
    assert!(
        within(
            secs(5.0),
            "the tracker to lead",
            tracker.wait_leader().wait()
        )
        .await
    );
    let info = manager
        .send(Leader {
            service: "web".into(),
        })
        .await
        .unwrap()
        .expect("etcd names a leader");
    assert_eq!(info.holder, "web/0");
    assert!(etcd.keys().contains("/app/web"), "{}", etcd.keys());
    tracker.kill();
    assert_eq!(tracker.wait().await, Ok(()));

    // Releasing deletes the key and revokes its lease: the role's readwrite on the
    // prefix is all that takes.
    assert_eq!(etcd.leases().len(), 1, "the key's lease");
    let released = manager
        .send(ReleaseLeadership {
            service: "web".into(),
            unit: "web/0".into(),
        })
        .await
        .unwrap();
    assert_eq!(released, Ok(()));
    // The holder key is gone; the term key stays (it keeps terms growing).
    assert_eq!(etcd.keys(), "/app/web/term");
    poll_until(secs(5.0), "the released lease to be revoked", || async {
        etcd.leases().is_empty()
    })
    .await;
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn a_wrong_password_fails_as_authentication() {
    let etcd = SecureEtcd::start("password", None);
    let options = etcd.app_options().user("app", "not-the-password");
    let message = refused(etcd.config(PREFIX), options).await;
    assert_says(&message, &["authentication", "\"app\""]);
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn a_user_for_a_server_without_authentication_fails_as_authentication() {
    let etcd = SecureEtcd::start_without_auth("no-auth", None);
    let message = refused(etcd.config(PREFIX), etcd.app_options()).await;
    assert_says(&message, &["authentication disabled"]);
    // Without the user it connects: TLS and the client certificate are enough.
    let options = EtcdOptions::new()
        .ca_file(&etcd.pki.ca)
        .client_cert_files(&etcd.pki.app.cert, &etcd.pki.app.key);
    EtcdManager::connect_with(etcd.config(PREFIX), options)
        .await
        .expect("no auth: anyone with a trusted certificate may write");
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn an_untrusted_server_certificate_fails_as_tls() {
    let etcd = SecureEtcd::start("untrusted", None);
    let options = etcd.app_options().ca_file(&etcd.pki.rogue_ca);
    let message = refused(etcd.config(PREFIX), options).await;
    assert_says(
        &message,
        &["TLS", "certificate", "not trusted", "rogue-ca.pem"],
    );
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn a_client_certificate_the_server_does_not_trust_fails_as_tls() {
    let etcd = SecureEtcd::start("rogue-client", None);
    let rogue = &etcd.pki.rogue_app;
    let options = etcd
        .app_options()
        .client_cert_files(&rogue.cert, &rogue.key);
    let message = refused(etcd.config(PREFIX), options).await;
    assert_says(&message, &["TLS", "certificate"]);

    // No client certificate at all, to a server that demands one.
    let options = EtcdOptions::new()
        .ca_file(&etcd.pki.ca)
        .user("app", APP_PASSWORD);
    let message = refused(etcd.config(PREFIX), options).await;
    assert_says(&message, &["TLS", "certificate"]);
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn a_prefix_outside_the_role_is_permission_denied() {
    let etcd = SecureEtcd::start("outside", None);
    let message = refused(etcd.config("/elsewhere"), etcd.app_options()).await;
    assert_says(&message, &["permission denied", "/elsewhere"]);

    // `/application` shares the characters of `/app` but not the role's `/app/`.
    let message = refused(etcd.config("/application"), etcd.app_options()).await;
    assert_says(&message, &["permission denied"]);
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn read_permission_alone_is_permission_denied() {
    let etcd = SecureEtcd::start("reader", None);
    let options = etcd.app_options().user("reader", READER_PASSWORD);
    let message = refused(etcd.config(PREFIX), options).await;
    assert_says(&message, &["permission denied", "\"reader\""]);
    assert_eq!(etcd.keys(), "", "the probe wrote nothing");
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn the_server_name_can_be_overridden() {
    let etcd = SecureEtcd::start("domain", None);
    // The certificate names etcd.internal (and 127.0.0.1): checked against that name.
    let options = etcd.app_options().domain_name("etcd.internal");
    EtcdManager::connect_with(etcd.config(PREFIX), options)
        .await
        .expect("the certificate is valid for etcd.internal");

    let options = etcd.app_options().domain_name("etcd.elsewhere");
    let message = refused(etcd.config(PREFIX), options).await;
    assert_says(&message, &["TLS", "not valid for the name"]);
}

#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn without_a_password_the_client_certificate_is_the_user() {
    let etcd = SecureEtcd::start("cn", None);
    // etcd takes the user from the certificate's CN (`app`) when no token is given.
    let options = EtcdOptions::new()
        .ca_file(&etcd.pki.ca)
        .client_cert_files(&etcd.pki.app.cert, &etcd.pki.app.key);
    EtcdManager::connect_with(etcd.config(PREFIX), options.clone())
        .await
        .expect("the CN app is the user app");
    let message = refused(etcd.config("/elsewhere"), options).await;
    assert_says(&message, &["permission denied"]);
}

/// etcd's simple tokens expire after `--auth-token-ttl` seconds without use. With a TTL
/// of 1 s and trackers renewing every 2 s, every renewal finds its token expired: the
/// leader must keep leading, with no failure, across several expiries.
#[actix_rt::test]
#[ignore = "needs the etcd binary: .ci/with-etcd cargo test --all-features --test etcd_secure -- --include-ignored"]
async fn a_leader_keeps_leading_across_auth_token_expiry() {
    let etcd = SecureEtcd::start("token-ttl", Some(1));

    // First, that tokens do expire here: a client that does not re-authenticate fails.
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(
            std::fs::read(&etcd.pki.ca).unwrap(),
        ))
        .identity(etcd_client::Identity::from_pem(
            std::fs::read(&etcd.pki.app.cert).unwrap(),
            std::fs::read(&etcd.pki.app.key).unwrap(),
        ));
    let raw = etcd_client::ConnectOptions::new()
        .with_tls(tls)
        .with_user("app", APP_PASSWORD);
    let mut plain = etcd_client::Client::connect([etcd.endpoint.as_str()], Some(raw))
        .await
        .expect("connect without token refresh");
    plain
        .get("/app/x", None)
        .await
        .expect("a fresh token works");
    tokio::time::sleep(secs(2.5)).await; // a real wait: etcd's own token clock
    let stale = plain.get("/app/x", None).await;
    let err = stale.expect_err("the token expired after 1 s of disuse");
    assert!(err.to_string().contains("invalid auth token"), "{err}");

    let d = secs(2.0);
    let managers = [
        EtcdManager::connect_with(etcd.config(PREFIX), etcd.app_options())
            .await
            .unwrap()
            .start(),
        EtcdManager::connect_with(etcd.config(PREFIX), etcd.app_options())
            .await
            .unwrap()
            .start(),
    ];
    let trackers = [
        Tracker::start(unit("web/0"), Claimer::new(&managers[0]), d).unwrap(),
        Tracker::start(unit("web/1"), Claimer::new(&managers[1]), d).unwrap(),
    ];
    let (w0, w1) = (trackers[0].wait_leader(), trackers[1].wait_leader());
    let (first, second) = (w0.wait(), w1.wait());
    futures::pin_mut!(first, second);
    within(
        secs(5.0),
        "someone to lead",
        futures::future::select(first, second),
    )
    .await;
    let leader = if trackers[0].claim_leader().await {
        0
    } else {
        1
    };
    assert!(trackers[leader].claim_leader().await);
    let ends = trackers[leader].wait_minion();

    // Five renewals, each after its token expired; the leader stays leader throughout.
    let until = Instant::now() + secs(10.5);
    while Instant::now() < until {
        assert!(
            ends.try_wait().is_none(),
            "leadership ended across a token expiry"
        );
        let (a, b) = (
            trackers[0].claim_leader().await,
            trackers[1].claim_leader().await,
        );
        assert!(!(a && b), "two leaders at once");
        assert!(
            [a, b][leader],
            "the leader answered false: it lost leadership"
        );
        tokio::time::sleep(secs(0.25)).await;
    }
    for tracker in &trackers {
        tracker.kill();
        assert_eq!(tracker.wait().await, Ok(()), "no tracker failed");
    }
}
