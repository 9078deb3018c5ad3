//! One unit of a service as its own process, electing its leader through etcd.
//!
//! ```text
//! cargo run --features etcd --example etcd_unit -- \
//!     --unit web/0 --endpoints http://127.0.0.1:2379 --duration 2s
//! ```
//!
//! Start three (`web/0`, `web/1`, `web/2`) in three terminals against one etcd: exactly
//! one prints `LEADER`, the others `minion`. Kill the leader (Ctrl-C, or `kill -9`): it
//! releases nothing, so its lease runs out in etcd (2·d rounded up to whole seconds after
//! its last renewal, plus etcd's ~0.5 s expiry granularity) and another unit prints
//! `LEADER` with a greater term. Each line carries a UTC wall-clock time to compare
//! terminals, and a leader says how long after losing sight of the old leader it took over.
//!
//! Options: `--unit SERVICE/N` (required), `--endpoints URL[,URL…]` (default
//! `http://127.0.0.1:2379`, or `https://127.0.0.1:2379` with `--cacert`), `--duration D`
//! (the guarantee d, e.g. `2s`, `500ms`; default `2s`), `--prefix P` (default
//! `/leadership`). `RUST_LOG=leadership=debug` shows each claim.
//!
//! For a secured etcd, etcdctl's names: `--cacert FILE` (the CA that signed the server's
//! certificate; turns TLS on), `--cert FILE --key FILE` (a client certificate and its
//! key, for `--client-cert-auth`), `--user NAME:PASSWORD`:
//!
//! ```text
//! cargo run --features etcd --example etcd_unit -- --unit web/0 \
//!     --endpoints https://127.0.0.1:2379 --cacert ca.pem --cert app.pem --key app-key.pem \
//!     --user app:secret --prefix /app
//! ```
//!
//! Connecting proves the TLS handshake, the login and read/write permission on the
//! prefix; when any fails the example prints why and exits with status 1 (status 2 for
//! bad arguments).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use leadership::etcd::{EtcdConfig, EtcdManager, EtcdOptions};
use leadership::{Claimer, Leader, Tracker, UnitName};

#[derive(Debug)]
struct Args {
    unit: UnitName,
    endpoints: Vec<String>,
    duration: Duration,
    prefix: String,
    security: Security,
}

/// The etcdctl-style security flags, as given.
#[derive(Debug, Default, PartialEq)]
struct Security {
    cacert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    user: Option<(String, String)>,
}

impl Security {
    /// The connect options these flags ask for; flags that need each other are named.
    fn options(&self) -> Result<EtcdOptions, String> {
        let mut options = EtcdOptions::new();
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return Err("--cert needs --key (the certificate's private key)".into())
            }
            (None, Some(_)) => return Err("--key needs --cert (the client certificate)".into()),
            (Some(cert), Some(key)) => {
                if self.cacert.is_none() {
                    return Err(
                        "--cert and --key need --cacert (client certificates need TLS)".into(),
                    );
                }
                options = options.client_cert_files(cert, key);
            }
            (None, None) => {}
        }
        if let Some(ca) = &self.cacert {
            options = options.ca_file(ca);
        }
        if let Some((name, password)) = &self.user {
            options = options.user(name, password);
        }
        Ok(options)
    }
}

const USAGE: &str = "usage: etcd_unit --unit SERVICE/N [--endpoints URL[,URL...]] [--duration 2s] \
     [--prefix /leadership] [--cacert FILE] [--cert FILE --key FILE] [--user NAME:PASSWORD]";

fn usage(problem: &str) -> ! {
    eprintln!("etcd_unit: {problem}");
    eprintln!("{USAGE}");
    std::process::exit(2)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (number, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number.parse().ok()?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// `NAME:PASSWORD`, split at the first colon as etcdctl does (the password may hold
/// colons). The error never repeats the value: it may be a password.
fn parse_user(value: &str) -> Result<(String, String), String> {
    match value.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok((name.to_owned(), password.to_owned())),
        Some(_) => Err("--user NAME:PASSWORD: the name is empty".into()),
        None => Err("--user takes NAME:PASSWORD, with a colon between the two".into()),
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut unit = None;
    let mut endpoints = None;
    let mut duration = Duration::from_secs(2);
    let mut prefix = "/leadership".to_owned();
    let mut security = Security::default();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--unit" => unit = Some(UnitName::new(&value).map_err(|e| format!("--unit: {e}"))?),
            "--endpoints" => endpoints = Some(value.split(',').map(str::to_owned).collect()),
            "--duration" => {
                duration =
                    parse_duration(&value).ok_or_else(|| format!("bad duration {value:?}"))?
            }
            "--prefix" => prefix = value,
            "--cacert" => security.cacert = Some(value.into()),
            "--cert" => security.cert = Some(value.into()),
            "--key" => security.key = Some(value.into()),
            "--user" => security.user = Some(parse_user(&value)?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let scheme = if security.cacert.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(Args {
        unit: unit.ok_or("--unit is required")?,
        endpoints: endpoints.unwrap_or_else(|| vec![format!("{scheme}://127.0.0.1:2379")]),
        duration,
        prefix,
        security,
    })
}

/// Wall-clock time of day (UTC), only to line up the terminals of several units.
fn clock() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let day = since.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        since.subsec_millis()
    )
}

#[actix_rt::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "leadership=warn".into()),
        )
        .init();
    let args = parse_args(std::env::args().skip(1)).unwrap_or_else(|e| usage(&e));
    let options = args.security.options().unwrap_or_else(|e| usage(&e));
    let unit = args.unit.clone();
    let config = EtcdConfig::new(args.endpoints.clone(), args.prefix.clone());
    let manager = match EtcdManager::connect_with(config, options).await {
        Ok(manager) => manager.start(),
        Err(e) => {
            eprintln!(
                "etcd_unit: cannot connect to etcd at {:?}: {e}",
                args.endpoints
            );
            std::process::exit(1);
        }
    };
    let tracker = Tracker::start_supervised(unit.clone(), Claimer::new(&manager), args.duration)
        .unwrap_or_else(|e| usage(&e.to_string()));
    println!(
        "{} {unit}: started (d = {:?}, lease 2·d, etcd {:?}, key {}/{})",
        clock(),
        args.duration,
        args.endpoints,
        args.prefix,
        unit.service()
    );

    let leader = || async {
        manager
            .send(Leader {
                service: unit.service().to_owned(),
            })
            .await
            .ok()
            .flatten()
    };
    let mut minion_since = tokio::time::Instant::now();
    loop {
        // Pending while a minion; `false` only when the tracker restarts after a failure.
        if !tracker.wait_leader().await {
            println!(
                "{} {unit}: tracker failed; it retries after a backoff",
                clock()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let term = leader()
            .await
            .map_or("?".to_owned(), |l| l.term.to_string());
        println!(
            "{} {unit}: LEADER (term {term}), after {:.2?} as a minion",
            clock(),
            minion_since.elapsed()
        );
        // Pending while leader; `false` as soon as leadership cannot be guaranteed.
        tracker.wait_minion().await;
        minion_since = tokio::time::Instant::now();
        let now = leader().await;
        let holder = now.map_or("nobody".to_owned(), |l| {
            format!("{} (term {})", l.holder, l.term)
        });
        println!(
            "{} {unit}: minion — lost leadership; etcd says the leader is {holder}",
            clock()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_etcdctl_flags_are_taken() {
        let args = parse(&[
            "--unit",
            "web/0",
            "--cacert",
            "ca.pem",
            "--cert",
            "app.pem",
            "--key",
            "app-key.pem",
            "--user",
            "app:pa:ss",
        ])
        .unwrap();
        assert_eq!(
            args.security,
            Security {
                cacert: Some("ca.pem".into()),
                cert: Some("app.pem".into()),
                key: Some("app-key.pem".into()),
                user: Some(("app".into(), "pa:ss".into())),
            }
        );
        assert_eq!(args.endpoints, ["https://127.0.0.1:2379"], "TLS by default");
        assert!(args.security.options().is_ok());
        let plain = parse(&["--unit", "web/0"]).unwrap();
        assert_eq!(plain.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(plain.security, Security::default());
    }

    #[test]
    fn user_without_a_colon_names_the_flag_not_the_value() {
        let err = parse(&["--unit", "web/0", "--user", "secret"]).unwrap_err();
        assert!(
            err.contains("--user") && err.contains("NAME:PASSWORD"),
            "{err}"
        );
        assert!(
            !err.contains("secret"),
            "the value may be a password: {err}"
        );
        let err = parse(&["--unit", "web/0", "--user", ":pw"]).unwrap_err();
        assert!(err.contains("name is empty"), "{err}");
    }

    #[test]
    fn flags_that_need_each_other_are_named() {
        let options = |args: &[&str]| parse(args).unwrap().security.options().unwrap_err();
        let err = options(&["--unit", "web/0", "--cacert", "ca", "--cert", "c"]);
        assert!(err.contains("--cert needs --key"), "{err}");
        let err = options(&["--unit", "web/0", "--cacert", "ca", "--key", "k"]);
        assert!(err.contains("--key needs --cert"), "{err}");
        let err = options(&["--unit", "web/0", "--cert", "c", "--key", "k"]);
        assert!(err.contains("need --cacert"), "{err}");
        let err = parse(&["--unit", "web/0", "--cacert"]).unwrap_err();
        assert!(err.contains("--cacert needs a value"), "{err}");
    }

    #[actix_rt::test]
    async fn an_unreadable_file_is_named_when_connecting() {
        let args = parse(&[
            "--unit",
            "web/0",
            "--cacert",
            "/nonexistent/ca.pem",
            "--user",
            "app:pw",
        ])
        .unwrap();
        let config = EtcdConfig::new(args.endpoints.clone(), args.prefix.clone());
        let err = EtcdManager::connect_with(config, args.security.options().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
