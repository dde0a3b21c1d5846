//! Problem quality: incidents injected at a leaf of a generated call graph, detected by the
//! default detectors and grouped by the correlator (no criterion: prints tables).
//!
//! `cargo bench -p redwatch-operators --bench problem_quality` (seeds: `PROBLEM_QUALITY_SEEDS`,
//! default 20; `PROBLEM_QUALITY_VERBOSE=1` prints every miss)
//!
//! Per seed: a random graph of 11 services (frontend, tiers of 3, 3 and 4; 1–2 operations
//! each; leaves may call a database), simulated request by request for 4 hours of 10 s
//! windows, so a fault at a leaf reaches its callers' spans as in real traces. Three incidents
//! per seed, each at a random leaf, in random order after the first hour (warm-up, not scored):
//! a latency spike (own latency × 6, 5 min), an error burst (30% of its requests fail, 3 min)
//! and a saturation (outside traffic ramps the leaf's load to × 3, latency grows with it,
//! ~7 min). Every series' RED values go through `AnomalyEngine` (default config); its records
//! and the window's service graph edge counts go through `Correlator` (default parameters).
//!
//! Scoring: an event's span is [start, end + TOL). Alarms before correlation = incidents the
//! detectors opened in that span on the services the fault reaches (the leaf and its
//! transitive callers). A problem matches an event when one of its members opened in the span
//! on such a service. Recall = events with a matching problem; precision = published problems
//! (after warm-up) that match some event. Cause rank = position of the leaf's server span among
//! the first matching problem's causes, as published (open) and as last updated. Time to
//! problem = windows from the close of the problem's first anomalous window to its publication.

mod world;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redwatch_engine::SpanKind;
use redwatch_operators::anomaly::{AnomalyConfig, ForecastConfig};
use redwatch_operators::anomaly::{AnomalyEngine, IncidentState};
use redwatch_operators::problems::{Correlator, Problem, ProblemParams, ProblemState};
use redwatch_operators::servicegraph::ConnectionType;
use std::collections::HashMap;
use world::*;

const WINDOWS: u64 = 1440;
const SCORED_FROM: u64 = 360;
const TOL: u64 = 12;
const SIGNALS: [&str; 4] = [
    "request_rate",
    "error_ratio",
    "latency_p50_ms",
    "latency_p99_ms",
];

/// Other correlator settings run on the same detector output, for comparison.
type Variant = (&'static str, fn(&mut ProblemParams));
const VARIANTS: [Variant; 2] = [
    (
        "one signal beyond confirm_p confirms at once (confirm_signals = 1)",
        |p| p.confirm_signals = 1,
    ),
    ("without the confirmation gate (confirm_p = 1)", |p| {
        p.confirm_p = 1.0;
        p.confirm_signals = 1;
    }),
];

/// One event's outcome.
struct Outcome {
    fault: Fault,
    alarms_before: u64,
    problems: u64,
    rank_open: Option<usize>,
    rank_last: Option<usize>,
    ttp: Option<u64>,
    from_event: Option<u64>,
    miss: Option<String>,
}

/// One seed's outcome.
struct SeedRun {
    outcomes: Vec<Outcome>,
    problems: u64,
    true_problems: u64,
    noise_alarms: u64,
    series: usize,
    series_with_traffic: usize,
    services: usize,
    observations: u64,
    /// Published problems that match no event (printed with `PROBLEM_QUALITY_VERBOSE`).
    false_problems: Vec<String>,
    /// Pending problems that resolved unconfirmed (never published).
    unconfirmed: u64,
    /// The same run with the other correlator settings of [`VARIANTS`], in order.
    variants: Vec<SeedRun>,
}

fn events(world: &World, rng: &mut StdRng) -> Vec<Event> {
    let mut faults = [Fault::LatencySpike, Fault::ErrorBurst, Fault::Saturation];
    faults.shuffle(rng);
    let mut leaves = world.leaves();
    leaves.shuffle(rng);
    faults
        .iter()
        .enumerate()
        .map(|(i, f)| Event {
            fault: *f,
            leaf: leaves[i % leaves.len()],
            start: 480 + 320 * i as u64 + rng.random_range(0..60),
            len: match f {
                Fault::LatencySpike => 30,
                Fault::ErrorBurst => 18,
                Fault::Saturation => 40,
            },
        })
        .collect()
}

/// Per published problem: its snapshot when it opened and its last one.
struct Track {
    open: Problem,
    last: Problem,
}

fn run_seed(seed: u64) -> SeedRun {
    let world = World::generate(seed);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9));
    let evs = events(&world, &mut rng);
    let mut sim = Sim::new(&world, seed);
    let fcfg = ForecastConfig {
        enabled: false,
        ..ForecastConfig::default()
    };
    let mut engine = AnomalyEngine::new(&AnomalyConfig::default(), &fcfg);
    let mut corr = Correlator::new(ProblemParams::new(W_NS));
    let mut others: Vec<Correlator> = VARIANTS
        .iter()
        .map(|(_, f)| {
            let mut p = ProblemParams::new(W_NS);
            f(&mut p);
            Correlator::new(p)
        })
        .collect();
    let mut other_tracks: Vec<HashMap<[u8; 16], Track>> =
        others.iter().map(|_| HashMap::new()).collect();
    let mut opens: Vec<(u64, usize)> = Vec::new(); // (window, service)
    let mut tracks: HashMap<[u8; 16], Track> = HashMap::new();
    let mut traffic = vec![false; world.series.len()];
    let mut observations = 0u64;
    let service_of: HashMap<&str, usize> = world
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| (&*s.name, i))
        .collect();
    for w in 0..WINDOWS {
        let active = evs
            .iter()
            .find(|e| w >= e.start && w < e.start + e.len)
            .map(|e| (e, w - e.start));
        let mut d = sim.window(active);
        let start = EPOCH0 + w * W_NS;
        for (i, v) in d.values().iter().enumerate() {
            traffic[i] |= v[4] > 0.0;
            for (si, sig) in SIGNALS.iter().enumerate() {
                let (anoms, _) =
                    engine.observe_value(sig, &world.series[i], start, start + W_NS, v[si], v[4]);
                observations += 1;
                for a in anoms {
                    if a.incident_state == IncidentState::Open {
                        let s = service_of[&*a.series.service_name];
                        let aw = (a.window_start - EPOCH0) / W_NS;
                        opens.push((aw, s));
                        if std::env::var_os("PROBLEM_QUALITY_TRACE").is_some() {
                            println!(
                                "  open w{aw} {} {} {} {:.3} expected [{:.3}, {:.3}] score {:?} by {} (events {:?})",
                                a.series.service_name, a.series.span_name, a.signal, a.value,
                                a.expected_min, a.expected_max, a.score, a.detector,
                                evs.iter().map(|e| (e.start, e.len)).collect::<Vec<_>>()
                            );
                        }
                    }
                    for o in &mut others {
                        o.observe_anomaly(a.clone());
                    }
                    corr.observe_anomaly(a);
                }
            }
        }
        for (e, (req, failed)) in world.edges.iter().zip(&d.edges) {
            if *req > 0.0 {
                let ct = if e.database {
                    ConnectionType::Database
                } else if &*e.client == "user" {
                    ConnectionType::VirtualNode
                } else {
                    ConnectionType::Direct
                };
                corr.observe_edge(&e.client, &e.server, ct, start + W_NS, *req, *failed);
                for o in &mut others {
                    o.observe_edge(&e.client, &e.server, ct, start + W_NS, *req, *failed);
                }
            }
        }
        track(&mut tracks, corr.advance(start + W_NS).problems);
        for (o, t) in others.iter_mut().zip(&mut other_tracks) {
            track(t, o.advance(start + W_NS).problems);
        }
    }
    let mut run = score(&world, &evs, &opens, &tracks, &traffic, observations);
    run.unconfirmed = corr.unconfirmed;
    run.variants = other_tracks
        .iter()
        .map(|t| score(&world, &evs, &opens, t, &traffic, observations))
        .collect();
    run
}

fn track(tracks: &mut HashMap<[u8; 16], Track>, problems: Vec<Problem>) {
    for p in problems {
        if p.state == ProblemState::Open {
            tracks.insert(
                p.id,
                Track {
                    open: p.clone(),
                    last: p,
                },
            );
        } else if let Some(t) = tracks.get_mut(&p.id) {
            t.last = p;
        }
    }
}

fn window_of(ns: u64) -> u64 {
    (ns - EPOCH0) / W_NS
}

fn score(
    world: &World,
    evs: &[Event],
    opens: &[(u64, usize)],
    tracks: &HashMap<[u8; 16], Track>,
    traffic: &[bool],
    observations: u64,
) -> SeedRun {
    let span = |e: &Event| e.start..e.start + e.len + TOL;
    let affected: Vec<Vec<usize>> = evs.iter().map(|e| world.affected(e.leaf)).collect();
    let matches = |p: &Problem, i: usize| {
        p.members.iter().any(|m| {
            span(&evs[i]).contains(&window_of(m.onset))
                && affected[i]
                    .iter()
                    .any(|s| world.services[*s].name == m.series.service_name)
        })
    };
    let mut ts: Vec<&Track> = tracks
        .values()
        .filter(|t| window_of(t.open.onset) >= SCORED_FROM)
        .collect();
    ts.sort_by_key(|t| (t.open.opened_at, t.open.id));
    let mut outcomes = Vec::new();
    for (i, e) in evs.iter().enumerate() {
        let alarms_before = opens
            .iter()
            .filter(|(w, s)| span(e).contains(w) && affected[i].contains(s))
            .count() as u64;
        let mine: Vec<&&Track> = ts.iter().filter(|t| matches(&t.last, i)).collect();
        let leaf = &world.services[e.leaf].name;
        let rank = |p: &Problem| {
            p.causes
                .iter()
                .position(|c| c.service == *leaf && c.kind == SpanKind::Server)
                .map(|r| r + 1)
        };
        let first = mine.first();
        let rank_last = first.and_then(|t| rank(&t.last));
        let miss = match first {
            None => Some(format!("{} at {leaf}: no problem", e.fault.name())),
            Some(t) if rank_last != Some(1) => Some(format!(
                "{} at {leaf}: ranked {:?}; causes {:?}",
                e.fault.name(),
                rank_last,
                t.last
                    .causes
                    .iter()
                    .take(4)
                    .map(|c| format!(
                        "{} {} [{:.2}: {}]",
                        c.service, c.span_name, c.points, c.evidence
                    ))
                    .collect::<Vec<_>>()
            )),
            _ => None,
        };
        outcomes.push(Outcome {
            fault: e.fault,
            alarms_before,
            problems: mine.len() as u64,
            rank_open: first.and_then(|t| rank(&t.open)),
            rank_last,
            ttp: first.map(|t| (t.open.opened_at - t.open.onset) / W_NS - 1),
            from_event: first.map(|t| window_of(t.open.opened_at).saturating_sub(e.start)),
            miss,
        });
    }
    let true_problems = ts
        .iter()
        .filter(|t| (0..evs.len()).any(|i| matches(&t.last, i)))
        .count() as u64;
    let in_event = |w: u64| evs.iter().any(|e| span(e).contains(&w));
    let false_problems = ts
        .iter()
        .filter(|t| !(0..evs.len()).any(|i| matches(&t.last, i)))
        .map(|t| {
            let members: Vec<String> = t
                .last
                .members
                .iter()
                .map(|m| {
                    format!(
                        "{} {} {} w{} ×{} {:?} p {:.1e}",
                        m.series.service_name,
                        m.series.span_name,
                        m.signal,
                        window_of(m.onset),
                        m.windows,
                        m.severity,
                        m.min_p
                    )
                })
                .collect();
            format!(
                "opened w{}: {}",
                window_of(t.open.opened_at),
                members.join("; ")
            )
        })
        .collect();
    SeedRun {
        outcomes,
        problems: ts.len() as u64,
        true_problems,
        noise_alarms: opens
            .iter()
            .filter(|(w, _)| *w >= SCORED_FROM && !in_event(*w))
            .count() as u64,
        series: world.series.len(),
        series_with_traffic: traffic.iter().filter(|t| **t).count(),
        services: world.services.len(),
        observations,
        false_problems,
        unconfirmed: 0,
        variants: Vec::new(),
    }
}

fn median(mut v: Vec<u64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

fn row(name: &str, o: &[&Outcome]) {
    let n = o.len() as f64;
    let share = |f: &dyn Fn(&Outcome) -> bool| 100.0 * o.iter().filter(|x| f(x)).count() as f64 / n;
    println!(
        "{name:<14} {:>4} {:>9.1} {:>9.2} {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>5.1} {:>6.1}",
        o.len(),
        o.iter().map(|x| x.alarms_before).sum::<u64>() as f64 / n,
        o.iter().map(|x| x.problems).sum::<u64>() as f64 / n,
        share(&|x| x.problems > 0),
        share(&|x| x.rank_open == Some(1)),
        share(&|x| x.rank_open.is_some_and(|r| r <= 3)),
        share(&|x| x.rank_last == Some(1)),
        share(&|x| x.rank_last.is_some_and(|r| r <= 3)),
        median(o.iter().filter_map(|x| x.ttp).collect()),
        median(o.iter().filter_map(|x| x.from_event).collect()),
    );
}

fn main() {
    let seeds: u64 = std::env::var("PROBLEM_QUALITY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let verbose = std::env::var_os("PROBLEM_QUALITY_VERBOSE").is_some();
    let t0 = std::time::Instant::now();
    let runs: Vec<SeedRun> = (0..seeds).map(|s| run_seed(1000 + s)).collect();
    let secs = t0.elapsed().as_secs_f64();
    let all: Vec<&Outcome> = runs.iter().flat_map(|r| &r.outcomes).collect();
    println!(
        "problem quality: {seeds} seeds × 4 h of 10 s windows; {}–{} services, {}–{} series ({}–{} with traffic); {} detector observations in {secs:.1} s",
        runs.iter().map(|r| r.services).min().unwrap_or(0),
        runs.iter().map(|r| r.services).max().unwrap_or(0),
        runs.iter().map(|r| r.series).min().unwrap_or(0),
        runs.iter().map(|r| r.series).max().unwrap_or(0),
        runs.iter().map(|r| r.series_with_traffic).min().unwrap_or(0),
        runs.iter().map(|r| r.series_with_traffic).max().unwrap_or(0),
        runs.iter().map(|r| r.observations).sum::<u64>(),
    );
    println!(
        "{:<14} {:>4} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>6}",
        "fault",
        "n",
        "alarms/ev",
        "probs/ev",
        "recall",
        "rank1@o",
        "top3@o",
        "rank1",
        "top3",
        "ttp",
        "delay"
    );
    for f in [Fault::LatencySpike, Fault::ErrorBurst, Fault::Saturation] {
        let o: Vec<&Outcome> = all.iter().copied().filter(|x| x.fault == f).collect();
        row(f.name(), &o);
    }
    row("all", &all);
    let caught: Vec<&Outcome> = all
        .iter()
        .copied()
        .filter(|x| x.alarms_before > 0)
        .collect();
    println!("events the detectors caught (at least one alarm on a service the fault reaches):");
    row("all, caught", &caught);
    let problems: u64 = runs.iter().map(|r| r.problems).sum();
    let tp: u64 = runs.iter().map(|r| r.true_problems).sum();
    println!(
        "problems after warm-up: {problems}, matching an incident: {tp} (precision {:.3}); detector incidents outside any event: {}",
        tp as f64 / problems.max(1) as f64,
        runs.iter().map(|r| r.noise_alarms).sum::<u64>()
    );
    println!("(@o: as published; rank1/top3: as last updated; ttp: median windows from the first anomalous window's close to publication; delay: median windows from the fault's start to publication)");
    println!(
        "pending problems that resolved unconfirmed (never published): {}",
        runs.iter().map(|r| r.unconfirmed).sum::<u64>()
    );
    for (k, (name, _)) in VARIANTS.iter().enumerate() {
        let v: Vec<&SeedRun> = runs.iter().filter_map(|r| r.variants.get(k)).collect();
        let v_all: Vec<&Outcome> = v.iter().flat_map(|r| &r.outcomes).collect();
        println!("{name}:");
        row("all", &v_all);
        let (p2, tp2) = (
            v.iter().map(|r| r.problems).sum::<u64>(),
            v.iter().map(|r| r.true_problems).sum::<u64>(),
        );
        println!(
            "problems after warm-up: {p2}, matching an incident: {tp2} (precision {:.3})",
            tp2 as f64 / p2.max(1) as f64
        );
    }
    let misses: Vec<&String> = all.iter().filter_map(|x| x.miss.as_ref()).collect();
    println!(
        "misses (not ranked first as last updated): {}",
        misses.len()
    );
    if verbose {
        for m in misses {
            println!("  {m}");
        }
        println!("problems matching no incident:");
        for (seed, r) in runs.iter().enumerate() {
            for f in &r.false_problems {
                println!("  seed {}: {f}", 1000 + seed);
            }
        }
    }
}
