//! [`Correlator`]: groups member incidents into problems, publishes them after a short hold,
//! and resolves them once every member has resolved and stayed so.
//!
//! Grouping happens once per [`Correlator::advance`] over the anomalies of the windows closed
//! since the last one: new member incidents and the unresolved problems are nodes, two are
//! joined when their services are connected ([`LiveGraph::connection`]), and each connected
//! set goes to its oldest published problem (else its oldest unpublished one, which absorbs the
//! other unpublished ones; else a new problem). Two published problems are never merged: their
//! ids are out already.
//!
//! Every record of a member incident goes into its problem's trace, also one that comes after
//! the problem resolved ([`ResolvedIncidents`]) and an incident's `resolved` record released in
//! the step that first saw the incident.

use super::graph::LiveGraph;
use super::rank::{fmt_value, rank_causes, series_label};
use super::resolved::{ResolvedIncidents, ENTRY_BYTES};
use super::{problem_id, Member, Problem, ProblemParams, ProblemState};
use crate::anomaly::{Anomaly, IncidentState};
use crate::red::SeriesKey;
use crate::servicegraph::ConnectionType;
use hashbrown::HashMap;
use std::sync::Arc;

/// An anomaly record released by the correlator, with the problem it belongs to (None when the
/// member bound was reached, for an unconfirmed blip, or for the resolution of an incident it
/// never held).
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    pub anomaly: Anomaly,
    pub problem: Option<[u8; 16]>,
}

/// What one [`Correlator::advance`] produced.
#[derive(Debug, Default, Clone)]
pub struct Step {
    /// Anomaly records in the order they were released.
    pub anomalies: Vec<Released>,
    /// Problems that opened, changed or resolved, by onset.
    pub problems: Vec<Problem>,
}

/// One problem while it is held.
#[derive(Debug)]
struct Group {
    id: [u8; 16],
    /// The end of its first anomalous window (event time), for the hold.
    created_at: u64,
    /// The end of the window whose record confirmed it (see [`ProblemParams::confirm_p`]).
    confirmed_at: Option<u64>,
    /// When it was published; None while held.
    opened_at: Option<u64>,
    members: Vec<Member>,
    /// Records waiting for the publication.
    held: Vec<Anomaly>,
    /// A record touched it in this step; `grew`: it gained a member.
    touched: bool,
    grew: bool,
    /// The first cause as last published: (service, span, signal).
    last_cause: Option<(Arc<str>, Arc<str>, Arc<str>)>,
    /// Merged into another held problem in this step (removed when the step ends).
    absorbed: bool,
    /// One of its members has been anomalous in two consecutive windows.
    persisted: bool,
    /// Members resolved by timeout, without their incident's `resolved` record: records of
    /// theirs may still come after the problem resolved.
    timed_out: Vec<[u8; 16]>,
}

impl Group {
    fn onset(&self) -> u64 {
        self.members.iter().map(|m| m.onset).min().unwrap_or(0)
    }

    fn all_resolved(&self) -> bool {
        self.members.iter().all(|m| m.resolved)
    }

    /// Whether the evidence suffices to publish (see [`ProblemParams::confirm_p`]).
    fn confirmed(&self, params: &ProblemParams) -> bool {
        if self.persisted {
            return true;
        }
        let strong: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.min_p <= params.confirm_p)
            .collect();
        strong.iter().any(|m| {
            let signals = strong
                .iter()
                .filter(|o| o.series == m.series)
                .map(|o| &o.signal)
                .fold(Vec::new(), |mut v: Vec<&Arc<str>>, s| {
                    if !v.contains(&s) {
                        v.push(s);
                    }
                    v
                });
            signals.len() >= params.confirm_signals.max(1)
        })
    }

    /// Records the window at which the group became confirmed.
    fn note_confirmation(&mut self, params: &ProblemParams, window_end: u64) {
        if self.confirmed_at.is_none() && self.confirmed(params) {
            self.confirmed_at = Some(window_end);
        }
    }

    /// Takes a member's record: the group is touched (and maybe confirmed); an open problem
    /// releases the record at once, one not open yet holds it.
    fn take_record(&mut self, params: &ProblemParams, a: Anomaly, step: &mut Step) {
        self.note_confirmation(params, a.window_end);
        self.touched = true;
        if self.opened_at.is_some() {
            step.anomalies.push(Released {
                anomaly: a,
                problem: Some(self.id),
            });
        } else {
            self.held.push(a);
        }
    }

    fn last_end(&self) -> u64 {
        self.members.iter().map(|m| m.last_end).max().unwrap_or(0)
    }
}

/// The correlation operator's state.
#[derive(Debug)]
pub struct Correlator {
    params: ProblemParams,
    graph: LiveGraph,
    groups: Vec<Group>,
    /// Member incident → its problem.
    by_incident: HashMap<[u8; 16], [u8; 16]>,
    pending: Vec<Anomaly>,
    /// Timed-out members of resolved problems (bounded by `max_members`).
    resolved: ResolvedIncidents,
    /// Anomalies released without a problem because `max_members` was reached.
    pub dropped: u64,
    /// Held problems that resolved unconfirmed (never published).
    pub unconfirmed: u64,
}

impl Correlator {
    pub fn new(params: ProblemParams) -> Self {
        let ttl = params
            .window_ns
            .saturating_mul(params.edge_ttl_windows as u64);
        Correlator {
            graph: LiveGraph::new(params.max_edges, ttl),
            groups: Vec::new(),
            by_incident: HashMap::new(),
            pending: Vec::new(),
            resolved: ResolvedIncidents::new(params.max_members),
            dropped: 0,
            unconfirmed: 0,
            params,
        }
    }

    /// Incidents of resolved problems evicted by the bound while a record of theirs could still
    /// come (it would leave in the incident's own trace).
    pub fn resolved_evicted(&self) -> u64 {
        self.resolved.evicted
    }

    /// The detector forgot these series (no record of their incidents can come any more).
    pub fn forget_series(&mut self, series: &[Arc<SeriesKey>]) {
        self.resolved.forget_series(series);
    }

    /// The live graph (for status pages and tests).
    pub fn graph(&self) -> &LiveGraph {
        &self.graph
    }

    /// One anomaly record (any state); it is released by a later [`Correlator::advance`].
    pub fn observe_anomaly(&mut self, a: Anomaly) {
        self.pending.push(a);
    }

    /// One final service graph row (see [`LiveGraph::observe`]).
    pub fn observe_edge(
        &mut self,
        client: &Arc<str>,
        server: &Arc<str>,
        connection_type: ConnectionType,
        window_end: u64,
        requests: f64,
        failed: f64,
    ) {
        self.graph.observe(
            client,
            server,
            connection_type,
            window_end,
            requests,
            failed,
        );
    }

    /// Problems not yet resolved (published or held).
    pub fn open_problems(&self) -> usize {
        self.groups.iter().filter(|g| g.opened_at.is_some()).count()
    }

    /// Member incidents held.
    pub fn member_count(&self) -> usize {
        self.by_incident.len()
    }

    /// Approximate bytes held (members, held records, graph edges, incidents of resolved
    /// problems).
    pub fn state_bytes(&self) -> usize {
        let m = self.by_incident.len() * (std::mem::size_of::<Member>() + 48)
            + self.resolved.len() * ENTRY_BYTES;
        let h: usize = self.groups.iter().map(|g| g.held.len()).sum::<usize>()
            * std::mem::size_of::<Anomaly>();
        m + h + self.graph.len() * 160
    }

    /// Everything up to the window ending at `now` (ns) has been observed: groups the new
    /// anomalies, publishes, updates and resolves problems.
    pub fn advance(&mut self, now: u64) -> Step {
        let mut step = Step::default();
        self.graph.expire(now);
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|a| (a.window_end, a.incident_start));
        let mut fresh: Vec<Anomaly> = Vec::new();
        for a in pending {
            self.fold_known(a, &mut fresh, &mut step);
        }
        self.group_fresh(fresh, &mut step);
        self.time_out_members(now);
        self.publish(now, &mut step);
        step
    }

    /// A record of an incident already held updates its member; a late one of a resolved
    /// problem's incident goes to that problem; others wait in `fresh`.
    fn fold_known(&mut self, a: Anomaly, fresh: &mut Vec<Anomaly>, step: &mut Step) {
        let Some(pid) = self.by_incident.get(&a.incident_id).copied() else {
            let last = a.incident_state == IncidentState::Resolved;
            if let Some(pid) = self.resolved.problem_of(&a.incident_id, last) {
                step.anomalies.push(Released {
                    anomaly: a,
                    problem: Some(pid),
                });
            } else if last && !fresh.iter().any(|f| f.incident_id == a.incident_id) {
                // An incident never held (dropped at the bound, or an unconfirmed blip's).
                step.anomalies.push(Released {
                    anomaly: a,
                    problem: None,
                });
            } else {
                // New, or the resolution of an incident first seen in this step: it follows the
                // incident's first record into its problem.
                fresh.push(a);
            }
            return;
        };
        let Some(g) = self.groups.iter_mut().find(|g| g.id == pid) else {
            self.by_incident.remove(&a.incident_id);
            fresh.push(a);
            return;
        };
        if let Some(m) = g
            .members
            .iter_mut()
            .find(|m| m.incident_id == a.incident_id)
        {
            // Anomalous again in the window right after its last anomalous one.
            g.persisted |=
                a.incident_state != IncidentState::Resolved && a.window_start == m.last_end;
            m.update(&a);
            if a.incident_state == IncidentState::Resolved {
                g.timed_out.retain(|id| *id != a.incident_id);
            }
        }
        g.take_record(&self.params, a, step);
    }

    /// Joins new member incidents to problems (see the module comment).
    fn group_fresh(&mut self, fresh: Vec<Anomaly>, step: &mut Step) {
        // Two records of one new incident in one step: the first makes the member.
        let mut firsts: Vec<Anomaly> = Vec::new();
        let mut later: Vec<Anomaly> = Vec::new();
        for a in fresh {
            if firsts.iter().any(|f| f.incident_id == a.incident_id) {
                later.push(a);
            } else {
                firsts.push(a);
            }
        }
        let nf = firsts.len();
        let mut uf = UnionFind::new(nf + self.groups.len());
        for (i, a) in firsts.iter().enumerate() {
            let si = &*a.series.service_name;
            for (j, b) in firsts.iter().enumerate().skip(i + 1) {
                if self.graph.connected(si, &b.series.service_name) {
                    uf.union(i, j);
                }
            }
            for (k, g) in self.groups.iter().enumerate() {
                let related = g
                    .members
                    .iter()
                    .any(|m| self.graph.connected(si, &m.series.service_name));
                if related {
                    uf.union(i, nf + k);
                }
            }
        }
        let mut target_of_root: HashMap<usize, [u8; 16]> = HashMap::new();
        for (i, a) in firsts.into_iter().enumerate() {
            let root = uf.find(i);
            let pid = match target_of_root.get(&root) {
                Some(p) => *p,
                None => {
                    let p = self.target(root, nf, &mut uf, &a);
                    target_of_root.insert(root, p);
                    p
                }
            };
            self.add_member(pid, a, step);
        }
        self.groups.retain(|g| !g.absorbed);
        for a in later {
            let mut unheld = Vec::new();
            self.fold_known(a, &mut unheld, step);
            // A later record of an incident whose first one was dropped at the bound.
            for a in unheld {
                self.dropped += 1;
                step.anomalies.push(Released {
                    anomaly: a,
                    problem: None,
                });
            }
        }
    }

    /// The problem a connected set (by union-find root) joins: its oldest published problem,
    /// else its oldest held one (absorbing the other held ones), else a new one.
    fn target(&mut self, root: usize, nf: usize, uf: &mut UnionFind, first: &Anomaly) -> [u8; 16] {
        let in_set: Vec<usize> = (0..uf.0.len() - nf)
            .filter(|k| uf.find(nf + k) == root)
            .collect();
        let oldest = |published: bool, groups: &[Group]| {
            in_set
                .iter()
                .copied()
                .filter(|k| !groups[*k].absorbed && groups[*k].opened_at.is_some() == published)
                .min_by_key(|k| (groups[*k].onset(), groups[*k].id))
        };
        let target = oldest(true, &self.groups).or_else(|| oldest(false, &self.groups));
        let Some(t) = target else {
            let id = problem_id(&first.incident_id);
            self.groups.push(Group {
                id,
                created_at: first.window_end,
                confirmed_at: None,
                opened_at: None,
                members: Vec::new(),
                held: Vec::new(),
                touched: true,
                grew: true,
                last_cause: None,
                absorbed: false,
                persisted: false,
                timed_out: Vec::new(),
            });
            return id;
        };
        let tid = self.groups[t].id;
        // Held problems of the set join the target; published ones keep their own. Absorbed
        // groups stay in place (empty) until the step ends, so union-find indices hold.
        for k in in_set {
            if k == t || self.groups[k].opened_at.is_some() || self.groups[k].absorbed {
                continue;
            }
            let src = &mut self.groups[k];
            src.absorbed = true;
            let members = std::mem::take(&mut src.members);
            let held = std::mem::take(&mut src.held);
            let created = src.created_at;
            let confirmed = src.confirmed_at;
            let persisted = src.persisted;
            let timed_out = std::mem::take(&mut src.timed_out);
            for m in &members {
                self.by_incident.insert(m.incident_id, tid);
            }
            let dst = &mut self.groups[t];
            dst.members.extend(members);
            dst.held.extend(held);
            dst.created_at = dst.created_at.min(created);
            dst.persisted |= persisted;
            dst.timed_out.extend(timed_out);
            dst.confirmed_at = match (dst.confirmed_at, confirmed) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            dst.touched = true;
            dst.grew = true;
        }
        tid
    }

    fn add_member(&mut self, pid: [u8; 16], a: Anomaly, step: &mut Step) {
        let full = self.by_incident.len() >= self.params.max_members;
        let g = self.groups.iter_mut().find(|g| g.id == pid);
        let (Some(g), false) = (g, full) else {
            self.dropped += 1;
            step.anomalies.push(Released {
                anomaly: a,
                problem: None,
            });
            return;
        };
        self.by_incident.insert(a.incident_id, pid);
        g.members.push(Member::from_anomaly(&a));
        g.grew = true;
        g.take_record(&self.params, a, step);
    }

    /// Members of series that stopped reporting count as resolved.
    fn time_out_members(&mut self, now: u64) {
        let limit = self
            .params
            .window_ns
            .saturating_mul(self.params.member_timeout_windows as u64);
        for g in &mut self.groups {
            for m in &mut g.members {
                if !m.resolved && m.last_seen.saturating_add(limit) <= now {
                    m.resolved = true;
                    g.touched = true;
                    g.timed_out.push(m.incident_id);
                }
            }
        }
    }

    /// Publishes held problems whose hold is over, snapshots changed ones, resolves finished
    /// ones.
    fn publish(&mut self, now: u64, step: &mut Step) {
        let w = self.params.window_ns;
        let hold = w.saturating_mul(self.params.hold_windows as u64);
        let linger = w.saturating_mul(self.params.linger_windows as u64);
        let mut done: Vec<usize> = Vec::new();
        for (k, g) in self.groups.iter_mut().enumerate() {
            let mut state = None;
            if g.opened_at.is_none() {
                if g.confirmed_at.is_none() {
                    if g.all_resolved() {
                        // An unconfirmed blip: its records leave without a problem.
                        self.unconfirmed += 1;
                        done.push(k);
                        for a in g.held.drain(..) {
                            step.anomalies.push(Released {
                                anomaly: a,
                                problem: None,
                            });
                        }
                    }
                } else if let Some(at) = g
                    .confirmed_at
                    .map(|c| c.max(g.created_at.saturating_add(hold)))
                    .filter(|at| *at <= now)
                {
                    // In event time: when the hold ended and it was confirmed (the same as `now`
                    // when windows close one by one; earlier when a batch closed several).
                    g.opened_at = Some(at);
                    state = Some(ProblemState::Open);
                    for a in g.held.drain(..) {
                        step.anomalies.push(Released {
                            anomaly: a,
                            problem: Some(g.id),
                        });
                    }
                }
            } else if g.all_resolved() && g.last_end().saturating_add(linger) <= now {
                state = Some(ProblemState::Resolved);
                done.push(k);
            } else if g.touched {
                state = Some(ProblemState::Ongoing);
            }
            g.touched = false;
            let Some(state) = state else { continue };
            let p = snapshot(g, state, now, &self.graph, w);
            let cause = p
                .cause()
                .map(|c| (c.service.clone(), c.span_name.clone(), c.signal.clone()));
            let changed = g.grew || cause != g.last_cause;
            g.grew = false;
            if state != ProblemState::Ongoing || changed {
                g.last_cause = cause;
                step.problems.push(p);
            }
        }
        for k in done.into_iter().rev() {
            let g = self.groups.swap_remove(k);
            for m in &g.members {
                self.by_incident.remove(&m.incident_id);
                // A published problem's timed-out member may still send records.
                if g.opened_at.is_some() && g.timed_out.contains(&m.incident_id) {
                    self.resolved.insert(m.incident_id, g.id, m.series.clone());
                }
            }
        }
        step.problems.sort_by_key(|p| (p.onset, p.id));
    }
}

/// The published view of a group.
fn snapshot(g: &Group, state: ProblemState, now: u64, graph: &LiveGraph, w: u64) -> Problem {
    let mut members = g.members.clone();
    members
        .sort_by(|a, b| (a.onset, &a.series.service_name).cmp(&(b.onset, &b.series.service_name)));
    let onset = g.onset();
    let causes = rank_causes(&members, graph, onset, w);
    let mut p = Problem {
        id: g.id,
        state,
        onset,
        opened_at: g.opened_at.unwrap_or(now),
        resolved_at: (state == ProblemState::Resolved).then_some(now),
        updated_at: now,
        members,
        causes,
        summary: String::new(),
    };
    p.summary = summary(&p);
    p
}

/// One line: the first cause, its change, and what followed.
fn summary(p: &Problem) -> String {
    let services = p.services();
    let Some(c) = p.cause() else {
        return format!("{} anomalies", p.members.len());
    };
    let lead = p.members.iter().find(|m| {
        m.series.service_name == c.service
            && m.series.span_name == c.span_name
            && m.signal == c.signal
    });
    let change = lead.map_or(String::new(), |m| {
        format!(
            " {} {} (expected {})",
            m.signal,
            fmt_value(&m.signal, m.value),
            fmt_value(&m.signal, m.expected)
        )
    });
    let label = lead.map_or_else(|| c.service.to_string(), |m| series_label(&m.series));
    let names: Vec<&str> = services.iter().map(|s| &**s).collect();
    format!(
        "{label}{change}: likely cause of {} anomalies in {} service(s) ({})",
        p.members.len(),
        services.len(),
        names.join(", ")
    )
}

/// Union-find over small index sets.
struct UnionFind(Vec<usize>);

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind((0..n).collect())
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}
