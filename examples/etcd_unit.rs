//! One unit of a service as its own process, electing its leader through etcd.
//!
//! ```text
//! cargo run --features etcd --example etcd_unit -- \
//!     --unit web/0 --endpoints http://127.0.0.1:2379 --duration 2s
//! ```
//!
//! Start three (`web/0`, `web/1`, `web/2`) in three terminals against one etcd: exactly
//! one prints `LEADER`, the others `minion` and, from a `WatchLeader` on etcd, who leads
//! under which term. Press Ctrl-C in the leader's terminal: it resigns gracefully —
//! releases its lease in etcd as soon as it has nothing promised — says how long that
//! took, and another unit leads within milliseconds, under a greater term. Kill a leader
//! with `kill -9` instead and it releases nothing: its lease runs out in etcd (2·d
//! rounded up to whole seconds after its last renewal, plus etcd's ~0.5 s expiry
//! granularity) before another unit leads. Each line carries a UTC wall-clock time to
//! compare terminals. `--help` lists the options.
//!
//! Options: `--unit SERVICE/N` (required), `--endpoints URL[,URL…]` (default
//! `http://127.0.0.1:2379`, or `https://127.0.0.1:2379` with `--cacert`), `--duration D`
//! (the guarantee d, e.g. `2s`, `1500ms`; at least `1s`, etcd's lease floor; default
//! `2s`), `--prefix P` (default `/leadership`). `RUST_LOG=leadership=debug` shows each
//! claim.
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
use clap::Parser;
use leadership::etcd::{EtcdConfig, EtcdManager, EtcdOptions};
use leadership::{Claimer, LeaseInfo, Status, Tracker, UnitName, WatchLeader};

/// One unit of a service, electing its leader through etcd.
#[derive(Debug, Parser)]
#[command(name = "etcd_unit")]
struct Cli {
    /// This unit's name, SERVICE/N (e.g. web/0).
    #[arg(long, value_name = "SERVICE/N", value_parser = parse_unit)]
    unit: UnitName,
    /// etcd client URLs, comma-separated [default: http://127.0.0.1:2379, or
    /// https://127.0.0.1:2379 with --cacert].
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The guarantee d (e.g. 2s, 1500ms); at least 1s, etcd's lease floor.
    #[arg(long, value_name = "D", default_value = "2s", value_parser = parse_duration)]
    duration: Duration,
    /// The key prefix shared by every unit of the application.
    #[arg(long, value_name = "P", default_value = "/leadership")]
    prefix: String,
    /// The CA that signed etcd's server certificate (turns TLS on).
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// A client certificate, for an etcd started with --client-cert-auth.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// An etcd user, NAME:PASSWORD.
    #[arg(long, value_name = "NAME:PASSWORD")]
    user: Option<String>,
}

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

fn parse_unit(s: &str) -> Result<UnitName, String> {
    UnitName::new(s).map_err(|e| e.to_string())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (e.g. 2s, 1500ms)");
    let (number, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(bad)?);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(bad()),
    };
    let d = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    // The lease is 2·d, and etcd grants none shorter than its floor: below it every
    // claim is `Invalid`, and the supervised tracker would only restart, never lead.
    let floor = EtcdManager::MIN_CLAIM_DURATION / 2;
    if d < floor {
        return Err(format!(
            "{s:?} is shorter than {floor:?}: the lease is 2·d, and etcd's floor is {:?}",
            EtcdManager::MIN_CLAIM_DURATION
        ));
    }
    Ok(d)
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

/// Parses a command line (without the program name), as `main` does; for the tests.
/// `--user` is parsed here rather than by clap, whose error would quote the value —
/// possibly a password.
#[cfg(test)]
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let cli = Cli::try_parse_from(std::iter::once("etcd_unit".to_owned()).chain(args))
        .map_err(|e| e.to_string())?;
    args_of(cli)
}

fn args_of(cli: Cli) -> Result<Args, String> {
    let security = Security {
        user: cli.user.as_deref().map(parse_user).transpose()?,
        cacert: cli.cacert,
        cert: cli.cert,
        key: cli.key,
    };
    let scheme = if security.cacert.is_some() {
        "https"
    } else {
        "http"
    };
    let endpoints = if cli.endpoints.is_empty() {
        vec![format!("{scheme}://127.0.0.1:2379")]
    } else {
        cli.endpoints
    };
    Ok(Args {
        unit: cli.unit,
        endpoints,
        duration: cli.duration,
        prefix: cli.prefix,
        security,
    })
}

/// Bad arguments: say why and exit with status 2.
fn usage(problem: &str) -> ! {
    eprintln!("etcd_unit: {problem}");
    eprintln!("(etcd_unit --help lists the options)");
    std::process::exit(2)
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
        // Colours only on a terminal: piped to a file, the log stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    // `parse` prints --help and clap's own usage errors itself (exit 0 and 2).
    let args = args_of(Cli::parse()).unwrap_or_else(|e| usage(&e));
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

    // Who leads, from etcd itself: one etcd watch, pushed on every change of holder.
    let watch = manager.send(WatchLeader {
        service: unit.service().to_owned(),
    });
    let mut leader = match watch.await {
        Ok(Ok(leader)) => leader,
        Ok(Err(e)) => usage(&e.to_string()),
        Err(e) => usage(&e.to_string()),
    };
    if let Some(lease) = leader.borrow_and_update().clone() {
        println!(
            "{} {unit}: {} leads (term {})",
            clock(),
            lease.holder,
            lease.term
        );
    }
    // Whether *this* unit leads, from the tracker: status() promises nothing, so a
    // resign is not held up by answers given only to print them.
    let mut status = tracker.status();
    let mut leading = false;
    let mut since = tokio::time::Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            changed = status.changed() => {
                if changed.is_err() {
                    println!("{} {unit}: tracker gone", clock());
                    return;
                }
                let now = *status.borrow_and_update();
                match now {
                    Status::Leader(guarantee) if !leading => {
                        leading = true;
                        println!(
                            "{} {unit}: LEADER (term {}) after {:.2?} waiting",
                            clock(),
                            guarantee.term,
                            since.elapsed()
                        );
                        since = tokio::time::Instant::now();
                    }
                    Status::Leader(_) => {}
                    _ if leading => {
                        leading = false;
                        since = tokio::time::Instant::now();
                        println!("{} {unit}: minion — lost leadership ({now:?})", clock());
                    }
                    _ => {}
                }
            }
            changed = leader.changed() => {
                if changed.is_err() {
                    println!("{} {unit}: the etcd manager stopped", clock());
                    return;
                }
                let lease: Option<LeaseInfo> = leader.borrow_and_update().clone();
                match lease {
                    Some(lease) if lease.holder == unit.as_str() => {}
                    Some(lease) => println!(
                        "{} {unit}: minion — {} leads (term {})",
                        clock(),
                        lease.holder,
                        lease.term
                    ),
                    None => println!("{} {unit}: minion — nobody leads; claiming", clock()),
                }
            }
        }
    }
    // Ctrl-C: resign gracefully. The tracker keeps every promise it made (none here:
    // this program asks status(), not tickets), then releases the lease in etcd.
    println!("{} {unit}: Ctrl-C — resigning", clock());
    let asked = tokio::time::Instant::now();
    match tracker.resign().await {
        Ok(()) if leading => println!(
            "{} {unit}: resigned after {:.2?}: released the lease, so a waiting unit leads now",
            clock(),
            asked.elapsed()
        ),
        Ok(()) => println!(
            "{} {unit}: resigned after {:.2?} (was not leading)",
            clock(),
            asked.elapsed()
        ),
        Err(e) => {
            println!(
                "{} {unit}: resign failed after {:.2?}: {e} (the lease expires on its own)",
                clock(),
                asked.elapsed()
            );
            std::process::exit(1);
        }
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
    fn a_duration_below_etcds_lease_floor_is_refused() {
        let d = |value: &str| parse(&["--unit", "web/0", "--duration", value]);
        assert_eq!(d("1s").unwrap().duration, Duration::from_secs(1));
        assert_eq!(d("1500ms").unwrap().duration, Duration::from_millis(1_500));
        for short in ["999ms", "0s", "0.5s"] {
            let err = d(short).unwrap_err();
            assert!(err.contains("--duration") && err.contains("floor"), "{err}");
        }
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
        assert!(err.contains("--cacert"), "{err}");
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
