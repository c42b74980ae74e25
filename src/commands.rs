//! What each command does, between the CLI definitions and the library.

use crate::cli::{Cli, Command};
use crate::driver::operator::{Answers, Headless, Operator, WithAttachments};
use crate::driver::pins::{PinSource, Prompt};
use crate::driver::prompt::{stdin_lines, LinePrompt};
use crate::driver::{CardSetup, Ceremony, RunMode};
use crate::error::{count, exit, Error, Result};
use crate::evidence::events::ConfirmationSource;
use crate::evidence::verify::{verify_bundle_with, Verdict};
use crate::hsm::spki::grouped_hex;
use crate::hsm::{pkcs11, Hsm, HsmError};
use crate::script::{self, LoadedScript, SecurityLevel, Severity, TokenSelector};
use clap::CommandFactory;
use rehearse::{enter_env, rehearse};
use reopen::{abort, resume};
use std::collections::BTreeMap;
use std::path::Path;

/// A line on stdout. A reader that went away (`keyrite verify DIR | head -1`) is no error: the command
/// still finishes and exits with its own code, instead of panicking as `println!` would.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod rehearse;
mod reopen;

pub fn dispatch(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Check { script } => check(&script),
        Command::Rehearse {
            script,
            out,
            answers,
            auto,
            env,
            module,
            plain,
            attach,
        } => rehearse(
            &script,
            &out,
            Room {
                answers: answers.as_deref(),
                auto,
                plain,
                attach: &attach,
            },
            env.as_deref(),
            module,
        ),
        Command::Run {
            script,
            out,
            answers,
            auto,
            plain,
            signers_ca,
            attach,
        } => run(
            &script,
            &out,
            Room {
                answers: answers.as_deref(),
                auto,
                plain,
                attach: &attach,
            },
            signers_ca.as_deref(),
        ),
        Command::Verify { dir, signers_ca } => verify(&dir, signers_ca.as_deref()),
        Command::Resume {
            out,
            answers,
            auto,
            env,
            signers_ca,
            attach,
        } => resume(
            &out,
            Room {
                answers: answers.as_deref(),
                auto,
                plain: true,
                attach: &attach,
            },
            env.as_deref(),
            signers_ca.as_deref(),
        ),
        Command::Abort {
            out,
            reason,
            signers_ca,
            env,
        } => abort(&out, &reason, signers_ca.as_deref(), env.as_deref()),
        Command::Print { script, out } => print(&script, &out),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "keyrite", &mut out);
            say!("{}", String::from_utf8_lossy(&out).trim_end());
            Ok(exit::OK)
        }
        Command::Man { command, dir } => man(command.as_deref(), dir.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // A script's diagnostics were printed one by one, each with its hint.
            if let Error::Script { .. } = err {
                crate::error::eprint_problem(&err.to_string(), &err.parts().1);
            } else {
                err.eprint();
            }
            err.exit_code()
        }
    }
}

/// `keyrite man`: the page of keyrite or of one subcommand on stdout, or every page into a folder.
fn man(command: Option<&str>, dir: Option<&Path>) -> Result<i32> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    if let Some(dir) = dir {
        clap_mangen::generate_to(cli, dir)
            .map_err(|e| Error::io("write the man pages into", dir, &e))?;
        say!("man pages written to {}", dir.display());
        return Ok(exit::OK);
    }
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => match cli.find_subcommand(name) {
            Some(sub) if !sub.is_hide_set() => sub.clone(),
            _ => {
                let names: Vec<&str> = cli.get_subcommands().map(|s| s.get_name()).collect();
                return Err(Error::input(
                    format!("keyrite has no subcommand \"{name}\""),
                    format!("name one of: {}", names.join(", ")),
                ));
            }
        },
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out).map_err(|e| {
        Error::env(
            format!("could not render the man page: {e}"),
            "report this keyrite defect",
        )
    })?;
    say!("{}", String::from_utf8_lossy(&out).trim_end());
    Ok(exit::OK)
}

/// Load and check a script; print every diagnostic; fail on errors.
fn load_checked(path: &Path) -> Result<LoadedScript> {
    load_script(path, true, script::check_file)
}

/// How a script is checked: `script::check_file`, or for a rehearsal `script::check_file_rehearsal`
/// (the quorum's commitments come from the rehearsal folder's record of the split).
type ScriptCheck = fn(&Path) -> (Option<LoadedScript>, Vec<script::Diagnostic>);

/// Load and check a script, printing its diagnostics (`warnings`: its warnings too); fail on errors. A
/// script that cannot be read at all is a file error (exit 1), not a script error.
fn load_script(path: &Path, warnings: bool, check: ScriptCheck) -> Result<LoadedScript> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::io("read the script", path, &e));
    }
    let (loaded, diagnostics) = check(path);
    let mut errors = 0;
    let width = crate::error::terminal_width();
    for d in &diagnostics {
        let error = d.severity == Severity::Error;
        if error || warnings {
            let place = format!("{}:{}:{}: {}: ", d.file, d.line, d.col, d.severity);
            eprint!(
                "{}{}",
                crate::error::wrap_labelled(&place, &d.what, width),
                crate::error::wrap_labelled("  hint: ", &d.fix, width)
            );
        }
        if error {
            errors += 1;
        }
    }
    match loaded {
        Some(mut loaded) if errors == 0 => {
            // The diagnostics are out: their source positions (about 20 bytes of index per byte
            // of script) are not needed for the rest of the run.
            loaded.spans = Default::default();
            Ok(loaded)
        }
        _ => Err(Error::Script {
            file: path.display().to_string(),
            count: errors.max(1),
        }),
    }
}

fn check(path: &Path) -> Result<i32> {
    let loaded = load_checked(path)?;
    let s = &loaded.script;
    say!(
        "{}: ok — \"{}\" ({}), security level {}, {}, {}; SHA-256 {}",
        path.display(),
        s.ceremony.name,
        s.ceremony.id,
        s.ceremony.security_level,
        count(s.participants.len(), "participant", "participants"),
        count(s.steps.len(), "step", "steps"),
        loaded.sha256
    );
    Ok(exit::OK)
}

fn read_ca(path: Option<&Path>) -> Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p).map_err(|e| {
            Error::input(
                format!("cannot read the signers CA {}: {e}", p.display()),
                "give the PEM file of the CA that issued the personal cards",
            )
        })
    })
    .transpose()
}

/// `keyrite print`: the paper script, written to a new file.
fn print(path: &Path, out: &Path) -> Result<i32> {
    let loaded = load_checked(path)?;
    let pdf = crate::evidence::pdf::script::render(&loaded);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| Error::io("create", out, &e))?;
    std::io::Write::write_all(&mut file, &pdf).map_err(|e| Error::io("write", out, &e))?;
    say!(
        "{}: paper script for \"{}\" written to {}",
        path.display(),
        loaded.script.ceremony.name,
        out.display()
    );
    Ok(exit::OK)
}

fn verify(dir: &Path, signers_ca: Option<&Path>) -> Result<i32> {
    // A mistyped folder is a file error, not evidence that failed its checks.
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::env(
                format!("{} is a file, not an evidence bundle folder", dir.display()),
                "give the folder that `keyrite rehearse` or `keyrite run` wrote with --out",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::env(
                format!("no such folder: {}", dir.display()),
                "check the path; it is the folder given to --out when the ceremony ran",
            ))
        }
        Err(e) => return Err(Error::io("open the evidence bundle", dir, &e)),
    }
    let ca = read_ca(signers_ca)?;
    Ok(verify_printed(dir, ca.as_deref()))
}

fn verify_printed(dir: &Path, signers_ca: Option<&str>) -> i32 {
    let v = verify_bundle_with(dir, signers_ca);
    // Text from the bundle (an abort reason, a parse error quoting a file) is shown, never obeyed.
    for line in v.table().lines() {
        say!("{}", script::diagnostic::printable(line));
    }
    if let Some(result) = &v.result {
        say!(
            "ceremony result:     {}",
            script::diagnostic::printable(result)
        );
    }
    if let (Some(head), Some(report)) = (&v.log_head, &v.report_sha256) {
        say!("log head:            {}", grouped_hex(head));
        say!("report.json SHA-256: {}", grouped_hex(report));
        say!("compare both with what the witnesses wrote on the paper script");
    }
    match v.verdict() {
        Verdict::Verified => {
            say!(
                "verified: {} passed for {}",
                count(v.checks.len(), "check", "checks"),
                dir.display()
            );
            exit::OK
        }
        Verdict::Incomplete => {
            let open = v.checks.iter().filter(|c| c.incomplete).count();
            say!(
                "INCOMPLETE (intact so far, not tampered with): {open} of {} not done yet for {}; \
                 the run stopped before its evidence was complete",
                count(v.checks.len(), "check", "checks"),
                dir.display()
            );
            for next in &v.next {
                say!("  {next}");
            }
            exit::VERIFY_INCOMPLETE
        }
        Verdict::Failed => {
            let failed = v.checks.iter().filter(|c| !c.ok && !c.incomplete).count();
            say!(
                "NOT VERIFIED: {failed} of {} failed for {}",
                count(v.checks.len(), "check", "checks"),
                dir.display()
            );
            exit::VERIFY_FAILED
        }
    }
}

/// The operator for this run, and how its confirmations are recorded in the evidence.
/// Where the room's input comes from: an answers file, `--auto`, the line prompt (`--plain`), or the
/// terminal UI on an interactive terminal; plus `--attach` paths.
#[derive(Clone, Copy)]
struct Room<'a> {
    answers: Option<&'a Path>,
    auto: bool,
    plain: bool,
    attach: &'a [String],
}

impl Room<'_> {
    fn tui(&self) -> bool {
        crate::tui::wanted(self.answers, self.auto, self.plain)
    }
}

fn operator_for(
    room: Room<'_>,
    script: &LoadedScript,
) -> Result<(Box<dyn Operator>, ConfirmationSource)> {
    let paths = attach_paths(room.attach, &script.script)?;
    let (operator, source) = plain_operator(room.answers, room.auto, script)?;
    if paths.is_empty() {
        return Ok((operator, source));
    }
    Ok((
        Box::new(WithAttachments {
            inner: operator,
            paths,
        }),
        source,
    ))
}

/// `--attach STEP=PATH` values, each naming an attach step of the script.
fn attach_paths(values: &[String], script: &script::Script) -> Result<BTreeMap<String, String>> {
    let mut paths = BTreeMap::new();
    for value in values {
        let Some((step, path)) = value
            .split_once('=')
            .filter(|(s, p)| !s.is_empty() && !p.is_empty())
        else {
            return Err(Error::input(
                format!("--attach {value}: expected STEP=PATH"),
                "write it as --attach STEP-ID=PATH, e.g. --attach record-video=/media/usb/ceremony.mp4",
            ));
        };
        if !script
            .steps
            .iter()
            // Issue 11: a step signing for another CA takes its request or certificate this way.
            .any(|s| {
                s.id == step
                    && (s.action == script::Action::Attach || s.action.issues_ca_certificate())
            })
        {
            return Err(Error::input(
                format!("--attach {value}: the script has no attach step \"{step}\""),
                "name the id of a step with action = \"attach\", \"sign_subordinate_ca\" or \"sign_cross_certificate\"",
            ));
        }
        paths.insert(step.to_string(), path.to_string());
    }
    Ok(paths)
}

fn plain_operator(
    answers: Option<&Path>,
    auto: bool,
    script: &LoadedScript,
) -> Result<(Box<dyn Operator>, ConfirmationSource)> {
    let (answers, kind) = match (answers, auto) {
        (Some(path), _) => (Answers::load(path, &script.script)?, "answers-file"),
        (None, true) => (Answers::auto(&script.script), "auto"),
        (None, false) => {
            let prompt = LinePrompt::new(stdin_lines(), std::io::stdout());
            let source = ConfirmationSource {
                kind: "keyboard".into(),
                answers_sha256: None,
            };
            return Ok((Box::new(prompt), source));
        }
    };
    let source = ConfirmationSource {
        kind: kind.into(),
        answers_sha256: answers.file_sha256.clone(),
    };
    Ok((Box::new(Headless::new(answers, std::io::stdout())), source))
}

fn open_pkcs11(
    module: &str,
    selector: &TokenSelector,
) -> std::result::Result<Box<dyn Hsm + Send>, HsmError> {
    Ok(Box::new(pkcs11::Pkcs11Hsm::open_timed(module, selector)?))
}

/// A rehearsal's tokens: [`open_pkcs11`], with the test-only fault hook when it is armed (never in
/// `keyrite run`: see hsm/faulty.rs).
fn open_rehearsal(
    module: &str,
    selector: &TokenSelector,
) -> std::result::Result<Box<dyn Hsm + Send>, HsmError> {
    if crate::hsm::faulty::armed() {
        return crate::hsm::faulty::open(module, selector, open_pkcs11);
    }
    open_pkcs11(module, selector)
}

fn ceremony_exit(outcome: &crate::driver::Outcome, out: &Path) -> i32 {
    // Written on the paper script by the witnesses, these anchor the bundle outside the laptop: a
    // rewritten log would need a different head.
    let anchors = format!(
        "write on the paper script:\n  log head            {}\n  report.json SHA-256 {}",
        grouped_hex(&outcome.log_head),
        grouped_hex(&outcome.report_sha256)
    );
    if !outcome.unsigned.is_empty() {
        // The evidence is complete, but the report lacks signatures the security level requires.
        crate::error::eprint_problem(
            &format!("report signatures missing: {}", outcome.unsigned.join("; ")),
            &format!(
                "the bundle in {} is otherwise complete; `keyrite verify {}` names the missing signers",
                out.display(),
                out.display()
            ),
        );
    }
    if outcome.completed {
        say!("ceremony completed");
        say!("  evidence bundle     {}", out.display());
        say!("  report              {}", out.join("report.pdf").display());
        say!("{anchors}");
        say!("verify it with: keyrite verify {}", out.display());
        if outcome.unsigned.is_empty() {
            exit::OK
        } else {
            exit::HSM
        }
    } else {
        crate::error::eprint_problem(
            &format!(
                "ceremony aborted: {}",
                outcome.reason.as_deref().unwrap_or("no reason recorded")
            ),
            &format!(
                "the evidence of what happened is in {} (report: {}); check it with `keyrite verify {}`",
                out.display(),
                out.join("report.pdf").display(),
                out.display()
            ),
        );
        eprintln!("{anchors}");
        if outcome.hsm_failure {
            exit::HSM
        } else {
            exit::ABORTED
        }
    }
}

fn run(path: &Path, out: &Path, room: Room<'_>, signers_ca: Option<&Path>) -> Result<i32> {
    if room.auto {
        return Err(Error::input(
            "--auto is for rehearsals only",
            "a real ceremony is confirmed by the people in the room: use --answers FILE, or rehearse with `keyrite rehearse --auto`",
        ));
    }
    let loaded = load_checked(path)?;
    let (mut operator, confirmations) = operator_for(room, &loaded)?;
    let level = loaded.script.ceremony.security_level;
    let mode = RunMode {
        rehearsal: false,
        enforce_offline: level >= SecurityLevel::High,
        module: loaded.script.hsm.module.clone(),
        token: loaded.script.hsm.token.clone(),
        tokens: crate::driver::tokens::script_tokens(&loaded.script),
        confirmations,
        cards: CardSetup {
            module: (loaded.script.hsm.cards_module.clone())
                .unwrap_or_else(|| loaded.script.hsm.module.clone()),
            tokens: Default::default(),
            ca_pem: read_ca(signers_ca)?,
            rehearsal_ca: false,
        },
    };
    if room.tui() {
        let attach = attach_paths(room.attach, &loaded.script)?;
        let outcome = crate::tui::conduct(&loaded, mode, None, attach, open_pkcs11, out)?;
        return Ok(ceremony_exit(&outcome, out));
    }
    let mut pins = Prompt;
    conduct(
        &loaded,
        mode,
        operator.as_mut(),
        &mut pins,
        out,
        open_pkcs11,
    )
}

/// Run the ceremony on the PKCS#11 module of `mode` and turn the outcome into an exit code.
fn conduct(
    loaded: &LoadedScript,
    mode: RunMode,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    out: &Path,
    open: crate::tui::OpenFn,
) -> Result<i32> {
    let mut opener = open;
    let outcome = Ceremony {
        loaded,
        mode,
        operator,
        pins,
        opener: &mut opener,
    }
    .run(out)?;
    Ok(ceremony_exit(&outcome, out))
}
