//! The command line, as clap definitions. Completions and the man page are generated from these.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The version with the commit and build profile it was built from: `keyrite verify` re-renders report.pdf
/// and needs the same build (see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KEYRITE_GIT_COMMIT"),
    ", ",
    env!("KEYRITE_BUILD_PROFILE"),
    " build)"
);

#[derive(Debug, Parser)]
#[command(
    name = "keyrite",
    version = VERSION,
    about = "Run scripted, dual-controlled root-CA key ceremonies over PKCS#11, with hash-chained evidence",
    long_about = "keyrite checks a ceremony script against a security level, walks the people in the room \
through it, generates CA keys inside an HSM over PKCS#11, enforces dual control, and writes an evidence \
bundle (hash-chained audit log, report, artifacts) that `keyrite verify` checks offline.",
    after_help = "Examples:
  keyrite check ceremony-scripts/root-ca.toml
  keyrite rehearse ceremony-scripts/root-ca.toml --auto --out rehearsal-1
  keyrite verify rehearsal-1
  keyrite print ceremony-scripts/root-ca.toml --out paper-script.pdf

Exit codes: 0 ok, 1 environment (files, disk), 2 bad input (script, answers, usage), \
3 ceremony refused or aborted, 4 HSM failure, 5 evidence verification failed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a ceremony script and its security-level policy; print file:line:col diagnostics.
    #[command(
        after_help = "Examples:\n  keyrite check ceremony-scripts/root-ca.toml\n  keyrite check my-ceremony.toml && keyrite print my-ceremony.toml --out paper.pdf"
    )]
    Check {
        /// The ceremony script (TOML).
        script: PathBuf,
    },
    /// Rehearse a script against throw-away SoftHSM2 tokens. The report is marked REHEARSAL.
    #[command(
        after_help = "Examples:\n  keyrite rehearse ceremony-scripts/root-ca.toml --auto --out rehearsal-1\n  keyrite rehearse SCRIPT --answers answers.toml --env ENV --out OUT\n  keyrite rehearse SCRIPT --out OUT          # the terminal UI, people confirming in turn"
    )]
    Rehearse {
        /// The ceremony script (TOML).
        script: PathBuf,
        /// The evidence bundle folder to create (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Confirmations for a headless run (see docs/script-format.md, "Answers files").
        #[arg(long, conflicts_with = "auto")]
        answers: Option<PathBuf>,
        /// Confirm every step as the participants named in the script. Rehearsal only.
        #[arg(long)]
        auto: bool,
        /// Keep or reuse the rehearsal tokens in this folder (DIR/rehearsal.toml lists them).
        #[arg(long, value_name = "DIR")]
        env: Option<PathBuf>,
        /// Run the ceremony through this PKCS#11 module instead of SoftHSM2 directly, e.g. the
        /// p11-kit proxy in front of SoftHSM2. Tokens are still made with SoftHSM2.
        #[arg(long, value_name = "PATH")]
        module: Option<String>,
        /// Use the plain line prompt instead of the terminal UI (the TUI opens on an interactive
        /// terminal when no --answers or --auto is given).
        #[arg(long)]
        plain: bool,
        /// The file an `attach` step records, e.g. `--attach record-video=/media/usb/ceremony.mp4`.
        /// May be given once per attach step; otherwise the answers file or the prompt gives it.
        #[arg(long = "attach", value_name = "STEP=PATH")]
        attach: Vec<String>,
    },
    /// Run the ceremony against the HSM the script names. Prompts for PINs without echo.
    #[command(
        after_help = "Examples:\n  keyrite run SCRIPT --out OUT                         # the terminal UI\n  keyrite run SCRIPT --answers answers.toml --out OUT  # headless\n  keyrite run SCRIPT --signers-ca cards-ca.pem --out OUT"
    )]
    Run {
        /// The ceremony script (TOML).
        script: PathBuf,
        /// The evidence bundle folder to create (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Confirmations for a headless run.
        #[arg(long)]
        answers: Option<PathBuf>,
        /// Refused: a real ceremony is confirmed by the people in the room.
        #[arg(long, hide = true)]
        auto: bool,
        /// CA certificate (PEM) that issued the participants' personal cards; needed when the
        /// script gives cards. Copied into the bundle as signatures/signers-ca.pem.
        #[arg(long, value_name = "FILE")]
        signers_ca: Option<PathBuf>,
        /// Use the plain line prompt instead of the terminal UI (the TUI opens on an interactive
        /// terminal when no answers file is given).
        #[arg(long)]
        plain: bool,
        /// The file an `attach` step records, e.g. `--attach record-video=/media/usb/ceremony.mp4`.
        /// May be given once per attach step; otherwise the answers file or the prompt gives it.
        #[arg(long = "attach", value_name = "STEP=PATH")]
        attach: Vec<String>,
    },
    /// Verify an evidence bundle offline: log chain, replay of the script's rules, report, artifacts,
    /// certificates and key hashes.
    #[command(
        after_help = "Examples:\n  keyrite verify OUT\n  keyrite verify OUT --signers-ca cards-ca.pem\n\nExit codes: 0 verified, 1 no such folder, 5 a check failed."
    )]
    Verify {
        /// The evidence bundle folder.
        dir: PathBuf,
        /// Check signer certificates against this CA (PEM) instead of the bundle's
        /// signatures/signers-ca.pem.
        #[arg(long, value_name = "FILE")]
        signers_ca: Option<PathBuf>,
    },
    /// Close an interrupted ceremony (keyrite was killed, the power or the disk failed) on the
    /// record: the log is checked, an abort entry appended, and the report marked ABORTED and signed
    /// by the cards the security level requires.
    Abort {
        /// The evidence bundle folder of the interrupted ceremony.
        out: PathBuf,
        /// Why the ceremony is closed; recorded in the log and the report.
        #[arg(long)]
        reason: String,
        /// CA (PEM) of the personal cards; default: the bundle's signatures/signers-ca.pem.
        #[arg(long, value_name = "FILE")]
        signers_ca: Option<PathBuf>,
        /// A rehearsal's --env folder: its throw-away cards sign the report.
        #[arg(long, value_name = "DIR")]
        env: Option<PathBuf>,
    },
    /// Carry an interrupted ceremony on to its end: the log is checked, the HSM inspected for the
    /// operation in flight, the interrupted step starts over with fresh confirmations, and report
    /// signing that was cut off is finished. The bundle then verifies as one ceremony.
    Resume {
        /// The evidence bundle folder of the interrupted ceremony.
        out: PathBuf,
        /// Confirmations for the remaining steps, headless.
        #[arg(long, conflicts_with = "auto")]
        answers: Option<PathBuf>,
        /// Confirm the remaining steps as the participants named in the script (rehearsals, with
        /// --env, only).
        #[arg(long, requires = "env")]
        auto: bool,
        /// A rehearsal's --env folder: its throw-away tokens and cards.
        #[arg(long, value_name = "DIR")]
        env: Option<PathBuf>,
        /// CA (PEM) of the personal cards; default: the bundle's signatures/signers-ca.pem.
        #[arg(long, value_name = "FILE")]
        signers_ca: Option<PathBuf>,
        /// The file a step still to run takes (an `attach` step, or the request or certificate a
        /// CA-signing step signs), as for `run`: the interrupted step starts over and reads it again.
        #[arg(long = "attach", value_name = "STEP=PATH")]
        attach: Vec<String>,
    },
    /// Make the paper script for the room as a PDF: every step with its instructions, the roles
    /// involved, columns for initials and time, and a blank exceptions sheet.
    #[command(
        after_help = "Example:\n  keyrite print ceremony-scripts/root-ca.toml --out paper-script.pdf"
    )]
    Print {
        /// The ceremony script (TOML).
        script: PathBuf,
        /// The PDF to write (must not exist yet).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print shell completions.
    #[command(
        after_help = "Example:\n  keyrite completions bash > /etc/bash_completion.d/keyrite"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of keyrite or of one subcommand, or write every page into a folder.
    #[command(
        after_help = "Examples:\n  keyrite man > keyrite.1\n  keyrite man verify > keyrite-verify.1\n  keyrite man --dir /usr/local/share/man/man1   # keyrite.1 and keyrite-<subcommand>.1"
    )]
    Man {
        /// The subcommand whose page to print, e.g. `verify`.
        command: Option<String>,
        /// Write keyrite.1 and one keyrite-<subcommand>.1 per subcommand into this folder.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}
