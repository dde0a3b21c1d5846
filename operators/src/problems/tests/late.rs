//! One incident, one trace: every record of a member incident is released with its problem,
//! also the `resolved` record of an incident first seen in the same step (a backlog closing
//! many windows at once) and records that come after the problem resolved.

use super::*;

/// The problem of each released record, by (incident state, window).
fn problems_of(s: &Step) -> Vec<(IncidentState, u64, Option<[u8; 16]>)> {
    s.anomalies
        .iter()
        .map(|r| {
            let w = (r.anomaly.window_start - T0) / W;
            (r.anomaly.incident_state, w, r.problem)
        })
        .collect()
}

#[test]
fn an_incident_resolved_in_the_step_that_first_saw_it_stays_in_its_problem() {
    let mut c = Correlator::new(ProblemParams::new(W));
    let pay = key("payment", "Charge", SpanKind::Server);
    let first = open(&pay, "latency_p99_ms", 70, 900.0, 90.0);
    let ongoing = |w| {
        rec(
            &pay,
            "latency_p99_ms",
            70,
            w,
            900.0,
            90.0,
            IncidentState::Ongoing,
        )
    };
    // A replayed backlog: windows 70..=80 close in one step, the whole incident with them.
    let recs = vec![
        first.clone(),
        ongoing(71),
        ongoing(72),
        resolved(&first, 75),
    ];
    let s = run(&mut c, 80, recs);
    assert_eq!(s.problems.len(), 1);
    let pid = Some(s.problems[0].id);
    let mut got = problems_of(&s);
    got.sort_by_key(|g| g.1);
    assert_eq!(
        got,
        [
            (IncidentState::Open, 70, pid),
            (IncidentState::Ongoing, 71, pid),
            (IncidentState::Ongoing, 72, pid),
            (IncidentState::Resolved, 75, pid),
        ],
        "every record in the problem's trace"
    );
    let s = run(&mut c, 81, vec![]);
    assert_eq!(s.problems.len(), 1);
    assert_eq!(s.problems[0].state, ProblemState::Resolved);
    assert_eq!(c.member_count(), 0);
}

/// Params under which a member that stops reporting for 5 windows resolves its problem.
fn quick_timeout(max_members: usize) -> ProblemParams {
    ProblemParams {
        member_timeout_windows: 5,
        linger_windows: 2,
        max_members,
        ..grouping()
    }
}

#[test]
fn a_late_record_of_a_timed_out_member_joins_its_resolved_problem() {
    let mut c = Correlator::new(quick_timeout(10));
    let pay = key("payment", "Charge", SpanKind::Server);
    let first = open(&pay, "latency_p99_ms", 0, 500.0, 40.0);
    run(&mut c, 0, vec![first.clone()]);
    let mut pid = None;
    for w in 1..10 {
        for p in run(&mut c, w, vec![]).problems {
            pid = Some(p.id);
            if w > 1 {
                assert_eq!(p.state, ProblemState::Resolved, "timed out");
            }
        }
    }
    assert!(pid.is_some());
    assert_eq!(c.member_count(), 0);
    // The series reports again: the incident's last anomalous window, then its resolution.
    let late = rec(
        &pay,
        "latency_p99_ms",
        0,
        12,
        480.0,
        40.0,
        IncidentState::Ongoing,
    );
    let s = run(&mut c, 12, vec![late]);
    assert!(s.problems.is_empty(), "no new problem for a known incident");
    assert_eq!(problems_of(&s), [(IncidentState::Ongoing, 12, pid)]);
    let s = run(&mut c, 15, vec![resolved(&first, 15)]);
    assert_eq!(problems_of(&s), [(IncidentState::Resolved, 15, pid)]);
    // Its final record came: the incident is forgotten.
    let s = run(&mut c, 16, vec![resolved(&first, 16)]);
    assert_eq!(problems_of(&s), [(IncidentState::Resolved, 16, None)]);
    assert_eq!(c.resolved_evicted(), 0);
}

/// A one-window problem of service `service` opening in window `w`, whose member then times out
/// and resolves it (within 20 windows); returns its record.
fn timed_out(c: &mut Correlator, service: &str, w: u64) -> Anomaly {
    let a = open(
        &key(service, "op", SpanKind::Server),
        "latency_p99_ms",
        w,
        9.0,
        1.0,
    );
    run(c, w, vec![a.clone()]);
    for w in w + 1..w + 20 {
        run(c, w, vec![]);
    }
    a
}

#[test]
fn timed_out_members_past_the_bound_are_evicted_and_counted() {
    let mut c = Correlator::new(quick_timeout(1));
    let a = timed_out(&mut c, "a", 0);
    let b = timed_out(&mut c, "b", 20);
    assert_eq!(c.resolved_evicted(), 1, "a's entry made room for b's");
    let s = run(&mut c, 40, vec![resolved(&a, 40), resolved(&b, 40)]);
    let problem = |x: &Anomaly| {
        let r = s
            .anomalies
            .iter()
            .find(|r| r.anomaly.incident_id == x.incident_id);
        r.map(|r| r.problem.is_some())
    };
    assert_eq!(problem(&a), Some(false), "evicted: its own trace");
    assert_eq!(problem(&b), Some(true));
}

#[test]
fn late_records_of_an_expired_series_are_not_expected() {
    let mut c = Correlator::new(quick_timeout(1));
    let a = timed_out(&mut c, "a", 0);
    c.forget_series(std::slice::from_ref(&a.series));
    timed_out(&mut c, "b", 20);
    assert_eq!(c.resolved_evicted(), 0, "a's entry left with its series");
}
