//! `examples/dashboard.rs` end to end: its metrics endpoint scraped over real HTTP while
//! it runs a short scenario (a failover, then a hand-over) on the real clock. A real
//! wait is unavoidable here, so the test polls for what it needs with a deadline rather
//! than sleeping a fixed time.

#[allow(dead_code)] // its `main` is the example's, unused here
#[path = "../examples/dashboard.rs"]
mod dashboard;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// One HTTP/1.1 GET over a fresh connection: (status line, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("the dashboard listens");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The value of the series `line_start` (name and labels, as rendered), if present.
fn value(body: &str, line_start: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
}

fn series(name: &str, unit: &str, extra: &str) -> String {
    format!("{name}{{service=\"web\",unit=\"{unit}\"{extra}}} ")
}

#[test]
fn the_dashboard_serves_every_series_over_http_while_it_runs() {
    actix_rt::System::new().block_on(async {
        let (bound, listening) = tokio::sync::oneshot::channel();
        let args = dashboard::Args {
            addr: "127.0.0.1:0".parse().unwrap(),
            seconds: 4.0,
        };
        let run = actix_rt::spawn(dashboard::run(
            args,
            move |addr| {
                let _ = bound.send(addr);
            },
            std::future::pending(),
        ));
        let addr = listening.await.expect("the dashboard binds its address");

        // The failover (web/0 killed at 1 s) is done within about another second: poll
        // until a scrape shows it, for at most the run's length.
        let deadline = Instant::now() + Duration::from_secs(4);
        let body = loop {
            let (status, body) = get(addr, "/metrics").await;
            assert_eq!(status, "HTTP/1.1 200 OK");
            let lost = value(
                &body,
                &series("leadership_transitions_total", "web/0", ",to=\"minion\""),
            );
            let leaders: Vec<f64> = ["web/1", "web/2"]
                .iter()
                .filter_map(|unit| value(&body, &series("leadership_is_leader", unit, "")))
                .collect();
            if lost == Some(1.0) && leaders.iter().sum::<f64>() == 1.0 {
                break body;
            }
            assert!(Instant::now() < deadline, "no failover seen:\n{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Every metric of the crate is there, with its help text.
        for name in [
            "leadership_is_leader",
            "leadership_term",
            "leadership_transitions_total",
            "leadership_claim_seconds",
            "leadership_leases",
            "leadership_blocked",
        ] {
            assert!(
                body.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{body}"
            );
        }
        assert_eq!(
            value(&body, &series("leadership_is_leader", "web/0", "")),
            Some(0.0)
        );
        assert_eq!(
            value(&body, &series("leadership_term", "web/0", "")),
            Some(0.0)
        );
        assert_eq!(
            value(
                &body,
                &series("leadership_transitions_total", "web/0", ",to=\"leader\"")
            ),
            Some(1.0)
        );
        assert_eq!(value(&body, "leadership_leases "), Some(1.0));
        let granted = series(
            "leadership_claim_seconds_count",
            "web/0",
            ",outcome=\"granted\"",
        );
        assert!(value(&body, &granted).is_some_and(|n| n >= 1.0), "{body}");
        // The hand-over, at 60 % of the run: the failover's winner passes leadership to
        // the other live unit, and stops.
        let handed = loop {
            let (_, body) = get(addr, "/metrics").await;
            let gave = ["web/1", "web/2"].iter().find(|unit| {
                value(
                    &body,
                    &series("leadership_transitions_total", unit, ",to=\"minion\""),
                ) == Some(1.0)
            });
            let took = ["web/1", "web/2"]
                .iter()
                .find(|unit| value(&body, &series("leadership_is_leader", unit, "")) == Some(1.0));
            if let (Some(gave), Some(took)) = (gave, took) {
                if gave != took {
                    break (gave.to_string(), took.to_string());
                }
            }
            assert!(Instant::now() < deadline, "no hand-over seen:\n{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Only /metrics is served.
        let (status, _) = get(addr, "/").await;
        assert_eq!(status, "HTTP/1.1 404 Not Found");

        let report = run.await.unwrap().expect("the dashboard ran");
        assert_eq!(report.changes[0], "web/0 leads, term 1");
        assert!(
            report
                .changes
                .iter()
                .any(|line| line.ends_with("after web/0's lease ended")
                    && line.contains("leads, term 2")),
            "{:#?}",
            report.changes
        );
        let (gave, took) = handed;
        let handed_over = format!("{took} leads, term 3, handed over by {gave}");
        assert!(
            report
                .changes
                .iter()
                .any(|line| line.starts_with(&handed_over)),
            "{handed_over:?} in {:#?}",
            report.changes
        );
    });
}

#[test]
fn the_dashboard_refuses_a_run_length_it_could_not_time() {
    use clap::Parser;
    let parse = |seconds: &str| {
        dashboard::Args::try_parse_from(["dashboard".to_owned(), format!("--seconds={seconds}")])
    };
    assert_eq!(parse("2.5").expect("a valid length").seconds, 2.5);
    for bad in ["inf", "NaN", "-1", "1e19", "soon"] {
        let error = parse(bad).expect_err(bad).to_string();
        assert!(error.contains("--seconds"), "{bad}: {error}");
    }
}
