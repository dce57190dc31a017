//! Log output: plain messages on stderr for people (stdout is for what scripts read: tables,
//! reports, JSON), timestamped lines in the log file for later reading.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter::LevelFilter, EnvFilter, Layer};

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

/// The target of the error that ends a run: `main` prints it on stderr itself (whatever
/// `RUST_LOG` says), so it goes to the log file only, where a cron user looks.
pub const FATAL: &str = "glacier_backup::fatal";

/// Installs logging. The terminal shows `terminal` and above from our own crates, unless
/// `RUST_LOG` is set: then its directives decide, the AWS SDK's own logs included. The log file
/// (appended to, created with its directories) always records INFO and above, whatever
/// `--quiet` or `--verbose` do to the terminal, so a cron job leaves a record.
pub fn init(terminal: LevelFilter, logfile: Option<&Path>) -> Result<(), std::io::Error> {
    let own_crates = |meta: &tracing::Metadata<'_>| meta.target().starts_with("glacier_backup");
    let stderr = tracing_subscriber::fmt::layer()
        .event_format(Plain)
        .with_writer(|| crate::progress_view::StderrAboveBars);
    let from_environment = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| EnvFilter::try_new(directives).ok());
    let not_fatal = tracing_subscriber::filter::filter_fn(|meta: &tracing::Metadata<'_>| {
        meta.target() != FATAL
    });
    let stderr = match from_environment {
        Some(filter) => stderr.with_filter(filter).with_filter(not_fatal).boxed(),
        None => stderr
            .with_filter(terminal)
            .with_filter(tracing_subscriber::filter::filter_fn(own_crates))
            .with_filter(not_fatal)
            .boxed(),
    };
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
                    .with_filter(LevelFilter::INFO)
                    .with_filter(tracing_subscriber::filter::filter_fn(own_crates)),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    Ok(())
}
