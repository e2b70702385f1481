//! The layer-size bar chart on image pages, drawn as inline SVG on the server.
//!
//! [`layer_chart`] is pure geometry: one horizontal bar per layer, its length proportional to
//! the layer's share of the largest layer, with the layer number, size and command written
//! over it. The template (`templates/image/_layers.html`) draws the elements, so every text
//! goes through askama's escaping. Lengths are percentages of the chart's width and rows are
//! fixed in pixels, so the chart fills any screen without scaling its text.

use super::format;

/// Row pitch and bar thickness, in pixels.
pub const ROW_HEIGHT: u32 = 26;
pub const BAR_HEIGHT: u32 = 20;
/// Bars of non-empty layers are at least this long (percent), so tiny layers stay visible.
const MIN_PERCENT: f64 = 0.4;
/// Command text written over a bar is cut to this many characters.
const MAX_COMMAND_CHARS: usize = 90;

/// The chart: rows top to bottom, base layer first.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerChart {
    /// Total height in pixels.
    pub height: u32,
    pub bars: Vec<Bar>,
}

/// One layer's bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// 1-based layer number.
    pub number: usize,
    /// Top of the bar, pixels.
    pub y: u32,
    /// Baseline of the text, pixels.
    pub text_y: u32,
    /// Length as a percentage of the chart width, formatted for an SVG attribute (`42.50`).
    pub width: String,
    /// The same length as a number, for tests and ordering.
    pub percent: f64,
    /// `#3 · 11.8 MiB · RUN apt-get install …`
    pub text: String,
    /// The full (printable) command and exact size, for the bar's tooltip.
    pub title: String,
}

/// A chart of `(size in bytes, command)` per layer, base layer first. `None` when there is
/// nothing to draw: no layers, or no sizes known (schema-1 images record none).
pub fn layer_chart(layers: &[(u64, Option<&str>)]) -> Option<LayerChart> {
    let largest = layers.iter().map(|(size, _)| *size).max()?;
    if largest == 0 {
        return None;
    }
    let bars = layers
        .iter()
        .enumerate()
        .map(|(i, (size, command))| {
            let percent = if *size == 0 {
                0.0
            } else {
                (*size as f64 / largest as f64 * 100.0).max(MIN_PERCENT)
            };
            let percent = (percent * 100.0).round() / 100.0;
            let command = command.map(format::printable);
            let y = i as u32 * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2;
            let shown = command
                .as_deref()
                .map(|c| {
                    let one_line = c.split_whitespace().collect::<Vec<_>>().join(" ");
                    let mut short: String = one_line.chars().take(MAX_COMMAND_CHARS).collect();
                    if one_line.chars().count() > MAX_COMMAND_CHARS {
                        short.push('…');
                    }
                    format!(" · {short}")
                })
                .unwrap_or_default();
            Bar {
                number: i + 1,
                y,
                text_y: y + BAR_HEIGHT - 6,
                width: format!("{percent:.2}"),
                percent,
                text: format!("#{} · {}{shown}", i + 1, format::size(*size)),
                title: format!(
                    "Layer {}: {} bytes{}",
                    i + 1,
                    size,
                    command.map(|c| format!("\n{c}")).unwrap_or_default()
                ),
            }
        })
        .collect::<Vec<_>>();
    Some(LayerChart {
        height: bars.len() as u32 * ROW_HEIGHT,
        bars,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_proportional_to_the_largest_layer() {
        let chart = layer_chart(&[
            (1_000_000, Some("ADD rootfs.tar /")),
            (4_000_000, Some("RUN apt-get install -y curl")),
            (2_000_000, None),
        ])
        .unwrap();
        let widths: Vec<f64> = chart.bars.iter().map(|b| b.percent).collect();
        assert_eq!(widths, [25.0, 100.0, 50.0]);
        assert_eq!(chart.bars[1].width, "100.00");
        assert_eq!(chart.height, 3 * ROW_HEIGHT);
        assert_eq!(chart.bars[2].y, 2 * ROW_HEIGHT + 3);
        assert_eq!(chart.bars[0].text, "#1 · 976.6 KiB · ADD rootfs.tar /");
        assert_eq!(chart.bars[2].text, "#3 · 1.9 MiB");
        assert_eq!(
            chart.bars[1].title,
            "Layer 2: 4000000 bytes\nRUN apt-get install -y curl"
        );
    }

    #[test]
    fn tiny_layers_stay_visible_and_empty_ones_do_not_draw() {
        let chart = layer_chart(&[(100, None), (0, None), (1_000_000_000, None)]).unwrap();
        assert_eq!(chart.bars[0].percent, MIN_PERCENT);
        assert_eq!(chart.bars[1].percent, 0.0);
        assert_eq!(chart.bars[2].percent, 100.0);
    }

    #[test]
    fn nothing_to_draw_gives_no_chart() {
        assert_eq!(layer_chart(&[]), None);
        assert_eq!(layer_chart(&[(0, Some("RUN true")), (0, None)]), None);
    }

    #[test]
    fn long_and_hostile_commands_are_shortened_and_made_visible() {
        let long = format!("RUN echo {}\u{1b}", "x".repeat(200));
        let chart = layer_chart(&[(10, Some(&long))]).unwrap();
        let bar = &chart.bars[0];
        assert!(bar.text.ends_with('…'));
        assert!(bar.text.chars().count() < 120);
        assert!(bar.title.ends_with("\\u{1b}"));
        let multi = layer_chart(&[(10, Some("RUN a &&\n    b"))]).unwrap();
        assert_eq!(multi.bars[0].text, "#1 · 10 B · RUN a && b");
    }
}
