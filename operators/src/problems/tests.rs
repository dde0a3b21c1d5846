//! The correlator on hand-made anomaly records and edges: grouping, hold, merge, ranking,
//! resolution and bounds. (The quality bench drives it through the real detectors.)

use super::*;
use crate::anomaly::{incident_id, IncidentState, Severity};
use crate::servicegraph::ConnectionType;

const W: u64 = 10_000_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

fn key(service: &str, span: &str, kind: SpanKind) -> Arc<SeriesKey> {
    Arc::new(SeriesKey {
        service_name: Arc::from(service),
        span_name: Arc::from(span),
        kind,
        dims: Box::new([]),
        overflow: false,
    })
}

/// An anomaly record of `series`/`signal` in window `w` of an incident that started in window
/// `onset`: value `value` where `expected` was expected.
fn rec(
    series: &Arc<SeriesKey>,
    signal: &str,
    onset: u64,
    w: u64,
    value: f64,
    expected: f64,
    state: IncidentState,
) -> Anomaly {
    let start = T0 + onset * W;
    Anomaly {
        signal: Arc::from(signal),
        series: series.clone(),
        value,
        expected_min: expected * 0.9,
        expected_max: expected * 1.1,
        severity: Severity::High,
        score: (state != IncidentState::Resolved).then_some(1.0 - 1e-12),
        p_value: (state != IncidentState::Resolved).then_some(1e-12),
        z: None,
        votes: 2,
        detector: "robust_z+ewma",
        window_start: T0 + w * W,
        window_end: T0 + (w + 1) * W,
        incident_id: incident_id(series, signal, start),
        incident_state: state,
        incident_start: start,
        incident_duration_ns: (w + 1 - onset) * W,
        incident_windows: (w + 1 - onset) as u32,
    }
}

fn open(s: &Arc<SeriesKey>, sig: &str, w: u64, value: f64, expected: f64) -> Anomaly {
    rec(s, sig, w, w, value, expected, IncidentState::Open)
}

fn resolved(a: &Anomaly, w: u64) -> Anomaly {
    let onset = (a.incident_start - T0) / W;
    rec(
        &a.series,
        &a.signal,
        onset,
        w,
        a.value,
        a.value,
        IncidentState::Resolved,
    )
}

/// end of window `w`
/// The defaults, but a problem is confirmed by one signal at `confirm_p` in one window: the
/// cases using it are about grouping, ranking and bounds, with one record per incident; the
/// confirmation gate has its own cases (`a_one_window_blip_is_pending_until_it_persists`).
fn grouping() -> ProblemParams {
    ProblemParams {
        confirm_signals: 1,
        ..ProblemParams::new(W)
    }
}

fn end(w: u64) -> u64 {
    T0 + (w + 1) * W
}

fn shop(c: &mut Correlator, w: u64) {
    let s = |x: &str| -> Arc<str> { Arc::from(x) };
    let edges = [
        ("user", "frontend", ConnectionType::VirtualNode),
        ("frontend", "checkout", ConnectionType::Direct),
        ("frontend", "catalog", ConnectionType::Direct),
        ("checkout", "payment", ConnectionType::Direct),
        ("checkout", "orders-db", ConnectionType::Database),
        ("catalog", "catalog-db", ConnectionType::Database),
        ("search", "catalog-db", ConnectionType::Database),
    ];
    for (a, b, ct) in edges {
        c.observe_edge(&s(a), &s(b), ct, end(w), 100.0, 0.0);
    }
}

fn run(c: &mut Correlator, w: u64, recs: Vec<Anomaly>) -> Step {
    shop(c, w);
    for r in recs {
        c.observe_anomaly(r);
    }
    c.advance(end(w))
}

/// A correlator with `params` in which payment's server span opened a p99 incident in window 0
/// (500 ms where 40 were expected); returns it with that series.
fn payment_spike(params: ProblemParams) -> (Correlator, Arc<SeriesKey>) {
    let mut c = Correlator::new(params);
    let pay = key("payment", "Charge", SpanKind::Server);
    run(
        &mut c,
        0,
        vec![open(&pay, "latency_p99_ms", 0, 500.0, 40.0)],
    );
    (c, pay)
}

#[test]
fn a_payment_spike_is_one_problem_caused_by_payment() {
    let mut c = Correlator::new(ProblemParams::new(W));
    let pay = key("payment", "Charge", SpanKind::Server);
    let co_cli = key("checkout", "payment.Charge", SpanKind::Client);
    let co = key("checkout", "PlaceOrder", SpanKind::Server);
    let fe = key("frontend", "POST /api/checkout", SpanKind::Server);
    for w in 0..20 {
        assert!(run(&mut c, w, vec![]).problems.is_empty());
    }
    // Window 20: the callee and its direct caller; the frontend a window later.
    let first = vec![
        open(&co, "latency_p99_ms", 20, 610.0, 130.0),
        open(&pay, "latency_p99_ms", 20, 520.0, 40.0),
        open(&co_cli, "latency_p99_ms", 20, 530.0, 45.0),
    ];
    let s = run(&mut c, 20, first.clone());
    assert!(s.problems.is_empty(), "held for one window");
    assert!(s.anomalies.is_empty(), "records wait for their problem");
    let fe_a = open(&fe, "latency_p99_ms", 21, 700.0, 200.0);
    // Payment's p99 stays up in window 21: the problem persisted (Prometheus' `for:`).
    let pay_21 = rec(
        &pay,
        "latency_p99_ms",
        20,
        21,
        515.0,
        40.0,
        IncidentState::Ongoing,
    );
    let s = run(&mut c, 21, vec![fe_a.clone(), pay_21]);
    assert_eq!(s.problems.len(), 1);
    let p = &s.problems[0];
    assert_eq!(p.state, ProblemState::Open);
    assert_eq!(p.members.len(), 4);
    assert_eq!(p.onset, T0 + 20 * W);
    assert_eq!(p.opened_at, end(21));
    let cause = p.cause().unwrap();
    assert_eq!((&*cause.service, &*cause.span_name), ("payment", "Charge"));
    assert_eq!(cause.kind, SpanKind::Server);
    assert_eq!(&*cause.signal, "latency_p99_ms");
    assert!(cause.evidence.contains("deepest"), "{}", cause.evidence);
    assert!(
        cause.evidence.contains("explains 99%"),
        "{}",
        cause.evidence
    );
    assert!(
        p.summary
            .starts_with("payment Charge (server) latency_p99_ms 520 ms"),
        "{}",
        p.summary
    );
    assert!(
        p.summary
            .contains("3 service(s) (checkout, payment, frontend)"),
        "{}",
        p.summary
    );
    assert_eq!(s.anomalies.len(), 5);
    assert!(s.anomalies.iter().all(|r| r.problem == Some(p.id)));
    assert_ne!(p.id, first[1].incident_id);
    assert_eq!(c.open_problems(), 1);

    // Ongoing records are released at once; nothing new to publish.
    let s = run(
        &mut c,
        22,
        vec![rec(
            &pay,
            "latency_p99_ms",
            20,
            22,
            500.0,
            40.0,
            IncidentState::Ongoing,
        )],
    );
    assert!(s.problems.is_empty());
    assert_eq!(s.anomalies.len(), 1);
    assert_eq!(s.anomalies[0].problem, Some(p.id));

    // All resolve at window 25; the problem resolves linger (6) windows after the last
    // anomalous window (22 for payment: ends at end(22)).
    let mut recs: Vec<Anomaly> = first.iter().map(|a| resolved(a, 25)).collect();
    recs.push(resolved(&fe_a, 25));
    let s = run(&mut c, 25, recs);
    assert_eq!(s.anomalies.len(), 4);
    assert!(s.problems.iter().all(|p| p.state != ProblemState::Resolved));
    let mut resolved_at = None;
    for w in 26..40 {
        let s = run(&mut c, w, vec![]);
        for p in s.problems {
            assert_eq!(p.state, ProblemState::Resolved);
            assert!(resolved_at.is_none());
            resolved_at = Some(w);
        }
    }
    assert_eq!(resolved_at, Some(28));
    assert_eq!(c.open_problems(), 0);
    assert_eq!(c.member_count(), 0);
}

#[test]
fn unconnected_anomalies_are_separate_problems() {
    let mut c = Correlator::new(grouping());
    let pay = key("payment", "Charge", SpanKind::Server);
    let search = key("search", "Query", SpanKind::Server);
    run(&mut c, 0, vec![]);
    run(
        &mut c,
        1,
        vec![
            open(&pay, "error_ratio", 1, 0.3, 0.001),
            open(&search, "latency_p50_ms", 1, 90.0, 20.0),
        ],
    );
    let s = run(&mut c, 2, vec![]);
    assert_eq!(s.problems.len(), 2);
    assert_ne!(s.problems[0].id, s.problems[1].id);
    for p in &s.problems {
        assert_eq!(p.members.len(), 1);
    }
}

#[test]
fn a_bridge_merges_held_problems() {
    let (mut c, _) = payment_spike(grouping());
    let fe = key("frontend", "GET /", SpanKind::Server);
    let co = key("checkout", "PlaceOrder", SpanKind::Server);
    // frontend is not adjacent to payment; checkout, in the same step, connects both.
    let s = run(
        &mut c,
        1,
        vec![
            open(&fe, "latency_p99_ms", 1, 700.0, 200.0),
            open(&co, "latency_p99_ms", 1, 600.0, 130.0),
        ],
    );
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert_eq!(s.problems[0].members.len(), 3);
    assert_eq!(&*s.problems[0].cause().unwrap().service, "payment");
    let s2 = run(&mut c, 2, vec![]);
    assert!(s2.problems.is_empty());
    assert_eq!(c.open_problems(), 1);
}

#[test]
fn published_problems_keep_their_ids_and_new_members_join_the_oldest() {
    let (mut c, _) = payment_spike(grouping());
    let fe = key("frontend", "GET /", SpanKind::Server);
    let co = key("checkout", "PlaceOrder", SpanKind::Server);
    let s = run(&mut c, 1, vec![]);
    let p1 = s.problems[0].id;
    run(
        &mut c,
        2,
        vec![open(&fe, "latency_p99_ms", 2, 700.0, 200.0)],
    );
    let s = run(&mut c, 3, vec![]);
    assert_eq!(s.problems.len(), 1);
    let p2 = s.problems[0].id;
    assert_ne!(p1, p2);
    let s = run(
        &mut c,
        4,
        vec![open(&co, "latency_p99_ms", 4, 600.0, 130.0)],
    );
    assert_eq!(s.problems.len(), 1);
    assert_eq!(s.problems[0].id, p1);
    assert_eq!(s.problems[0].state, ProblemState::Ongoing);
    assert_eq!(s.problems[0].members.len(), 2);
    assert_eq!(s.anomalies[0].problem, Some(p1));
    assert_eq!(c.open_problems(), 2);
}

#[test]
fn a_slow_database_blames_the_client_span_that_calls_it() {
    let mut c = Correlator::new(grouping());
    let db = key("checkout", "SELECT orders", SpanKind::Client);
    let co = key("checkout", "PlaceOrder", SpanKind::Server);
    let fe = key("frontend", "POST /api/checkout", SpanKind::Server);
    run(
        &mut c,
        0,
        vec![
            open(&co, "latency_p50_ms", 0, 300.0, 60.0),
            open(&db, "latency_p50_ms", 0, 250.0, 12.0),
        ],
    );
    let s = run(&mut c, 1, vec![open(&fe, "latency_p50_ms", 1, 320.0, 80.0)]);
    let p = &s.problems[0];
    let names: Vec<(&str, &str)> = p
        .causes
        .iter()
        .map(|c| (&*c.service, &*c.span_name))
        .collect();
    assert_eq!(
        names,
        [
            ("checkout", "SELECT orders"),
            ("checkout", "PlaceOrder"),
            ("frontend", "POST /api/checkout")
        ]
    );
    assert!(p.causes[1]
        .evidence
        .contains("its own outbound calls are anomalous"));
    assert!(p.causes[2].evidence.contains("calls anomalous checkout"));
    assert!(p.causes[2]
        .evidence
        .contains("alarmed 1 window(s) after the first"));
}

#[test]
fn a_shared_database_connects_its_clients() {
    let mut c = Correlator::new(grouping());
    let a = key("catalog", "SELECT items", SpanKind::Client);
    let b = key("search", "SELECT items", SpanKind::Client);
    run(
        &mut c,
        0,
        vec![
            open(&a, "latency_p99_ms", 0, 300.0, 20.0),
            open(&b, "latency_p99_ms", 0, 280.0, 25.0),
        ],
    );
    let s = run(&mut c, 1, vec![]);
    assert_eq!(s.problems.len(), 1);
    assert_eq!(s.problems[0].members.len(), 2);
    assert_eq!(
        c.graph().connection("catalog", "search").as_deref(),
        Some("catalog and search both call catalog-db")
    );
}

#[test]
fn an_error_burst_on_the_edge_is_evidence() {
    let mut c = Correlator::new(grouping());
    let pay = key("payment", "Charge", SpanKind::Server);
    let co = key("checkout", "PlaceOrder", SpanKind::Server);
    let s = |x: &str| -> Arc<str> { Arc::from(x) };
    for w in 0..30 {
        let failed = if w >= 25 { 40.0 } else { 0.1 };
        c.observe_edge(
            &s("checkout"),
            &s("payment"),
            ConnectionType::Direct,
            end(w),
            100.0,
            failed,
        );
        let recs = if w == 25 {
            vec![
                open(&pay, "error_ratio", 25, 0.4, 0.001),
                open(&co, "error_ratio", 25, 0.4, 0.002),
            ]
        } else {
            vec![]
        };
        for r in recs {
            c.observe_anomaly(r);
        }
        let st = c.advance(end(w));
        if w == 26 {
            let p = &st.problems[0];
            let cause = p.cause().unwrap();
            assert_eq!(&*cause.service, "payment");
            assert!(
                cause.evidence.contains(
                    "error burst on checkout -> payment: 40.0% of calls failed (usual 0.1%)"
                ),
                "{}",
                cause.evidence
            );
        }
    }
}

#[test]
fn members_past_the_bound_are_released_without_a_problem() {
    let mut params = grouping();
    params.max_members = 2;
    let mut c = Correlator::new(params);
    let recs = ["a", "b", "c"].map(|s| {
        open(
            &key(s, "op", SpanKind::Server),
            "latency_p99_ms",
            0,
            9.0,
            1.0,
        )
    });
    let s = run(&mut c, 0, recs.to_vec());
    assert_eq!(c.dropped, 1);
    assert_eq!(s.anomalies.len(), 1);
    assert_eq!(s.anomalies[0].problem, None);
    assert_eq!(c.member_count(), 2);
}

#[test]
fn a_member_that_stops_reporting_times_out() {
    let mut params = grouping();
    params.member_timeout_windows = 5;
    params.linger_windows = 2;
    let (mut c, _) = payment_spike(params);
    let mut states = Vec::new();
    for w in 1..12 {
        for p in run(&mut c, w, vec![]).problems {
            states.push((w, p.state));
        }
    }
    // Last seen at end(0); timed out at end(5) (w = 4... end(w) >= end(0) + 5W → w = 5);
    // resolved once end(w) >= end(0) + 2W as well.
    assert_eq!(
        states,
        [(1, ProblemState::Open), (5, ProblemState::Resolved)]
    );
}

#[test]
fn ids_are_stable_across_replays() {
    let go = || {
        let (mut c, _) = payment_spike(grouping());
        run(&mut c, 1, vec![]).problems[0].id
    };
    assert_eq!(go(), go());
}

#[test]
fn idle_edges_leave_the_graph() {
    let mut c = Correlator::new(grouping());
    shop(&mut c, 0);
    assert_eq!(c.graph().len(), 7);
    c.advance(end(50));
    assert_eq!(c.graph().len(), 7);
    c.advance(end(90));
    assert_eq!(c.graph().len(), 0);
}

#[test]
fn a_one_window_blip_is_pending_until_it_persists() {
    let mut c = Correlator::new(ProblemParams::new(W));
    let cart = key("cart", "Get", SpanKind::Server);
    let mut blip = open(&cart, "latency_p99_ms", 0, 240.0, 100.0);
    blip.p_value = Some(6e-7);
    blip.score = Some(1.0 - 6e-7);
    assert!(run(&mut c, 0, vec![blip.clone()]).problems.is_empty());
    for w in 1..3 {
        let s = run(&mut c, w, vec![]);
        assert!(
            s.problems.is_empty() && s.anomalies.is_empty(),
            "held, unconfirmed"
        );
    }
    let s = run(&mut c, 3, vec![resolved(&blip, 3)]);
    assert!(s.problems.is_empty());
    assert_eq!(s.anomalies.len(), 2);
    assert!(s.anomalies.iter().all(|r| r.problem.is_none()));
    assert_eq!(c.unconfirmed, 1);
    assert_eq!(c.member_count(), 0);

    // The same strength sustained for a second window is published then.
    let mut first = open(&cart, "latency_p99_ms", 10, 240.0, 100.0);
    first.p_value = Some(6e-7);
    assert!(run(&mut c, 10, vec![first]).problems.is_empty());
    let mut second = rec(
        &cart,
        "latency_p99_ms",
        10,
        11,
        250.0,
        100.0,
        IncidentState::Ongoing,
    );
    second.p_value = Some(1e-6);
    let s = run(&mut c, 11, vec![second]);
    assert_eq!(s.problems.len(), 1);
    assert_eq!(s.anomalies.len(), 2);

    // An extreme one-window p99 blip (one very slow request) and its echo in the caller's
    // p99s: pending, then released without a problem and counted.
    let pay = key("payment", "Charge", SpanKind::Server);
    let co_cli = key("checkout", "payment.Charge", SpanKind::Client);
    let co = key("checkout", "PlaceOrder", SpanKind::Server);
    let blips = vec![
        open(&pay, "latency_p99_ms", 20, 2500.0, 40.0),
        open(&co_cli, "latency_p99_ms", 20, 2510.0, 45.0),
        open(&co, "latency_p99_ms", 20, 2600.0, 130.0),
    ];
    assert!(blips.iter().all(|a| a.p_value == Some(1e-12)));
    assert!(run(&mut c, 20, blips.clone()).problems.is_empty());
    for w in 21..23 {
        let s = run(&mut c, w, vec![]);
        assert!(s.problems.is_empty() && s.anomalies.is_empty(), "pending");
    }
    let s = run(&mut c, 23, blips.iter().map(|a| resolved(a, 23)).collect());
    assert!(s.problems.is_empty());
    assert_eq!(s.anomalies.len(), 6);
    assert!(s.anomalies.iter().all(|r| r.problem.is_none()));
    assert_eq!(c.unconfirmed, 2);

    // Two statistics of one series beyond `confirm_p` in one window (the median moved too): a
    // shift, published when the hold ends without waiting for a second window.
    let s = run(
        &mut c,
        30,
        vec![
            open(&pay, "latency_p99_ms", 30, 600.0, 40.0),
            open(&pay, "latency_p50_ms", 30, 300.0, 20.0),
        ],
    );
    assert!(s.problems.is_empty(), "held for one window");
    let s = run(&mut c, 31, vec![]);
    assert_eq!(s.problems.len(), 1);
    assert_eq!(s.problems[0].opened_at, end(31));
    assert_eq!(s.anomalies.len(), 2);

    // Two weak windows with calm ones between them are not persistence; the next window right
    // after an anomalous one is.
    let search = key("search", "Query", SpanKind::Server);
    let weak = |w: u64, state| {
        let mut a = rec(&search, "latency_p99_ms", 40, w, 90.0, 20.0, state);
        a.p_value = Some(5e-6);
        a.score = Some(1.0 - 5e-6);
        a
    };
    assert!(run(&mut c, 40, vec![weak(40, IncidentState::Open)])
        .problems
        .is_empty());
    assert!(run(&mut c, 41, vec![]).problems.is_empty());
    let s = run(&mut c, 42, vec![weak(42, IncidentState::Ongoing)]);
    assert!(s.problems.is_empty() && s.anomalies.is_empty(), "pending");
    let s = run(&mut c, 43, vec![weak(43, IncidentState::Ongoing)]);
    assert_eq!(s.problems.len(), 1);
    assert_eq!(s.problems[0].opened_at, end(43));
    assert_eq!(s.anomalies.len(), 3);
}

#[test]
fn a_busier_database_client_does_not_demote_its_saturated_server_span() {
    let mut c = Correlator::new(grouping());
    let pay = key("payment", "Charge", SpanKind::Server);
    let db = key("payment", "SELECT payments", SpanKind::Client);
    let co_cli = key("checkout", "payment.Charge", SpanKind::Client);
    let s = |x: &str| -> Arc<str> { Arc::from(x) };
    c.observe_edge(
        &s("payment"),
        &s("payments-db"),
        ConnectionType::Database,
        end(0),
        100.0,
        0.0,
    );
    c.observe_edge(
        &s("checkout"),
        &s("payment"),
        ConnectionType::Direct,
        end(0),
        100.0,
        0.0,
    );
    for r in [
        open(&db, "request_rate", 0, 30.0, 10.0),
        open(&pay, "request_rate", 0, 30.0, 10.0),
        open(&pay, "latency_p50_ms", 0, 90.0, 30.0),
        open(&co_cli, "latency_p50_ms", 0, 91.0, 31.0),
    ] {
        c.observe_anomaly(r);
    }
    c.advance(end(0));
    let p = c.advance(end(1)).problems.remove(0);
    let first = p.cause().unwrap();
    assert_eq!(
        (&*first.span_name, first.kind),
        ("Charge", SpanKind::Server),
        "{:?}",
        p.causes
    );
}

mod late;
