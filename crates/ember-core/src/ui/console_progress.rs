//! A progress bar per running stage on stderr: `[Stage 3:====>          (12 + 2) / 40]`.
//!
//! Spark counterpart: `ConsoleProgressBar`. As there, the bar appears only for stages that have
//! run for half a second, is redrawn five times a second, shares the terminal width between
//! the stages shown, and counts `(completed + active) / total` tasks. It is only started when
//! `ember.ui.showConsoleProgress` is true and stderr is a terminal; indicatif does the drawing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::ids::StageAttempt;
use crate::scheduler::task::{StageProgress, TaskScheduler};

/// Redraw period.
const UPDATE_PERIOD: Duration = Duration::from_millis(200);
/// Stages younger than this are not shown (short jobs never flash a bar).
const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Width when `COLUMNS` is not set.
const DEFAULT_WIDTH: usize = 80;

/// One stage's bar, `width` characters wide (at least the header and counts).
pub fn format_stage_bar(
    stage_id: u64,
    completed: usize,
    active: usize,
    total: usize,
    width: usize,
) -> String {
    let header = format!("[Stage {stage_id}:");
    let tailer = format!("({completed} + {active}) / {total}]");
    let room = width.saturating_sub(header.len() + tailer.len());
    let mut bar = String::with_capacity(width);
    bar.push_str(&header);
    if room > 0 {
        let filled = (room * completed.min(total))
            .checked_div(total)
            .unwrap_or(room);
        for i in 0..room {
            bar.push(if i < filled {
                '='
            } else if i == filled {
                '>'
            } else {
                ' '
            });
        }
    }
    bar.push_str(&tailer);
    bar
}

/// The whole line for these stages, sharing `width` among them.
pub fn format_progress_line(stages: &[StageProgress], width: usize) -> String {
    if stages.is_empty() {
        return String::new();
    }
    let each = width / stages.len();
    stages
        .iter()
        .map(|s| format_stage_bar(s.stage.stage_id.0, s.completed, s.active, s.total, each))
        .collect()
}

/// The bar on screen, if any, and the line it shows.
#[derive(Debug, Default)]
struct Shown {
    bar: Option<ProgressBar>,
    line: String,
}

impl Shown {
    fn show(&mut self, line: String) {
        if line == self.line {
            return;
        }
        if line.is_empty() {
            self.clear();
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
            bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            bar
        });
        bar.set_message(line.clone());
        self.line = line;
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.line.clear();
    }
}

/// The running progress bar; dropping it (or cancelling its token) removes it.
#[derive(Debug)]
pub struct ConsoleProgressBar {
    stop: CancellationToken,
    shown: Arc<Mutex<Shown>>,
}

impl ConsoleProgressBar {
    /// Starts redrawing from `scheduler`'s progress until `stop` is cancelled.
    pub fn start(
        scheduler: Arc<TaskScheduler>,
        runtime: &tokio::runtime::Handle,
        stop: CancellationToken,
    ) -> ConsoleProgressBar {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|&c| c > 0)
            .unwrap_or(DEFAULT_WIDTH)
            .saturating_sub(1);
        let token = stop.clone();
        let shown = Arc::new(Mutex::new(Shown::default()));
        let screen = shown.clone();
        runtime.spawn(async move {
            let mut first_seen: HashMap<StageAttempt, Instant> = HashMap::new();
            let mut ticks = tokio::time::interval(UPDATE_PERIOD);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let now = Instant::now();
                let progress = scheduler.progress();
                first_seen.retain(|stage, _| progress.iter().any(|p| p.stage == *stage));
                let visible: Vec<StageProgress> = progress
                    .into_iter()
                    .filter(|p| {
                        let since = *first_seen.entry(p.stage).or_insert(now);
                        now.duration_since(since) >= FIRST_DELAY
                    })
                    .take(3)
                    .collect();
                let line = format_progress_line(&visible, width);
                lock(&screen).show(line);
            }
            lock(&screen).clear();
        });
        ConsoleProgressBar { stop, shown }
    }

    /// Removes the bar now (a job ended); it comes back at the next redraw if stages still run.
    pub fn clear(&self) {
        lock(&self.shown).clear();
    }
}

fn lock(shown: &Mutex<Shown>) -> std::sync::MutexGuard<'_, Shown> {
    shown.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for ConsoleProgressBar {
    fn drop(&mut self) {
        self.stop.cancel();
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::StageId;

    #[test]
    fn bars_look_like_sparks() {
        let table = [
            // (completed, active, total, width, expected)
            (
                12,
                2,
                40,
                50,
                "[Stage 3:========>                  (12 + 2) / 40]",
            ),
            (0, 0, 10, 30, "[Stage 3:>       (0 + 0) / 10]"),
            (10, 0, 10, 30, "[Stage 3:=======(10 + 0) / 10]"),
            (1, 1, 2, 10, "[Stage 3:(1 + 1) / 2]"),
        ];
        for (completed, active, total, width, want) in table {
            let got = format_stage_bar(3, completed, active, total, width);
            assert_eq!(got, want, "({completed} + {active}) / {total} in {width}");
            if got.len() > width {
                assert!(width < "[Stage 3:(1 + 1) / 2]".len());
            } else {
                assert_eq!(got.len(), width);
            }
        }
    }

    #[test]
    fn stages_share_the_width() {
        let stage = |id, completed, total| StageProgress {
            stage: StageAttempt {
                stage_id: StageId(id),
                attempt: 0,
            },
            total,
            completed,
            active: 1,
        };
        let line = format_progress_line(&[stage(0, 5, 10), stage(1, 0, 4)], 80);
        assert_eq!(line.len(), 80);
        assert!(line.starts_with("[Stage 0:"), "{line}");
        assert!(line.contains("][Stage 1:>"), "{line}");
        assert!(format_progress_line(&[], 80).is_empty());
    }
}
