//! The microscaler's decisions, for people and tools: `GET /v1/scaler` (JSON) and `GET /scaler`
//! (a dashboard page).
//!
//! Both read the decision history the supervisor records in the store
//! ([`Store::decisions_since`](crate::store::Store::decisions_since)), over the last hour:
//! - the **latest decision** whole: per service its inputs (demand, rates, instance counts,
//!   whether the reading was fresh), the control law's raw output, the desired count, the
//!   granted count, and every clamp applied between them with its reason;
//! - the **history** summarised into [`HISTORY_STEP`]-second intervals aligned to the clock:
//!   per service the highest backlog and work in service within the interval, and the
//!   instance counts and targets of its last decision. A supervisor ticking every second
//!   records 3,600 decisions an hour; 240 points are enough to chart it and small to send.
//!
//! The JSON leaves out what only makes sense inside the supervisor (its own clock, `now`, in
//! seconds since it started). Times are RFC 3339 UTC. Both responses are `no-store`: they are
//! live.
//!
//! The page draws its charts as SVG on the server ([`line_chart`] is the geometry; the template
//! `templates/scaler/dashboard.html` writes the elements, so every text is escaped by askama),
//! so it works without JavaScript, and reloads itself every [`REFRESH_SECONDS`] with a
//! `<meta http-equiv="refresh">` (the CSP forbids inline script).

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::cache::CachePolicy;
use super::pages::templates::Chrome;
use super::{AppState, WebError};
use crate::scaler::{Capacity, Decision, ServiceDecision};

/// The window shown and sent.
pub const WINDOW_SECONDS: u32 = 3600;
/// The history's resolution.
pub const HISTORY_STEP: u32 = 15;
/// How often the dashboard reloads itself.
pub const REFRESH_SECONDS: u32 = 10;

// ---- the JSON document ---------------------------------------------------------------------

/// `GET /v1/scaler`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ScalerStatus {
    /// When this document was made.
    pub now: String,
    /// The most recent decision in the window; `null` when the microscaler made none (it is
    /// not running: it runs in `microbadger up` and `microbadger scaler`).
    pub latest: Option<DecisionDoc>,
    pub history: HistoryDoc,
}

/// One decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionDoc {
    pub at: String,
    /// Capacity shared by the services, in units.
    pub capacity: u32,
    /// CPU shared, in millicores; `null` when CPU is not counted.
    pub capacity_cpu_millis: Option<u64>,
    /// Memory shared, in MiB; `null` when memory is not counted.
    pub capacity_memory_mib: Option<u64>,
    pub services: Vec<ServiceDoc>,
}

/// One service's part of a decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceDoc {
    pub service: String,
    pub inputs: InputsDoc,
    /// The control law's output before any damping, in (fractional) instances; `null` if it
    /// was not a number.
    pub raw: Option<f64>,
    /// What the control law wants after its own damping.
    pub desired: u32,
    /// The part of `desired` needed now; the rest is held and yields to other services'
    /// needs. `null` in decisions recorded before it existed.
    pub needed: Option<u32>,
    /// The part of `needed` the service cannot do without, served for every service before
    /// any need beyond it. `null` in decisions recorded before it existed.
    pub essential: Option<u32>,
    /// What the allocator granted: the orchestrator's target.
    pub granted: u32,
    pub clamps: Vec<ClampDoc>,
}

/// What the service was observed doing.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InputsDoc {
    /// In-flight requests (web), or due jobs weighted by priority plus in-flight jobs (worker).
    pub backlog: f64,
    /// Work being done now.
    pub in_service: f64,
    /// Per second; `null` until measured.
    pub arrival_rate: Option<f64>,
    pub completion_rate: Option<f64>,
    pub ready: u32,
    pub starting: u32,
    pub stopping: u32,
    /// False when the reading failed or was stale, and the controller held.
    pub fresh: bool,
}

/// A limit applied between the raw output and the granted count.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClampDoc {
    pub kind: String,
    pub from: u32,
    pub to: u32,
    pub why: String,
}

/// The window, summarised.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryDoc {
    pub window_seconds: u32,
    pub resolution_seconds: u32,
    /// Oldest first; intervals without decisions are left out.
    pub points: Vec<PointDoc>,
}

/// One interval of [`HISTORY_STEP`] seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PointDoc {
    /// The interval's start.
    pub at: String,
    /// Decisions made in it.
    pub decisions: u32,
    /// The capacity at its last decision.
    pub capacity: u32,
    pub services: Vec<PointServiceDoc>,
}

/// One service over one interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PointServiceDoc {
    pub service: String,
    /// The highest backlog observed in the interval.
    pub backlog_max: f64,
    /// The highest work in service observed in the interval.
    pub in_service_max: f64,
    /// Counts and targets at the interval's last decision.
    pub ready: u32,
    pub starting: u32,
    pub stopping: u32,
    pub desired: u32,
    pub granted: u32,
    /// Some reading in the interval was not fresh (the controller held).
    pub held: bool,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Unix seconds as a time (out-of-range values clamp to the epoch).
fn from_unix(at: f64) -> DateTime<Utc> {
    if !at.is_finite() {
        return DateTime::UNIX_EPOCH;
    }
    DateTime::from_timestamp_micros((at * 1e6).round() as i64).unwrap_or(DateTime::UNIX_EPOCH)
}

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// A number for JSON: non-finite values (which JSON cannot carry) become `None`.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl ServiceDoc {
    fn from_decision(s: &ServiceDecision) -> ServiceDoc {
        let o = &s.observation;
        ServiceDoc {
            service: s.service.clone(),
            inputs: InputsDoc {
                backlog: finite(o.backlog).unwrap_or(0.0),
                in_service: finite(o.in_service).unwrap_or(0.0),
                arrival_rate: o.arrival_rate.and_then(finite),
                completion_rate: o.completion_rate.and_then(finite),
                ready: o.ready,
                starting: o.starting,
                stopping: o.stopping,
                fresh: o.fresh,
            },
            raw: finite(s.raw),
            desired: s.desired,
            needed: s.needed,
            essential: s.essential,
            granted: s.granted,
            clamps: s
                .clamps
                .iter()
                .map(|c| ClampDoc {
                    kind: c.kind.clone(),
                    from: c.from,
                    to: c.to,
                    why: c.why.clone(),
                })
                .collect(),
        }
    }
}

impl DecisionDoc {
    fn from_decision(d: &Decision) -> DecisionDoc {
        DecisionDoc {
            at: rfc3339(from_unix(d.at)),
            capacity: d.capacity,
            capacity_cpu_millis: d.capacity_cpu_millis,
            capacity_memory_mib: d.capacity_memory_mib,
            services: d.services.iter().map(ServiceDoc::from_decision).collect(),
        }
    }
}

/// The interval a time falls in: its start, in whole unix seconds.
fn interval_start(at: f64, step: u32) -> i64 {
    let step = f64::from(step.max(1));
    ((at / step).floor() * step) as i64
}

/// Summarises `decisions` (oldest first) into `step`-second intervals.
pub fn history(decisions: &[Decision], step: u32) -> Vec<PointDoc> {
    let mut points: Vec<(i64, PointDoc)> = Vec::new();
    for d in decisions {
        let start = interval_start(d.at, step);
        if points.last().is_none_or(|(s, _)| *s != start) {
            points.push((
                start,
                PointDoc {
                    at: rfc3339(DateTime::from_timestamp(start, 0).unwrap_or_default()),
                    decisions: 0,
                    capacity: d.capacity,
                    services: Vec::new(),
                },
            ));
        }
        let (_, point) = points.last_mut().expect("pushed above");
        point.decisions += 1;
        point.capacity = d.capacity;
        for s in &d.services {
            let o = &s.observation;
            let backlog = finite(o.backlog).unwrap_or(0.0);
            let in_service = finite(o.in_service).unwrap_or(0.0);
            match point.services.iter_mut().find(|p| p.service == s.service) {
                Some(p) => {
                    p.backlog_max = p.backlog_max.max(backlog);
                    p.in_service_max = p.in_service_max.max(in_service);
                    p.ready = o.ready;
                    p.starting = o.starting;
                    p.stopping = o.stopping;
                    p.desired = s.desired;
                    p.granted = s.granted;
                    p.held |= !o.fresh;
                }
                None => point.services.push(PointServiceDoc {
                    service: s.service.clone(),
                    backlog_max: backlog,
                    in_service_max: in_service,
                    ready: o.ready,
                    starting: o.starting,
                    stopping: o.stopping,
                    desired: s.desired,
                    granted: s.granted,
                    held: !o.fresh,
                }),
            }
        }
    }
    points.into_iter().map(|(_, p)| p).collect()
}

impl ScalerStatus {
    /// The document for `decisions` (oldest first, within the window) at `now`.
    pub fn build(decisions: &[Decision], now: DateTime<Utc>) -> ScalerStatus {
        ScalerStatus {
            now: rfc3339(now),
            latest: decisions.last().map(DecisionDoc::from_decision),
            history: HistoryDoc {
                window_seconds: WINDOW_SECONDS,
                resolution_seconds: HISTORY_STEP,
                points: history(decisions, HISTORY_STEP),
            },
        }
    }
}

/// The decisions of the last [`WINDOW_SECONDS`] before `now`.
async fn recent_decisions(state: &AppState, now: DateTime<Utc>) -> Result<Vec<Decision>, WebError> {
    Ok(state
        .store
        .decisions_since(unix(now) - f64::from(WINDOW_SECONDS))
        .await?)
}

/// `GET /v1/scaler`: the latest decision and the last hour's history.
pub async fn status(State(state): State<AppState>) -> Result<Response, WebError> {
    let now = Utc::now();
    let decisions = recent_decisions(&state, now).await?;
    let body =
        serde_json::to_vec(&ScalerStatus::build(&decisions, now)).map_err(WebError::internal)?;
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(CachePolicy::NoStore.apply(resp))
}

// ---- the charts ----------------------------------------------------------------------------

/// The SVG's coordinate system: the plot area inside a `WIDTH` x `HEIGHT` view box.
pub const WIDTH: f64 = 720.0;
pub const HEIGHT: f64 = 200.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 712.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 172.0;

/// Series colours, by service order; chosen to read on light and dark backgrounds.
const PALETTE: [&str; 6] = [
    "#2f6fdf", "#d9822b", "#1f9d6b", "#c4314b", "#8a56d6", "#6b7785",
];

/// One chart: axes and lines, in view-box coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// The `<title>`: what is charted.
    pub title: String,
    /// Horizontal grid lines with their value labels, bottom up.
    pub y_ticks: Vec<Tick>,
    /// Time labels along the bottom, oldest first.
    pub x_ticks: Vec<Tick>,
    pub series: Vec<Series>,
}

/// A grid line or axis label at `pos` (y for value ticks, x for time ticks).
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub pos: String,
    pub label: String,
}

/// One line. Intervals without decisions break it into several runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    pub colour: &'static str,
    /// Drawn dashed (targets, capacity).
    pub dashed: bool,
    /// SVG `points` attributes, one per unbroken run.
    pub runs: Vec<String>,
    /// The last value, for the legend.
    pub last: Option<String>,
}

/// Data for one line: `(unix seconds, value)`, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub name: String,
    pub colour: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// The smallest of 1, 2, 5 x 10^k at or above `v` (at least 1).
pub fn nice_ceiling(v: f64) -> f64 {
    if !v.is_finite() || v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * magnitude >= v - 1e-9 {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// Lays out `data` over the window `[end - window, end]` (unix seconds). Points outside the
/// window are dropped; two points more than `max_gap` seconds apart are not joined.
pub fn line_chart(
    title: &str,
    data: &[SeriesData],
    end: f64,
    window: f64,
    max_gap: f64,
) -> LineChart {
    let start = end - window;
    let top_value = nice_ceiling(
        data.iter()
            .flat_map(|s| s.points.iter())
            .filter(|(t, _)| *t >= start && *t <= end)
            .map(|(_, v)| *v)
            .fold(0.0, f64::max),
    );
    let x = |t: f64| LEFT + (t - start) / window * (RIGHT - LEFT);
    let y = |v: f64| BOTTOM - v.clamp(0.0, top_value) / top_value * (BOTTOM - TOP);
    let y_ticks = [0.0, 0.5, 1.0]
        .iter()
        .map(|f| Tick {
            pos: format!("{:.1}", y(top_value * f)),
            label: number(top_value * f),
        })
        .collect();
    let minutes = (window / 60.0).round() as i64;
    let x_ticks = (0..=4)
        .map(|i| {
            let ago = minutes - minutes * i / 4;
            Tick {
                pos: format!("{:.1}", x(end - ago as f64 * 60.0)),
                label: if ago == 0 {
                    "now".to_string()
                } else {
                    format!("−{ago} min")
                },
            }
        })
        .collect();
    let series = data
        .iter()
        .map(|s| {
            let mut runs: Vec<Vec<String>> = Vec::new();
            let mut previous: Option<f64> = None;
            let mut last = None;
            for &(t, v) in s
                .points
                .iter()
                .filter(|(t, v)| *t >= start && *t <= end && v.is_finite())
            {
                if previous.is_none_or(|p| t - p > max_gap) {
                    runs.push(Vec::new());
                }
                previous = Some(t);
                last = Some(v);
                runs.last_mut()
                    .expect("pushed above")
                    .push(format!("{:.1},{:.1}", x(t), y(v)));
            }
            Series {
                name: s.name.clone(),
                colour: s.colour,
                dashed: s.dashed,
                // A lone point is drawn as a short flat line so it shows.
                runs: runs
                    .into_iter()
                    .map(|r| {
                        if r.len() == 1 {
                            let (px, py) = r[0].split_once(',').expect("x,y");
                            let px: f64 = px.parse().unwrap_or(LEFT);
                            format!(
                                "{:.1},{py} {:.1},{py}",
                                (px - 1.5).max(LEFT),
                                (px + 1.5).min(RIGHT)
                            )
                        } else {
                            r.join(" ")
                        }
                    })
                    .collect(),
                last: last.map(number),
            }
        })
        .collect();
    LineChart {
        title: title.to_string(),
        y_ticks,
        x_ticks,
        series,
    }
}

/// What a service's backlog is, for a chart title: the two built-in services' metrics by name.
fn backlog_title(service: &str) -> String {
    match service {
        crate::scaler::demand::WEB => format!("{service}: in-flight requests"),
        crate::scaler::demand::WORKER => {
            format!("{service}: queue depth (due jobs weighted by priority, plus jobs in flight)")
        }
        _ => format!("{service}: backlog"),
    }
}

/// The dashboard's charts: one demand chart per service, then instances of every service.
pub fn charts(points: &[PointDoc], end: f64) -> Vec<LineChart> {
    let window = f64::from(WINDOW_SECONDS);
    let gap = f64::from(HISTORY_STEP) * 2.5;
    let mut services: Vec<String> = Vec::new();
    for p in points {
        for s in &p.services {
            if !services.contains(&s.service) {
                services.push(s.service.clone());
            }
        }
    }
    let colour = |i: usize| PALETTE[i % PALETTE.len()];
    let at = |p: &PointDoc| {
        DateTime::parse_from_rfc3339(&p.at).map_or(0.0, |t| unix(t.with_timezone(&Utc)))
            + f64::from(HISTORY_STEP) / 2.0
    };
    let series =
        |name: &str, i: usize, dashed: bool, f: &dyn Fn(&PointServiceDoc) -> f64| SeriesData {
            name: name.to_string(),
            colour: colour(i),
            dashed,
            points: points
                .iter()
                .filter_map(|p| {
                    let s = p.services.iter().find(|s| s.service == services[i])?;
                    Some((at(p), f(s)))
                })
                .collect(),
        };
    let mut out: Vec<LineChart> = (0..services.len())
        .map(|i| {
            line_chart(
                &backlog_title(&services[i]),
                &[series("highest in each interval", i, false, &|s| {
                    s.backlog_max
                })],
                end,
                window,
                gap,
            )
        })
        .collect();
    let mut instances: Vec<SeriesData> = Vec::new();
    for (i, name) in services.iter().enumerate() {
        instances.push(series(
            &format!("{name}: live (ready + starting)"),
            i,
            false,
            &|s| f64::from(s.ready + s.starting),
        ));
        instances.push(series(&format!("{name}: granted"), i, true, &|s| {
            f64::from(s.granted)
        }));
    }
    if !points.is_empty() {
        instances.push(SeriesData {
            name: "capacity".into(),
            colour: PALETTE[PALETTE.len() - 1],
            dashed: true,
            points: points
                .iter()
                .map(|p| (at(p), f64::from(p.capacity)))
                .collect(),
        });
    }
    out.push(line_chart(
        "Instances per service",
        &instances,
        end,
        window,
        gap,
    ));
    out
}

// ---- the page ------------------------------------------------------------------------------

/// One row of the latest decision's table.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub service: String,
    pub backlog: String,
    pub in_service: String,
    pub arrival_rate: String,
    pub completion_rate: String,
    pub ready: u32,
    pub starting: u32,
    pub stopping: u32,
    pub raw: String,
    pub desired: u32,
    pub needed: String,
    pub essential: String,
    pub granted: u32,
    pub fresh: bool,
}

/// One clamp of the latest decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ClampRow {
    pub service: String,
    pub kind: String,
    pub from: u32,
    pub to: u32,
    pub why: String,
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |r| format!("{r:.2}/s"))
}

/// `/scaler`.
#[derive(Template)]
#[template(path = "scaler/dashboard.html")]
pub struct DashboardPage {
    pub chrome: Chrome,
    pub refresh_seconds: u32,
    pub history_step: u32,
    /// `2026-11-29 02:00:00 UTC`, when the latest decision was made.
    pub latest_at: Option<String>,
    pub latest_iso: Option<String>,
    /// `6 units`, `6 units, 4000m CPU, 8192 MiB memory`.
    pub capacity: Option<String>,
    pub rows: Vec<ServiceRow>,
    pub clamps: Vec<ClampRow>,
    pub charts: Vec<LineChart>,
    pub decisions: usize,
    pub width: f64,
    pub height: f64,
}

impl DashboardPage {
    pub fn build(decisions: &[Decision], now: DateTime<Utc>) -> DashboardPage {
        let status = ScalerStatus::build(decisions, now);
        let latest = decisions.last();
        let rows = latest
            .map(|d| {
                d.services
                    .iter()
                    .map(|s| {
                        let o = &s.observation;
                        ServiceRow {
                            service: s.service.clone(),
                            backlog: number(o.backlog),
                            in_service: number(o.in_service),
                            arrival_rate: rate(o.arrival_rate),
                            completion_rate: rate(o.completion_rate),
                            ready: o.ready,
                            starting: o.starting,
                            stopping: o.stopping,
                            raw: if s.raw.is_finite() {
                                format!("{:.2}", s.raw)
                            } else {
                                "—".into()
                            },
                            desired: s.desired,
                            needed: s.needed.map_or("—".into(), |n| n.to_string()),
                            essential: s.essential.map_or("—".into(), |n| n.to_string()),
                            granted: s.granted,
                            fresh: o.fresh,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let clamps = latest
            .map(|d| {
                d.services
                    .iter()
                    .flat_map(|s| {
                        s.clamps.iter().map(|c| ClampRow {
                            service: s.service.clone(),
                            kind: c.kind.clone(),
                            from: c.from,
                            to: c.to,
                            why: c.why.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let charts = if decisions.is_empty() {
            Vec::new()
        } else {
            charts(&status.history.points, unix(now))
        };
        DashboardPage {
            chrome: Chrome::new("Microscaler"),
            refresh_seconds: REFRESH_SECONDS,
            history_step: HISTORY_STEP,
            latest_at: latest.map(|d| from_unix(d.at).format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            latest_iso: latest.map(|d| rfc3339(from_unix(d.at))),
            capacity: latest.map(|d| {
                Capacity {
                    units: d.capacity,
                    cpu_millis: d.capacity_cpu_millis,
                    memory_mib: d.capacity_memory_mib,
                }
                .to_string()
            }),
            rows,
            clamps,
            charts,
            decisions: decisions.len(),
            width: WIDTH,
            height: HEIGHT,
        }
    }
}

/// `GET /scaler`: the live dashboard.
pub async fn dashboard(State(state): State<AppState>) -> Result<Response, WebError> {
    let now = Utc::now();
    let decisions = recent_decisions(&state, now).await?;
    let body = DashboardPage::build(&decisions, now)
        .render()
        .map_err(WebError::internal)?;
    let resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    Ok(CachePolicy::NoStore.apply(resp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::{Clamp, Observation};

    fn decision(at: f64, web_backlog: f64, worker_backlog: f64, web_ready: u32) -> Decision {
        let service = |name: &str, backlog: f64, ready: u32, fresh: bool| ServiceDecision {
            service: name.into(),
            observation: Observation {
                now: at - 1000.0,
                backlog,
                in_service: backlog.min(1.0),
                arrival_rate: Some(0.5),
                completion_rate: None,
                ready,
                starting: 1,
                stopping: 0,
                fresh,
            },
            raw: f64::NAN,
            desired: ready + 1,
            needed: Some(ready),
            essential: Some(ready.saturating_sub(1)),
            granted: ready,
            clamps: vec![Clamp {
                kind: "capacity".into(),
                from: ready + 1,
                to: ready,
                why: "full".into(),
            }],
        };
        Decision {
            at,
            capacity: 6,
            capacity_cpu_millis: None,
            capacity_memory_mib: None,
            services: vec![
                service("web", web_backlog, web_ready, true),
                service("worker", worker_backlog, 2, worker_backlog < 100.0),
            ],
        }
    }

    const T0: f64 = 1_714_564_800.0; // a multiple of 15

    #[test]
    fn history_keeps_the_peak_and_the_last_counts_per_interval() {
        let ds = [
            decision(T0 + 1.0, 3.0, 10.0, 1),
            decision(T0 + 7.0, 9.0, 150.0, 2),
            decision(T0 + 14.9, 4.0, 20.0, 3),
            // A gap: the next interval with decisions starts at T0 + 45.
            decision(T0 + 50.0, 1.0, 0.0, 4),
        ];
        let h = history(&ds, 15);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].at, "2024-05-01T12:00:00.000Z");
        assert_eq!(h[0].decisions, 3);
        let web = &h[0].services[0];
        assert_eq!(
            (web.service.as_str(), web.backlog_max, web.in_service_max),
            ("web", 9.0, 1.0)
        );
        assert_eq!(
            (web.ready, web.starting, web.granted, web.desired),
            (3, 1, 3, 4)
        );
        assert!(!web.held);
        let worker = &h[0].services[1];
        assert_eq!(worker.backlog_max, 150.0);
        assert!(worker.held, "one reading in the interval was not fresh");
        assert_eq!(h[1].at, "2024-05-01T12:00:45.000Z");
        assert_eq!(h[1].services[0].ready, 4);
        assert!(!h[1].services[1].held);
        assert!(history(&[], 15).is_empty());
    }

    #[test]
    fn status_has_the_latest_decision_without_internal_clock_and_no_nan() {
        let ds = [decision(T0, 1.0, 2.0, 1), decision(T0 + 2.5, 5.0, 6.0, 2)];
        let s = ScalerStatus::build(&ds, from_unix(T0 + 3.0));
        assert_eq!(s.now, "2024-05-01T12:00:03.000Z");
        let latest = s.latest.unwrap();
        assert_eq!(latest.at, "2024-05-01T12:00:02.500Z");
        assert_eq!(latest.services[0].inputs.backlog, 5.0);
        assert_eq!(latest.services[0].raw, None, "NaN is not JSON");
        let json = serde_json::to_value(&latest).unwrap();
        assert!(json["services"][0]["inputs"].get("now").is_none());
        assert_eq!(s.history.resolution_seconds, HISTORY_STEP);
        assert!(ScalerStatus::build(&[], from_unix(T0)).latest.is_none());
    }

    #[test]
    fn nice_ceilings() {
        for (v, want) in [
            (0.0, 1.0),
            (0.3, 1.0),
            (1.0, 1.0),
            (1.2, 2.0),
            (2.0, 2.0),
            (3.0, 5.0),
            (7.0, 10.0),
            (10.0, 10.0),
            (11.0, 20.0),
            (300.0, 500.0),
            (f64::NAN, 1.0),
        ] {
            assert_eq!(nice_ceiling(v), want, "{v}");
        }
    }

    #[test]
    fn chart_geometry_maps_time_and_value_into_the_plot() {
        let end = T0 + 3600.0;
        let data = [SeriesData {
            name: "s".into(),
            colour: PALETTE[0],
            dashed: false,
            points: vec![
                (T0 - 10.0, 99.0), // before the window: dropped, does not set the scale
                (T0, 0.0),
                (T0 + 1800.0, 4.0),
                (T0 + 1815.0, 2.0),
                // A gap longer than max_gap starts a new run; a lone point is a short line.
                (end, 1.0),
            ],
        }];
        let c = line_chart("t", &data, end, 3600.0, 37.5);
        // Scale 0..5 (nice ceiling of 4).
        let labels: Vec<&str> = c.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0", "2.5", "5"]);
        assert_eq!(c.y_ticks[0].pos, format!("{BOTTOM:.1}"));
        assert_eq!(c.y_ticks[2].pos, format!("{TOP:.1}"));
        let xs: Vec<&str> = c.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(xs, ["−60 min", "−45 min", "−30 min", "−15 min", "now"]);
        assert_eq!(c.x_ticks[0].pos, format!("{LEFT:.1}"));
        assert_eq!(c.x_ticks[4].pos, format!("{RIGHT:.1}"));
        let s = &c.series[0];
        assert_eq!(
            s.runs,
            [
                "48.0,172.0 49.5,172.0",
                "380.0,42.4 382.8,107.2",
                "710.5,139.6 712.0,139.6"
            ]
        );
        assert_eq!(s.last.as_deref(), Some("1"));
    }

    #[test]
    fn charts_per_service_and_instances_with_capacity() {
        let ds: Vec<Decision> = (0..10)
            .map(|i| decision(T0 + f64::from(i) * 15.0, f64::from(i), 5.0, 2))
            .collect();
        let points = history(&ds, HISTORY_STEP);
        let c = charts(&points, T0 + 200.0);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].title, "web: in-flight requests");
        assert!(c[1].title.starts_with("worker: queue depth"));
        assert_eq!(c[2].title, "Instances per service");
        let names: Vec<&str> = c[2].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "web: live (ready + starting)",
                "web: granted",
                "worker: live (ready + starting)",
                "worker: granted",
                "capacity"
            ]
        );
        assert_eq!(c[2].series[0].last.as_deref(), Some("3"));
        assert_eq!(c[2].series[4].last.as_deref(), Some("6"));
        assert!(c[2].series[1].dashed && !c[2].series[0].dashed);
        assert_eq!(c[0].series[0].runs.len(), 1, "15 s apart is one run");
    }
}
