//! Draws a run's progress: bars on a terminal (bytes of each candidate or download under way,
//! rate, ETA, and items done of the total), a plain line every `LINE_INTERVAL` when stderr is a
//! log, nothing with `--quiet` or `--progress never`.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use glacier_backup::progress::{ItemProgress, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(30);

/// Where the bars live: log lines are written above them through it (see [`StderrAboveBars`]).
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// Bars on a terminal, a line every 30 s otherwise.
    Auto,
    /// Bars even when stderr does not look like a terminal.
    Always,
    /// None.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bars,
    Lines,
}

/// The display for `--progress` and `--quiet`; `None` when nothing is to be shown.
pub fn shared(choice: Choice, quiet: bool) -> Option<glacier_backup::progress::SharedProgress> {
    view(choice, quiet).map(|view| std::sync::Arc::new(view) as _)
}

fn view(choice: Choice, quiet: bool) -> Option<View> {
    use std::io::IsTerminal;
    let mode = match choice {
        _ if quiet => return None,
        Choice::Never => return None,
        Choice::Always => Mode::Bars,
        Choice::Auto if std::io::stderr().is_terminal() => Mode::Bars,
        Choice::Auto => Mode::Lines,
    };
    if mode == Mode::Bars {
        let target = ProgressDrawTarget::term(console::Term::stderr(), 10);
        let _ = BARS.set(MultiProgress::with_draw_target(target));
    }
    let interval = std::env::var("GLACIER_BACKUP_PROGRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(LINE_INTERVAL, Duration::from_secs_f64);
    Some(View {
        mode,
        interval,
        overall: Mutex::new(None),
        waiting: Mutex::new(None),
    })
}

/// A progress display (see [`view`]).
#[derive(Debug)]
pub struct View {
    mode: Mode,
    interval: Duration,
    /// Items done of the batch (bars only).
    overall: Mutex<Option<ProgressBar>>,
    /// What is awaited on cold storage: a spinner, or when its last line was written.
    waiting: Mutex<Option<Waiting>>,
}

#[derive(Debug)]
enum Waiting {
    Spinner(ProgressBar),
    Line { what: String, written: Instant },
}

/// One item under way: its bar, or its counts for a line now and then.
struct ItemView {
    label: String,
    total: u64,
    interval: Duration,
    bar: Option<ProgressBar>,
    counts: Mutex<Counts>,
}

struct Counts {
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl ItemProgress for ItemView {
    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            return;
        }
        let mut counts = self.counts.lock().expect("progress lock");
        counts.done += bytes;
        if counts.last_line.elapsed() >= self.interval {
            counts.last_line = Instant::now();
            let seconds = counts.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                "{}: {} of {} ({}/s)",
                self.label,
                glacier_backup::display_size(counts.done),
                glacier_backup::display_size(self.total.max(counts.done)),
                glacier_backup::display_size((counts.done as f64 / seconds) as u64)
            );
        }
    }
}

impl Drop for ItemView {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for View {
    fn batch(&self, items: usize) {
        let (Mode::Bars, Some(bars)) = (self.mode, BARS.get()) else {
            return;
        };
        let bar = bars.add(ProgressBar::new(items as u64));
        bar.set_style(
            ProgressStyle::with_template("{pos}/{len} done  [{elapsed_precise}]")
                .expect("valid template"),
        );
        *self.overall.lock().expect("progress lock") = Some(bar);
    }

    fn item(&self, label: &str, bytes: u64) -> Box<dyn ItemProgress> {
        // Whatever was awaited is here.
        if let Some(Waiting::Spinner(spinner)) = self.waiting.lock().expect("progress lock").take()
        {
            spinner.finish_and_clear();
        }
        let bar = match (self.mode, BARS.get()) {
            (Mode::Bars, Some(bars)) => {
                let bar = bars.insert_from_back(1, ProgressBar::new(bytes));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{wide_msg} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                bar.set_message(label.to_owned());
                Some(bar)
            }
            _ => None,
        };
        let now = Instant::now();
        Box::new(ItemView {
            label: label.to_owned(),
            total: bytes,
            interval: self.interval,
            bar,
            counts: Mutex::new(Counts {
                done: 0,
                started: now,
                last_line: now,
            }),
        })
    }

    fn waiting(&self, what: &str, next_check: Duration) {
        let next = if next_check < Duration::from_secs(60) {
            format!("{} s", next_check.as_secs())
        } else {
            format!("{} min", next_check.as_secs().div_ceil(60))
        };
        let message = format!("{what}; next check in {next}");
        let mut waiting = self.waiting.lock().expect("progress lock");
        match (self.mode, BARS.get(), waiting.as_ref()) {
            (Mode::Bars, _, Some(Waiting::Spinner(spinner))) => spinner.set_message(message),
            (Mode::Bars, Some(bars), _) => {
                let spinner = bars.add(ProgressBar::new_spinner());
                spinner.enable_steady_tick(Duration::from_millis(200));
                spinner.set_message(message);
                *waiting = Some(Waiting::Spinner(spinner));
            }
            // A line for each new wait, then one per interval at most.
            (_, _, Some(Waiting::Line { what: was, written }))
                if was == what && written.elapsed() < self.interval => {}
            _ => {
                tracing::info!("{message}");
                *waiting = Some(Waiting::Line {
                    what: what.to_owned(),
                    written: Instant::now(),
                });
            }
        }
    }

    fn item_done(&self) {
        if let Some(Waiting::Spinner(spinner)) = self.waiting.lock().expect("progress lock").take()
        {
            spinner.finish_and_clear();
        }
        if let Some(overall) = self.overall.lock().expect("progress lock").as_ref() {
            overall.inc(1);
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(bar) = self.overall.get_mut().expect("progress lock").take() {
            bar.finish_and_clear();
        }
        if let Some(Waiting::Spinner(spinner)) =
            self.waiting.get_mut().expect("progress lock").take()
        {
            spinner.finish_and_clear();
        }
    }
}

/// Stderr for log lines, written above the progress bars (which are redrawn below them).
pub struct StderrAboveBars;

impl Write for StderrAboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
