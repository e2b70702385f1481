//! A fixed schedule of instance counts: `simulate --policy schedule --schedule FILE.csv`.
//!
//! What KEDA's cron scaler or an operator's plan does: from a given second on, ask for a
//! given number of instances of a service, whatever the load. The simulator runs it under the
//! same allocator as every other policy, so a schedule that asks for more than the capacity is
//! cut by priority like any other request. Two uses:
//!
//! - a what-if: compare the plan an operator would write by hand (or ran last week) with the
//!   autoscalers on the same demand;
//! - a bound: `scripts/scaler-oracle` searches schedules written *knowing* the scenario's
//!   demand, and so tells how far any policy could go within a budget of scaling actions
//!   (`docs/BENCHMARKS.md`, "What a schedule written with foresight can do").
//!
//! The CSV: a header `second,NAME[,NAME...]` naming services of the scenario (`web`,
//! `worker`), then rows of a second (non-negative, strictly increasing, at most one day) and a
//! whole count per named service; an empty field leaves that service's count as it was.
//! Before a service's first count it keeps the count it starts with. Blank lines and lines
//! starting with `#` are skipped, as in a trace.

use super::{CsvRows, TraceError};

/// Counts larger than this are a typo, not a plan.
pub const MAX_SCHEDULED_COUNT: u32 = 10_000;

/// A parsed schedule: for each named service, `(second, count)` in time order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schedule {
    pub services: Vec<(String, Vec<(f64, u32)>)>,
}

impl Schedule {
    /// The steps scheduled for `service`, if the schedule names it.
    pub fn steps(&self, service: &str) -> Option<&[(f64, u32)]> {
        self.services
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, steps)| steps.as_slice())
    }

    /// The names the schedule gives counts for, in column order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|(name, _)| name.as_str())
    }
}

/// The count `steps` ask for at `now`: the last step at or before it (a tick on the step's
/// second applies it), or `None` before the first.
pub fn count_at(steps: &[(f64, u32)], now: f64) -> Option<u32> {
    steps
        .iter()
        .take_while(|(from, _)| *from <= now + 1e-9)
        .last()
        .map(|&(_, n)| n)
}

/// Parse a schedule CSV (see the module documentation).
pub fn parse_schedule(text: &str) -> Result<Schedule, TraceError> {
    let mut rows = CsvRows::new(text, "schedule", "second,web,worker")?;
    let names = rows.columns[1..].to_vec();
    if names.is_empty() {
        return Err(
            rows.header_error("no service columns: expected e.g. `second,web,worker`".into())
        );
    }
    for (i, name) in names.iter().enumerate() {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if name.is_empty() || !name.chars().all(valid) {
            return Err(rows.header_error(format!("{name:?} is not a service name")));
        }
        if names[..i].contains(name) {
            return Err(rows.header_error(format!("service {name:?} appears twice")));
        }
    }
    let mut services: Vec<(String, Vec<(f64, u32)>)> =
        names.iter().map(|n| (n.to_string(), Vec::new())).collect();
    for row in rows.by_ref() {
        let (n, second, fields) = row?;
        for ((name, steps), field) in services.iter_mut().zip(&fields[1..]) {
            if field.is_empty() {
                continue;
            }
            match field.parse::<u32>() {
                Ok(count) if count <= MAX_SCHEDULED_COUNT => steps.push((second, count)),
                _ => {
                    return Err(TraceError {
                        line: n,
                        message: format!(
                            "{name}: expected a whole count from 0 to {MAX_SCHEDULED_COUNT}, got {field:?}"
                        ),
                    });
                }
            }
        }
    }
    rows.finish()?;
    Ok(Schedule { services })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_give_counts_from_their_second_on() {
        let s = parse_schedule("# plan\nsecond,web,worker\n0,8,8\n\n120, 10 ,\n300,,4\n").unwrap();
        assert_eq!(s.names().collect::<Vec<_>>(), ["web", "worker"]);
        let web = s.steps("web").unwrap();
        assert_eq!(web, [(0.0, 8), (120.0, 10)]);
        assert_eq!(s.steps("worker").unwrap(), [(0.0, 8), (300.0, 4)]);
        assert_eq!(s.steps("db"), None);
        assert_eq!(count_at(web, 119.9), Some(8));
        assert_eq!(count_at(web, 120.0), Some(10));
        assert_eq!(count_at(&[(5.0, 3)], 4.5), None);
    }

    #[test]
    fn malformed_schedules_say_which_line() {
        let e = |text: &str| parse_schedule(text).unwrap_err();
        assert_eq!(e("").line, 1);
        assert!(e("sec,web\n0,1\n").message.contains("`second`"));
        assert!(e("second\n0\n").message.contains("no service columns"));
        assert!(e("second,web,web\n0,1,1\n").message.contains("twice"));
        assert!(
            e("second,we<b>\n0,1\n")
                .message
                .contains("not a service name")
        );
        assert!(e("second,web\n").message.contains("no rows"));
        let bad = e("second,web,worker\n0,1,1\n10,2\n");
        assert_eq!(
            (bad.line, bad.message.as_str()),
            (3, "expected 3 fields, got 2")
        );
        assert!(e("second,web\n0,-1\n").message.contains("whole count"));
        assert!(e("second,web\n0,2.5\n").message.contains("whole count"));
        assert!(e("second,web\n0,10001\n").message.contains("whole count"));
        assert!(e("second,web\n10,1\n10,2\n").message.contains("not after"));
        assert!(e("second,web\nNaN,1\n").message.contains("non-negative"));
        assert!(e("second,web\n90000,1\n").message.contains("one day"));
    }
}
