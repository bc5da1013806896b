//! Presentation: whether to colour, plain-text tables, and number formatting.

use std::io::IsTerminal;

use crate::cli::ColorMode;

/// How a piece of text is shown on a colour terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// As is.
    Plain,
    /// Bold (table headers, section titles).
    Bold,
    /// Faint (absent or uninteresting values).
    Dim,
    /// Green (alive, healthy).
    Green,
    /// Yellow (stale, closed, attention).
    Yellow,
    /// Red (dead, damaged, errors).
    Red,
}

impl Style {
    /// The ANSI SGR parameters for this style, `None` for plain text.
    fn sgr(self) -> Option<&'static str> {
        match self {
            Style::Plain => None,
            Style::Bold => Some("1"),
            Style::Dim => Some("2"),
            Style::Green => Some("32"),
            Style::Yellow => Some("33"),
            Style::Red => Some("1;31"),
        }
    }
}

/// Where output goes and whether it is coloured.
#[derive(Clone, Copy, Debug)]
pub struct Out {
    color: bool,
    tty: bool,
}

impl Out {
    /// Decides once, from `mode`, whether stdout gets colour: `auto` colours a
    /// terminal unless `NO_COLOR` is set (<https://no-color.org>) or `TERM=dumb`.
    pub fn new(mode: ColorMode) -> Self {
        let tty = std::io::stdout().is_terminal();
        let color = match mode {
            ColorMode::Always => true,
            ColorMode::Never => false,
            ColorMode::Auto => {
                tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        };
        Out { color, tty }
    }

    /// Whether stdout is a terminal (for redrawing in place).
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// `text` in `style`, or as is without colour.
    pub fn paint(&self, text: &str, style: Style) -> String {
        match (self.color, style.sgr()) {
            (true, Some(code)) => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }
}

/// Horizontal alignment of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// One table cell: its text and how to show it.
#[derive(Clone, Debug)]
pub struct Cell {
    text: String,
    style: Style,
}

impl Cell {
    /// A cell shown as is.
    pub fn plain(text: impl Into<String>) -> Self {
        Cell::styled(text, Style::Plain)
    }

    /// A cell shown in `style` on a colour terminal.
    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Cell {
            text: text.into(),
            style,
        }
    }
}

/// A table of aligned columns separated by two spaces, with a bold header.
#[derive(Debug)]
pub struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: &[(&'static str, Align)]) -> Self {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are empty, extra ones are ignored).
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, each ending in `\n`. Widths are
    /// measured on the text before colouring, so colour never shifts columns.
    pub fn render(&self, out: &Out) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|(h, _)| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(&cell.text));
            }
        }
        let mut s = String::new();
        let header: Vec<Cell> = self
            .header
            .iter()
            .map(|(h, _)| Cell::styled(*h, Style::Bold))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, ((_, align), w)) in self.header.iter().zip(&widths).enumerate() {
                let empty = Cell::plain("");
                let cell = row.get(i).unwrap_or(&empty);
                let pad = " ".repeat(w - width(&cell.text).min(*w));
                let last = i + 1 == self.header.len();
                if i > 0 {
                    line.push_str("  ");
                }
                if *align == Align::Right {
                    line.push_str(&pad);
                }
                line.push_str(&out.paint(&cell.text, cell.style));
                if *align == Align::Left && !last {
                    line.push_str(&pad);
                }
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s
    }
}

/// Bytes in binary units: `512 B`, `64 KiB`, `1.5 MiB` (exact values lose their
/// decimal).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // 1023.95 and up would print as "1024.0": show it in the next unit instead.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if n.is_multiple_of(1 << (10 * (unit + 1))) {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A rate or a count with an SI suffix: `950`, `12.3k`, `4.56M`.
pub fn si(x: f64) -> String {
    let (v, suffix) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        return format!("{x:.0}");
    };
    if v >= 100.0 {
        format!("{v:.0}{suffix}")
    } else if v >= 10.0 {
        format!("{v:.1}{suffix}")
    } else {
        format!("{v:.2}{suffix}")
    }
}

/// Bytes per second in binary units: `1.5 MiB/s`.
pub fn byte_rate(x: f64) -> String {
    format!("{}/s", bytes(x.max(0.0).round() as u64))
}

/// `part` of `whole` as a percentage with one decimal.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1 << 20), "1 MiB");
        assert_eq!(bytes((1 << 20) - 40), "1.0 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(si(999.0), "999");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(4_560_000.0), "4.56M");
        assert_eq!(byte_rate(2048.0), "2 KiB/s");
        assert_eq!(percent(1, 4), "25.0%");
        assert_eq!(percent(1, 0), "-");
    }

    /// `rows` under `header`, rendered with or without colour.
    fn render(color: bool, header: &[(&'static str, Align)], rows: Vec<Vec<Cell>>) -> String {
        let mut t = Table::new(header);
        for r in rows {
            t.row(r);
        }
        t.render(&Out { color, tty: color })
    }

    #[test]
    fn tables_align_without_colour() {
        let s = render(
            false,
            &[("NAME", Align::Left), ("N", Align::Right)],
            vec![
                vec![Cell::plain("/a"), Cell::plain("5")],
                vec![Cell::styled("/long", Style::Red), Cell::plain("12345")],
            ],
        );
        assert_eq!(s, "NAME       N\n/a         5\n/long  12345\n");
    }

    #[test]
    fn colour_does_not_shift_columns() {
        let s = render(
            true,
            &[("A", Align::Left), ("B", Align::Left)],
            vec![vec![Cell::styled("xx", Style::Green), Cell::plain("y")]],
        );
        assert!(s.contains("\x1b[32mxx\x1b[0m  y"), "{s:?}");
    }
}
