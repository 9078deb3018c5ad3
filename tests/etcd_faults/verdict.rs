//! The checker: what a seed's records must and must not show.

use std::fmt::Write as _;

use crate::liveness::liveness_failure;
use crate::overlap::{overlapping, Violation};
use crate::records::{ClaimLeader, Interval, MinionCheck, Outcome, Sample, Stale};
use crate::secs::Secs;
use crate::SERVICE;

/// The checker's findings for one seed.
#[derive(Default)]
pub struct Verdict {
    pub overlaps: Vec<Violation<ClaimLeader>>,
    /// `(interval, sample)`: a sample inside the interval saw another holder, no
    /// key, or a different term than an earlier sample inside it.
    pub wrong_holder: Vec<(Interval, Sample)>,
    pub minion_true: Vec<MinionCheck>,
    pub stale: Vec<Stale>,
    pub liveness_failure: Option<String>,
    /// Samples that fell inside some interval (how much the second check saw).
    pub samples_checked: usize,
}

impl Verdict {
    pub fn is_safe(&self) -> bool {
        self.overlaps.is_empty()
            && self.wrong_holder.is_empty()
            && self.minion_true.is_empty()
            && self.stale.is_empty()
    }
}

pub fn check(run: &Outcome) -> Verdict {
    let mut v = Verdict {
        overlaps: overlapping(&run.intervals),
        ..Verdict::default()
    };
    let mut checked = vec![false; run.samples.len()];
    for i in &run.intervals {
        let unit = format!("{SERVICE}/{}", i.slot);
        let mut term = None;
        for (n, s) in run.samples.iter().enumerate() {
            if s.q0 < i.start || s.q1 > i.end {
                continue;
            }
            checked[n] = true;
            let ok = match &s.seen {
                Some((holder, t)) if *holder == unit => *term.get_or_insert(*t) == *t,
                _ => false,
            };
            if !ok {
                v.wrong_holder.push((i.clone(), s.clone()));
            }
        }
    }
    v.samples_checked = checked.iter().filter(|c| **c).count();
    v.minion_true = run.minion.iter().filter(|m| m.answer).cloned().collect();
    v.stale = run.stale.clone();
    v.liveness_failure = liveness_failure(run.stable_at, run.leader_at, run.deadline);
    v
}

pub fn report(run: &Outcome, v: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "etcd fault seed {} FAILED (d = {:?})", run.seed, run.d);
    let _ = writeln!(
        out,
        "re-run (seeded, not a replay): LEADERSHIP_ETCD_FAULT_SEED={} .ci/with-etcd \
         cargo test --all-features --test etcd_faults -- --nocapture",
        run.seed
    );
    let show = |i: &Interval| {
        format!(
            "u{}#{} {:?} sent {} true over [{}, {}]",
            i.slot,
            i.life,
            i.ask,
            Secs(i.asked),
            Secs(i.start),
            Secs(i.end)
        )
    };
    // At most this many findings of each kind; the trace tells the rest.
    pub const SHOWN: usize = 20;
    let more = |out: &mut String, kind: &str, n: usize| {
        if n > SHOWN {
            let _ = writeln!(out, "... and {} more {kind} findings", n - SHOWN);
        }
    };
    for o in v.overlaps.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "SAFETY: {} overlaps {}",
            show(&o.first),
            show(&o.second)
        );
    }
    more(&mut out, "SAFETY", v.overlaps.len());
    for (i, s) in v.wrong_holder.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "ETCD: {} but Leader asked over [{}, {}] saw {:?}",
            show(i),
            Secs(s.q0),
            Secs(s.q1),
            s.seen
        );
    }
    more(&mut out, "ETCD", v.wrong_holder.len());
    for m in &v.minion_true {
        let _ = writeln!(
            out,
            "MINION: u{}#{} WaitMinion asked at {} resolved true at {}",
            m.slot,
            m.life,
            Secs(m.asked),
            Secs(m.resolved)
        );
    }
    for st in &v.stale {
        let _ = writeln!(
            out,
            "STALE: u{}#{} WaitMinion asked at {} still pending at {}, but etcd showed {} \
             as the holder over [{}, {}]",
            st.slot,
            st.life,
            Secs(st.asked),
            Secs(st.checked),
            st.holder,
            Secs(st.q0),
            Secs(st.q1)
        );
    }
    if let Some(why) = &v.liveness_failure {
        let _ = writeln!(out, "LIVENESS: {why}");
    }
    let _ = writeln!(out, "trace ({} events):", run.log.len());
    for (at, what) in &run.log {
        let _ = writeln!(out, "  [{:>12}] {what}", Secs(*at).to_string());
    }
    out
}
