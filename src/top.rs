//! `mesh top`: a live table of the busiest paths, refreshed in place until `q`.
//!
//! The rows come from the control plane's tap stream, aggregated by
//! [`mesh_viz::tap::Top`] exactly as `linkerd viz top` does; this module only draws them
//! (ratatui over crossterm, in the alternate screen) with Linkerd's columns and widths: Source,
//! Destination and Path as wide as their longest value, Method 10, Count/Best/Worst/Last 6 and
//! Success Rate 12, numbers right-aligned, two spaces between columns.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use mesh_viz::tap::client::TapStream;
use mesh_viz::tap::{ProxyState, ProxyStatus, TOP_HEADERS, TapLine, Top, TopRow};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

/// How often the screen is redrawn.
const REFRESH: Duration = Duration::from_millis(200);

/// How often the input thread checks whether to stop.
const INPUT_POLL: Duration = Duration::from_millis(100);

/// Status lines (failed proxies, stream errors) shown above the table, at most.
const MAX_NOTICES: usize = 3;

/// Columns: Linkerd's minimum widths; `None` for the flexible ones.
const WIDTHS: [Option<u16>; 9] = [
    None,
    None,
    Some(10),
    None,
    Some(6),
    Some(6),
    Some(6),
    Some(6),
    Some(12),
];

/// Right-aligned columns: the numbers.
const RIGHT: [bool; 9] = [false, false, false, false, true, true, true, true, true];

/// What the screen shows.
#[derive(Debug, Default)]
pub(crate) struct TopView {
    /// The rows, busiest first.
    pub(crate) rows: Vec<TopRow>,
    /// The proxies being tapped, as `namespace/name`.
    pub(crate) tapping: Vec<String>,
    /// What went wrong (failed proxies, stream errors), latest last.
    pub(crate) notices: Vec<String>,
    /// Whether the stream has ended.
    pub(crate) ended: bool,
}

/// Runs `mesh top` on a tap stream until the user presses `q` (or Esc, or Ctrl-C): the table
/// is redrawn in place every 200 ms in the terminal's alternate screen, which is restored on
/// the way out (and on panic). When the stream ends the last table stays up until `q`.
pub(crate) async fn run_top(mut lines: TapStream) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (quit_tx, mut quit) = tokio::sync::mpsc::channel::<()>(1);
    let input = {
        let stop = stop.clone();
        std::thread::spawn(move || read_keys(&stop, &quit_tx))
    };

    let mut top = Top::new();
    let mut view = TopView::default();
    let mut tick = tokio::time::interval(REFRESH);
    let result = loop {
        tokio::select! {
            line = lines.next(), if !view.ended => match line {
                Some(Ok(line)) => {
                    view.observe(&line);
                    top.insert_line(&line);
                }
                Some(Err(e)) => view.notice(e.to_string()),
                None => view.ended = true,
            },
            _ = quit.recv() => break Ok(()),
            _ = tick.tick() => {
                view.rows = top.rows();
                if let Err(e) = terminal.draw(|frame| draw(frame, &view)) {
                    break Err(e);
                }
            }
        }
    };

    stop.store(true, Ordering::Relaxed);
    let _ = input.join();
    ratatui::try_restore()?;
    result
}

/// Reads keys until `q`, Esc or Ctrl-C (then tells `quit`), or until `stop` is set.
fn read_keys(stop: &AtomicBool, quit: &tokio::sync::mpsc::Sender<()>) {
    while !stop.load(Ordering::Relaxed) {
        match event::poll(INPUT_POLL) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => break,
        }
        let Ok(Event::Key(key)) = event::read() else {
            continue;
        };
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if key.kind == KeyEventKind::Press
            && (matches!(key.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) || ctrl_c)
        {
            break;
        }
    }
    // Quitting, or the terminal is gone: either way the table is done.
    let _ = quit.try_send(());
}

// === impl TopView ===

impl TopView {
    /// Notes what a status line says about the tapped proxies.
    pub(crate) fn observe(&mut self, line: &TapLine) {
        let TapLine::Proxy(status) = line else {
            return;
        };
        let name = format!("{}/{}", status.namespace, status.workload);
        match status.state {
            ProxyState::Tapping => self.tapping.push(name),
            ProxyState::Ended => self.tapping.retain(|n| *n != name),
            ProxyState::Failed => {
                self.tapping.retain(|n| *n != name);
                self.notice(ProxyStatus::to_string(status));
            }
        }
    }

    /// Adds a line to the notices, keeping the latest few.
    pub(crate) fn notice(&mut self, notice: String) {
        self.notices.push(notice);
        let excess = self.notices.len().saturating_sub(MAX_NOTICES);
        self.notices.drain(..excess);
    }

    fn status(&self) -> String {
        if self.ended {
            "Tap stream terminated".to_owned()
        } else if self.tapping.is_empty() {
            "waiting for proxies...".to_owned()
        } else {
            format!("tapping {}", self.tapping.join(", "))
        }
    }
}

/// Draws the view: a help line, the status, notices, a blank line, then the table.
pub(crate) fn draw(frame: &mut Frame<'_>, view: &TopView) {
    let header_lines = 2 + u16::try_from(view.notices.len()).unwrap_or(0);
    let [head, _, body] = Layout::vertical([
        Constraint::Length(header_lines),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(frame.area());

    let mut lines = vec![Line::from("(press q to quit)"), Line::from(view.status())];
    lines.extend(view.notices.iter().map(|n| Line::from(n.as_str())));
    frame.render_widget(Paragraph::new(lines), head);
    frame.render_widget(table(&view.rows), body);
}

/// The table of `rows`, with Linkerd's columns.
pub(crate) fn table(rows: &[TopRow]) -> Table<'static> {
    let cells: Vec<[String; 9]> = rows.iter().map(TopRow::cells).collect();
    let widths: Vec<Constraint> = (0..9)
        .map(|col| {
            let width = WIDTHS[col].unwrap_or_else(|| {
                let longest = cells
                    .iter()
                    .map(|row| Line::from(row[col].as_str()).width())
                    .chain([TOP_HEADERS[col].len()])
                    .max()
                    .unwrap_or(0);
                u16::try_from(longest).unwrap_or(u16::MAX)
            });
            Constraint::Length(width)
        })
        .collect();
    let cell = |col: usize, text: String| {
        let line = Line::from(text);
        Cell::from(if RIGHT[col] {
            line.right_aligned()
        } else {
            line
        })
    };
    let header = Row::new(
        TOP_HEADERS
            .iter()
            .enumerate()
            .map(|(col, h)| cell(col, (*h).to_owned())),
    )
    .style(Style::default().add_modifier(Modifier::BOLD));
    let body = cells.into_iter().map(|row| {
        Row::new(
            row.into_iter()
                .enumerate()
                .map(|(col, text)| cell(col, text)),
        )
    });
    Table::new(body, widths).header(header).column_spacing(2)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mesh_viz::tap::TopRow;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::style::Modifier;

    use super::{TopView, draw};

    fn row(source: &str, path: &str, count: u64, best_us: u64, failures: u64) -> TopRow {
        TopRow {
            source: source.into(),
            destination: "voting".into(),
            method: "POST".into(),
            path: path.into(),
            count,
            best: Duration::from_micros(best_us),
            worst: Duration::from_millis(12),
            last: Duration::from_millis(3),
            successes: count - failures,
            failures,
        }
    }

    fn screen(buf: &Buffer) -> Vec<String> {
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn the_table_has_linkerds_columns() {
        let mut terminal = Terminal::new(TestBackend::new(130, 8)).expect("terminal");
        let view = TopView {
            rows: vec![
                row(
                    "web",
                    "/emojivoto.v1.VotingService/VoteDoughnut",
                    12,
                    850,
                    12,
                ),
                row("vote-bot", "/api/vote", 3, 1_200, 1),
            ],
            tapping: vec!["emojivoto/web".into(), "emojivoto/voting".into()],
            notices: vec!["cannot tap emojivoto/emoji (127.0.0.1:4190): connection refused".into()],
            ended: false,
        };
        terminal.draw(|f| draw(f, &view)).expect("draw");
        let buf = terminal.backend().buffer();
        assert_eq!(
            screen(buf),
            [
                "(press q to quit)",
                "tapping emojivoto/web, emojivoto/voting",
                "cannot tap emojivoto/emoji (127.0.0.1:4190): connection refused",
                "",
                "Source    Destination  Method      Path                                       Count    Best   Worst    Last  Success Rate",
                "web       voting       POST        /emojivoto.v1.VotingService/VoteDoughnut      12   850µs    12ms     3ms         0.00%",
                "vote-bot  voting       POST        /api/vote                                      3     1ms    12ms     3ms        66.67%",
                "",
            ]
        );
        assert!(
            buf[(0, 4)].modifier.contains(Modifier::BOLD),
            "the header is bold"
        );
        assert!(!buf[(0, 5)].modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn an_ended_stream_says_so() {
        let mut terminal = Terminal::new(TestBackend::new(130, 4)).expect("terminal");
        let view = TopView {
            ended: true,
            ..TopView::default()
        };
        terminal.draw(|f| draw(f, &view)).expect("draw");
        assert_eq!(
            screen(terminal.backend().buffer()),
            [
                "(press q to quit)",
                "Tap stream terminated",
                "",
                "Source  Destination  Method      Path   Count    Best   Worst    Last  Success Rate",
            ]
        );
    }
}
