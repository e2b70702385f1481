//! `simulate --svg`: queue (or in-flight) and instances per service over time, as a
//! hand-written SVG with two panels. Every text is escaped.

use std::fmt::Write;

use super::Report;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;
/// A value per (sample index, service index).
type Series<'a> = Box<dyn Fn(usize, usize) -> f64 + 'a>;

const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];

/// Escape text for SVG (XML) content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Render the report's timeline.
pub fn render_svg(report: &Report) -> String {
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let duration = report.duration_s.max(1.0);
    let x = |t: f64| LEFT + plot_w * t / duration;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(&format!(
            "scenario {} · policy {} · start delay {} s · seed {}",
            report.scenario, report.policy, report.start_delay_s, report.seed
        ))
    );
    let names: Vec<&str> = report.services.iter().map(|r| r.name.as_str()).collect();
    let panels: [(&str, Series); 2] = [
        (
            "backlog (worker) / in flight (web)",
            Box::new(|i, k| report.timeline[i].backlog[k]),
        ),
        (
            "live instances (capacity dashed)",
            Box::new(|i, k| f64::from(report.timeline[i].live[k])),
        ),
    ];
    for (p, (title, value)) in panels.iter().enumerate() {
        let y0 = TOP + p as f64 * (PANEL + GAP);
        let mut top: f64 = if p == 1 {
            f64::from(report.capacity)
        } else {
            1.0
        };
        for i in 0..report.timeline.len() {
            for k in 0..names.len() {
                top = top.max(value(i, k));
            }
        }
        let top = nice(top);
        let y = |v: f64| y0 + PANEL - PANEL * v / top;
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#999"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{}">{}</text>"#,
            y0 - 6.0,
            escape(title)
        );
        for frac in [0.0, 0.5, 1.0] {
            let v = top * frac;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y(v) + 4.0,
                fmt_num(v)
            );
        }
        if p == 1 {
            let cy = y(f64::from(report.capacity));
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{cy:.1}" y2="{cy:.1}" stroke="#555" stroke-dasharray="4 3"/>"##,
                LEFT + plot_w
            );
        }
        for (k, name) in names.iter().enumerate() {
            let mut points = String::new();
            for (i, sample) in report.timeline.iter().enumerate() {
                let _ = write!(points, "{:.1},{:.1} ", x(sample.t), y(value(i, k)));
            }
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"><title>{}</title></polyline>"#,
                COLOURS[k % COLOURS.len()],
                points.trim_end(),
                escape(name)
            );
        }
    }
    // Legend and time axis.
    let axis_y = TOP + 2.0 * PANEL + GAP + 16.0;
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{axis_y}">0 s</text><text x="{}" y="{axis_y}" text-anchor="end">{} s</text>"#,
        LEFT + plot_w,
        fmt_num(duration)
    );
    for (k, name) in names.iter().enumerate() {
        let lx = LEFT + 200.0 + k as f64 * 140.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{axis_y}">{}</text>"#,
            axis_y - 10.0,
            COLOURS[k % COLOURS.len()],
            lx + 16.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A round upper bound for an axis.
fn nice(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a & "b">'"#),
            "&lt;a &amp; &quot;b&quot;&gt;&#39;"
        );
        assert_eq!(escape("a\nb"), "a b");
    }

    #[test]
    fn nice_bounds() {
        assert_eq!(nice(0.3), 1.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(12.0), 20.0);
        assert_eq!(nice(230.0), 250.0);
    }
}
