//! Command-line interface: the Python tool's flags, plus subcommands and a few additions.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The exit codes, as `--help` and the README list them.
const EXIT_CODES: &str = "Exit codes:
  0    done
  1    something failed (each failure was reported)
  2    usage or configuration error
  3    nothing failed, but work is pending (a retrieval or inventory job): run again later
  11   another run holds the ledger's lock
  129  stopped by SIGHUP, 130 by Ctrl-C (SIGINT), 143 by SIGTERM; the next run continues";

/// `--version`: the version and the backends, with those not compiled into this build marked.
fn long_version() -> String {
    format!(
        "{}\nbackends:\n{}",
        env!("CARGO_PKG_VERSION"),
        glacier_backup::backends::backends_summary()
    )
}

/// Back up files and directories to cold storage (S3 Glacier vaults, S3 cold storage classes,
/// Azure's Cool and Cold tiers, or a local directory), each candidate once, or again when it
/// changed.
#[derive(Debug, Parser)]
#[command(name = "glacier-backup", version, long_version = long_version(), max_term_width = 100,
          subcommand_precedence_over_arg = true, after_help = EXIT_CODES)]
pub struct Cli {
    /// Only show what would be done: writes nothing (backup and restore also contact nothing;
    /// inventory reports without changing the ledger)
    #[arg(short = 'd', long = "dryrun", visible_alias = "dry-run", global = true)]
    pub dryrun: bool,

    /// Config file [default: glacier_backup.conf in $XDG_CONFIG_HOME/glacier_backup, or in
    /// $HOME/.config/glacier_backup]
    #[arg(short = 'c', long, value_name = "CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Log file; '' disables it [default: glacier_backup.log beside the default config]
    // An OsString parser, because the PathBuf one refuses the empty value that means "off".
    #[arg(short = 'l', long, value_name = "LOGFILE", global = true,
          value_parser = clap::builder::OsStringValueParser::new())]
    pub logfile: Option<std::ffi::OsString>,

    /// Name of the Glacier vault to use (overrides [main] vault_name)
    #[arg(short = 'v', long, value_name = "VAULT", global = true)]
    pub vault: Option<String>,

    /// AWS account ID to use (overrides [main] account_id)
    #[arg(short = 'a', long, value_name = "ACCOUNT", global = true)]
    pub account: Option<String>,

    /// Files or directories to back up, each as one candidate; replaces the config's paths.
    /// A subcommand name after them ends the list (write ./list for a path named list)
    #[arg(short = 'p', long = "path", value_name = "PATHS", num_args = 1.., global = true)]
    pub paths: Vec<PathBuf>,

    /// Backend to use (overrides [main] backend)
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
              glacier_backup::backends::backend_names()), global = true)]
    pub backend: Option<String>,

    /// Send at most RATE bytes a second, shared by all uploads at once (k, M, G: 1024-based;
    /// off), or follow a timetable in local time such as "08:00,512k 23:00,off" (overrides
    /// [main] limit_upload)
    #[arg(long, value_name = "RATE", global = true)]
    pub limit_upload: Option<glacier_backup_archiver::bandwidth::Schedule>,

    /// Receive at most RATE bytes a second (restores, verify --read, migrate), as
    /// --limit-upload (overrides [main] limit_download)
    #[arg(long, value_name = "RATE", global = true)]
    pub limit_download: Option<glacier_backup_archiver::bandwidth::Schedule>,

    /// Stop after this many uploads (1 reproduces the Python tool); default: no limit
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub max_uploads: Option<u64>,

    /// Show more detail (also why each candidate is skipped)
    #[arg(long, conflicts_with = "quiet", global = true)]
    pub verbose: bool,

    /// Show only warnings and errors
    #[arg(long, global = true)]
    pub quiet: bool,

    /// Progress display on stderr: bars on a terminal, a line every 30 s in a log (auto);
    /// bars whatever stderr is (always); none (never). --quiet shows none
    #[arg(long, value_enum, default_value_t = crate::progress_view::Choice::Auto, global = true)]
    pub progress: crate::progress_view::Choice,

    /// Print one JSON document on stdout when the command ends (backup, list, ls, find,
    /// restore, inventory, verify, prune), whatever the verbosity; logs stay on stderr
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do; without one, `backup`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Back up the configured paths (the default)
    Backup(BackupArgs),
    /// Show the ledger: every upload recorded (--json: an array of rows)
    List,
    /// Restore uploads: each PATH's latest upload and everything uploaded below it
    Restore(RestoreArgs),
    /// List a backed-up directory (or a path inside one) as its latest upload holds it, or
    /// the one current at --at: read from the ledger's catalog, nothing retrieved (exit 1
    /// when no catalog holds it)
    Ls(LsArgs),
    /// Find backed-up entries by glob (`*.jpg` matches names; a pattern with `/` the whole
    /// path, `**` across directories) in every directory's latest upload, the ones current at
    /// --at, or all of them: read from the ledger's catalogs, nothing retrieved
    Find(FindArgs),
    /// Compare what the destination holds with the ledger (a Glacier vault answers through an
    /// inventory job that takes hours: run again, or add --wait); --rebuild-ledger adds the
    /// archives the ledger does not know
    Inventory(InventoryArgs),
    /// Check that sources still match their last upload (and, with --remote, that the
    /// destination still holds every archive as recorded)
    Verify {
        /// Also ask the destination (sizes; tree hashes re-computed for a local directory)
        #[arg(long)]
        remote: bool,
        /// With --remote: also read every archive back and re-hash it, where that needs no
        /// retrieval (a local directory, S3 STANDARD or GLACIER_IR; the cost is shown first)
        #[arg(long, requires = "remote")]
        read: bool,
        /// Only uploads of these paths and below
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Delete the uploads the retention policy ([retention], keep_* keys in path sections)
    /// does not keep: the plan first (-d stops there), then each archive and its index,
    /// marked in the ledger as confirmed. Archives inside their class's minimum storage
    /// duration wait for it unless --allow-early-deletion
    Prune(PruneArgs),
    /// What the destination holds and what keeping it costs, from the ledger alone (no
    /// network): archives and bytes in its storage class, the monthly storage estimate,
    /// uploads inside the class's minimum duration and their early-deletion fee, the largest
    /// paths, the oldest and newest upload, what is pending, moved and pruned
    Stats,
    /// Move archives to another destination (a Glacier vault into S3): each one retrieved,
    /// copied part by part, checked against its tree hash and recorded in both ledgers; run
    /// again to continue (-d shows the plan and its cost)
    Migrate(MigrateArgs),
    /// Print a shell completion script on stdout (e.g. `glacier-backup completions bash >
    /// ~/.local/share/bash-completion/completions/glacier-backup`)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout (e.g. `glacier-backup man | man -l -`)
    Man,
    /// Make a new age identity for [encryption]: written to FILE (mode 0600, never replacing
    /// a file) or to stdout; its recipient, for `recipients`, is printed. With FILE, its
    /// authentication key (for `authentication_key_file`) goes to FILE.auth
    Keygen {
        /// Write the identity here instead of stdout
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Write only the authentication key of this existing identity file (one made by
        /// age-keygen, say), to FILE or stdout
        #[arg(long, value_name = "IDENTITY")]
        authentication_key_of: Option<PathBuf>,
    },
}

/// Arguments of `backup`.
#[derive(Debug, Default, clap::Args)]
pub struct BackupArgs {
    /// After a backup with no failure, prune as `prune --yes` does (for cron)
    #[arg(long)]
    pub prune: bool,
}

/// Arguments of `prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Do not ask before deleting (a terminal asks when the plan deletes anything)
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Delete archives still inside their storage class's minimum duration now, paying the
    /// early deletion fee the plan shows, instead of letting them wait
    #[arg(long)]
    pub allow_early_deletion: bool,
    /// A path whose source is gone from this machine loses every upload, its latest too
    #[arg(long)]
    pub forget_gone: bool,
    /// Only uploads of these paths and below
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,
}

/// Arguments of `find`.
#[derive(Debug, clap::Args)]
pub struct FindArgs {
    /// A glob: `*`, `?`, `[abc]`, `{a,b}`; `**` spans directories
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
    /// Search the uploads current at this time (same forms as restore's --at)
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "all_versions")]
    pub at: Option<time::OffsetDateTime>,
    /// Search every upload, not only each directory's latest
    #[arg(long)]
    pub all_versions: bool,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// A backed-up directory, or a path inside one
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// As uploaded at this time (RFC 3339, `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DD` for the
    /// end of that day; UTC unless an offset is given)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<time::OffsetDateTime>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Source paths as backed up: a file, a directory, or a path inside a backed-up directory
    /// (only its entries are fetched)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Directory to restore into (a directory archive lands as DIR/<dir name>/...)
    #[arg(long, value_name = "DIR", required_unless_present = "in_place")]
    pub to: Option<PathBuf>,
    /// Restore to where the files were backed up from (existing files newer than the upload
    /// are kept unless --force)
    #[arg(long, conflicts_with = "to")]
    pub in_place: bool,
    /// Replace existing files even when they are newer than the restored ones
    #[arg(long)]
    pub force: bool,
    /// Make the device files found in directory archives (needs root); without it they are
    /// skipped with a warning
    #[arg(long)]
    pub devices: bool,
    /// Restore the uploads current at this time (RFC 3339, `YYYY-MM-DD HH:MM[:SS]` or
    /// `YYYY-MM-DD` for the end of that day; UTC unless an offset is given)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<time::OffsetDateTime>,
    /// Restore this archive id or key (repeatable)
    #[arg(long = "archive-id", value_name = "ID")]
    pub archive_ids: Vec<String>,
    /// Wait until cold archives are readable, then download them
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 12 * 3600)]
    pub timeout: u64,
    /// Retrieval tier for cold archives
    #[arg(long, value_enum, default_value_t = Tier::Standard)]
    pub tier: Tier,
    /// Days a restored S3 copy stays readable
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub days: u32,
    /// Refuse to start when the plan's estimated cost is above this many US dollars
    #[arg(long, value_name = "USD", value_parser = parse_dollars)]
    pub max_cost: Option<f64>,
    /// Do not ask before a costly plan (on a terminal, plans above $1 ask first)
    #[arg(long)]
    pub yes: bool,
    /// The age identity file that opens encrypted archives (overrides [encryption]
    /// identity_file)
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Restore encrypted archives of a rebuilt ledger that carry no proof these backups wrote
    /// them (made before [encryption] authentication_key_file was set)
    #[arg(long)]
    pub trust_destination: bool,
    /// Restore only the entries of backed-up directories that match GLOB (a name, or with a
    /// `/` a whole path; `**` crosses directories), fetching only the bytes that hold them
    #[arg(long, value_name = "GLOB")]
    pub include: Option<String>,
}

/// Arguments of `migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Config file of the destination (its [main] backend and section, and its own ledger)
    #[arg(long, value_name = "CONFIG")]
    pub to: PathBuf,
    /// Backend of the destination (overrides [main] backend of the --to config)
    #[arg(long, value_name = "BACKEND", value_parser = clap::builder::PossibleValuesParser::new(
              glacier_backup::backends::backend_names()))]
    pub to_backend: Option<String>,
    /// Retrieval tier for the source's archives (bulk is the cheapest and slowest)
    #[arg(long, value_enum, default_value_t = Tier::Bulk)]
    pub tier: Tier,
    /// Wait until archives are readable, then copy them
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 48 * 3600)]
    pub timeout: u64,
    /// Delete each source archive once its copy is complete and verified (size and tree hash,
    /// as the destination reports them)
    #[arg(long)]
    pub delete_source: bool,
    /// Also every archive the source holds that its ledger does not record (the Python tool's,
    /// other tools': named by their description), from its inventory (a vault's takes hours:
    /// run again, or add --wait)
    #[arg(long)]
    pub all: bool,
    /// Only uploads of these paths and below (default: every upload in the source's ledger)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

fn parse_dollars(text: &str) -> Result<f64, String> {
    text.trim_start_matches('$')
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{text:?} is not an amount of US dollars: use e.g. 5 or 0.50"))
}

/// Arguments of `inventory`.
#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// Add a ledger row for every archive this tool wrote that the ledger does not know (after a
    /// lost ledger: the next backup then uploads nothing unchanged, and restore works)
    #[arg(long)]
    pub rebuild_ledger: bool,
    /// Wait for an inventory job to finish
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 12 * 3600)]
    pub timeout: u64,
    /// With --rebuild-ledger, read encrypted indexes that carry no proof these backups wrote
    /// them (made before [encryption] authentication_key_file was set)
    #[arg(long)]
    pub trust_destination: bool,
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    glacier_backup::restore::parse_time(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time: use e.g. 2026-11-20, \"2026-11-20 14:30\" or \
             2026-11-20T14:30:00+01:00"
        )
    })
}

impl From<Tier> for glacier_backup::archiver::RestoreTier {
    fn from(tier: Tier) -> Self {
        match tier {
            Tier::Expedited => Self::Expedited,
            Tier::Standard => Self::Standard,
            Tier::Bulk => Self::Bulk,
        }
    }
}

/// Retrieval speed (and price) for cold archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tier {
    /// Minutes
    Expedited,
    /// Hours
    Standard,
    /// Many hours, cheapest
    Bulk,
}
