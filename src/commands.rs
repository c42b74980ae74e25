//! What each command does, between the CLI definitions and the library.

use crate::cli::{Cli, Command};
use crate::driver::operator::{Answers, Headless, Operator, WithAttachments};
use crate::driver::pins::{PinSource, Prompt};
use crate::driver::prompt::{stdin_lines, LinePrompt};
use crate::driver::rehearsal::{self, RehearsalEnv, RehearsalPins};
use crate::driver::{CardSetup, Ceremony, RunMode};
use crate::error::{exit, Error, Result};
use crate::evidence::events::ConfirmationSource;
use crate::evidence::verify::verify_bundle_with;
use crate::hsm::spki::grouped_hex;
use crate::hsm::{pkcs11, Hsm, HsmError};
use crate::script::{self, LoadedScript, SecurityLevel, Severity, TokenSelector};
use clap::CommandFactory;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
        Command::Print { script, out } => print(&script, &out),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "keyrite",
                &mut std::io::stdout(),
            );
            Ok(exit::OK)
        }
        Command::Man => man(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if !matches!(err, Error::Script { .. }) {
                eprintln!("keyrite: error: {err}");
            }
            err.exit_code()
        }
    }
}

fn man() -> Result<i32> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| {
            Error::env(
                format!("could not render the man page: {e}"),
                "report this keyrite defect",
            )
        })?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Error::env(format!("could not write the man page: {e}"), "check stdout"))?;
    Ok(exit::OK)
}

/// Load and check a script; print every diagnostic; fail on errors.
fn load_checked(path: &Path) -> Result<LoadedScript> {
    let (loaded, diagnostics) = script::check_file(path);
    let mut errors = 0;
    for d in &diagnostics {
        eprintln!("{d}");
        if d.severity == Severity::Error {
            errors += 1;
        }
    }
    match loaded {
        Some(loaded) if errors == 0 => Ok(loaded),
        _ => Err(Error::Script {
            file: path.display().to_string(),
            count: errors.max(1),
        }),
    }
}

fn check(path: &Path) -> Result<i32> {
    let loaded = load_checked(path)?;
    let s = &loaded.script;
    println!(
        "{}: ok — \"{}\" ({}), security level {}, {} participants, {} steps; SHA-256 {}",
        path.display(),
        s.ceremony.name,
        s.ceremony.id,
        s.ceremony.security_level,
        s.participants.len(),
        s.steps.len(),
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
    println!(
        "{}: paper script for \"{}\" written to {}",
        path.display(),
        loaded.script.ceremony.name,
        out.display()
    );
    Ok(exit::OK)
}

fn verify(dir: &Path, signers_ca: Option<&Path>) -> Result<i32> {
    let ca = read_ca(signers_ca)?;
    Ok(verify_printed(dir, ca.as_deref()))
}

fn verify_printed(dir: &Path, signers_ca: Option<&str>) -> i32 {
    let v = verify_bundle_with(dir, signers_ca);
    // Text from the bundle (an abort reason, a parse error quoting a file) is shown, never obeyed.
    for line in v.table().lines() {
        println!("{}", script::diagnostic::printable(line));
    }
    if let Some(result) = &v.result {
        println!(
            "ceremony result:     {}",
            script::diagnostic::printable(result)
        );
    }
    if let (Some(head), Some(report)) = (&v.log_head, &v.report_sha256) {
        println!("log head:            {}", grouped_hex(head));
        println!("report.json SHA-256: {}", grouped_hex(report));
        println!("compare both with what the witnesses wrote on the paper script");
    }
    if v.passed() {
        println!(
            "verified: {} checks passed for {}",
            v.checks.len(),
            dir.display()
        );
        exit::OK
    } else {
        let failed = v.checks.iter().filter(|c| !c.ok).count();
        println!(
            "NOT VERIFIED: {failed} of {} checks failed for {}",
            v.checks.len(),
            dir.display()
        );
        exit::VERIFY_FAILED
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
            .any(|s| s.id == step && s.action == script::Action::Attach)
        {
            return Err(Error::input(
                format!("--attach {value}: the script has no attach step \"{step}\""),
                "name the id of a step with action = \"attach\"",
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
    Ok(Box::new(pkcs11::Pkcs11Hsm::open(module, selector)?))
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
        eprintln!(
            "keyrite: report signatures missing: {} — the bundle in {} is otherwise complete; \
             `keyrite verify` will name the missing signers",
            outcome.unsigned.join("; "),
            out.display()
        );
    }
    if outcome.completed {
        println!("ceremony completed; evidence in {}", out.display());
        println!("{anchors}");
        println!("verify it with: keyrite verify {}", out.display());
        if outcome.unsigned.is_empty() {
            exit::OK
        } else {
            exit::HSM
        }
    } else {
        eprintln!(
            "keyrite: ceremony aborted: {} — the evidence of what happened is in {}; check it with `keyrite verify {}`",
            outcome.reason.as_deref().unwrap_or("no reason recorded"),
            out.display(),
            out.display()
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
    conduct(&loaded, mode, operator.as_mut(), &mut pins, out)
}

/// Run the ceremony on the PKCS#11 module of `mode` and turn the outcome into an exit code.
fn conduct(
    loaded: &LoadedScript,
    mode: RunMode,
    operator: &mut dyn Operator,
    pins: &mut dyn PinSource,
    out: &Path,
) -> Result<i32> {
    let mut opener = open_pkcs11;
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

fn rehearse(
    path: &Path,
    out: &Path,
    room: Room<'_>,
    env: Option<&Path>,
    module: Option<String>,
) -> Result<i32> {
    let loaded = load_checked(path)?;
    let softhsm = rehearsal::find_softhsm()?;
    // A child re-executed by the block below finds its folder here.
    let inherited = std::env::var_os(rehearsal::DIR_VAR).map(PathBuf::from);
    let (dir, _temp) = match (inherited, env) {
        (Some(dir), _) => (dir, None),
        (None, Some(dir)) => (dir.to_path_buf(), None),
        (None, None) => {
            let temp = tempfile::Builder::new()
                .prefix("keyrite-rehearsal-")
                .tempdir()
                .map_err(|e| {
                    Error::env(
                        format!("could not create a temporary folder: {e}"),
                        "check TMPDIR",
                    )
                })?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let mut renv = RehearsalEnv::open(&dir)?;
    if !renv.is_active() {
        // SoftHSM reads SOFTHSM2_CONF once, at C_Initialize: run ourselves again with it set.
        let status = std::process::Command::new(std::env::current_exe().map_err(|e| {
            Error::env(
                format!("cannot find the keyrite executable: {e}"),
                "run keyrite by its full path",
            )
        })?)
        .args(std::env::args_os().skip(1))
        .env("SOFTHSM2_CONF", &renv.conf)
        .env(rehearsal::DIR_VAR, &renv.dir)
        .status()
        .map_err(|e| {
            Error::env(
                format!("could not start the rehearsal: {e}"),
                "check the keyrite executable",
            )
        })?;
        return Ok(status.code().unwrap_or(exit::ENVIRONMENT));
    }
    let (mut operator, confirmations) = operator_for(room, &loaded)?;
    let label = rehearsal_label(&loaded.script.hsm.token);
    // A script whose first HSM step is a quorum split starts from a factory-fresh token: the split
    // initialises it, so the rehearsal leaves a free slot instead of making the token.
    let fresh = loaded
        .script
        .steps
        .iter()
        .find(|s| s.action.uses_hsm())
        .is_some_and(|s| s.action == script::Action::SplitActivation)
        && renv.token(&label).is_none();
    let module_used = module.unwrap_or(softhsm.clone());
    let selector = if fresh {
        println!("REHEARSAL: the split initialises a fresh throw-away SoftHSM2 token \"{label}\"");
        TokenSelector {
            label: Some(label.clone()),
            serial: None,
            uri: None,
        }
    } else {
        let token = renv.ensure_token(&softhsm, &label)?;
        println!(
            "REHEARSAL on throw-away SoftHSM2 token \"{}\" (serial {})",
            token.label, token.serial
        );
        // Label and serial together: only the throw-away token made for this rehearsal matches.
        TokenSelector {
            label: Some(token.label.clone()),
            serial: Some(token.serial.clone()),
            uri: None,
        }
    };
    let cards = renv.ensure_cards(&softhsm, &loaded.script)?;
    if env.is_some() {
        println!(
            "rehearsal tokens and their PINs: {}",
            renv.dir.join(rehearsal::ENV_FILE).display()
        );
    }
    let mode = RunMode {
        rehearsal: true,
        enforce_offline: false,
        module: module_used.clone(),
        token: selector,
        confirmations,
        cards,
    };
    // One throw-away SoftHSM token per custodian card, each with its own random PIN.
    if let Some(q) = &loaded.script.quorum {
        let reshare = q.reshare.iter().flat_map(|r| r.cards.iter());
        for card in q.cards.iter().chain(reshare) {
            let label = rehearsal::rehearsal_label(&card.token);
            renv.ensure_card(&softhsm, &label, &card.holder)?;
        }
    }
    let mut pins = RehearsalPins(renv.tokens().to_vec());
    let code = if room.tui() {
        let attach = attach_paths(room.attach, &loaded.script)?;
        let outcome =
            crate::tui::conduct(&loaded, mode, Some(&mut pins), attach, open_pkcs11, out)?;
        ceremony_exit(&outcome, out)
    } else {
        conduct(&loaded, mode, operator.as_mut(), &mut pins, out)?
    };
    if fresh {
        // Later rehearsals on this --env find the split's token; its PINs are the quorum's.
        renv.adopt_token(&module_used, &label)?;
    }
    Ok(code)
}

/// The rehearsal token's label: the one the script asks for, or one derived from its serial (SoftHSM
/// cannot be told which serial to give a new token).
fn rehearsal_label(selector: &TokenSelector) -> String {
    pkcs11::wanted_label(selector).unwrap_or_else(|| {
        format!(
            "rehearsal-{}",
            selector.serial.as_deref().unwrap_or("token")
        )
    })
}
