//! Log output: plain messages on stdout for people, timestamped lines in the log file for
//! later reading.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter::LevelFilter, Layer};

/// `warning: ...` / `error: ...` / plain message, as command-line tools print.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        match *event.metadata().level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            Level::DEBUG | Level::TRACE => write!(writer, "debug: ")?,
            Level::INFO => {}
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs logging. `logfile` is appended to (created with its directories).
pub fn init(level: LevelFilter, logfile: Option<&Path>) -> Result<(), std::io::Error> {
    let own_crates = |meta: &tracing::Metadata<'_>| meta.target().starts_with("glacier_backup");
    let stdout = tracing_subscriber::fmt::layer()
        .event_format(Plain)
        .with_writer(std::io::stdout)
        .with_filter(level)
        .with_filter(tracing_subscriber::filter::filter_fn(own_crates));
    let file = match logfile {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_target(false)
                    .with_writer(Mutex::new(file))
                    .with_filter(level)
                    .with_filter(tracing_subscriber::filter::filter_fn(own_crates)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stdout)
        .with(file)
        .init();
    Ok(())
}
