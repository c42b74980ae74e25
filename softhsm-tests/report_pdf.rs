//! report.json against its JSON Schema (python jsonschema), report.pdf read back with poppler
//! (pdftotext, pdfinfo, pdftoppm), `attach` checked with sha256sum, and the paper script of
//! `keyrite print`. One rehearsal of the shipped P-256 root ceremony serves the report checks.

mod common;

use common::{have, keyrite, root, sh, text};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const P256: &str = "ceremony-scripts/root-ca-p256.toml";

fn required() -> bool {
    std::env::var_os("KEYRITE_REQUIRE_EXTERNAL").is_some()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn grouped(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A Python that can `import jsonschema`: KEYRITE_JSONSCHEMA_PYTHON (set by run-all.sh), else python3.
fn jsonschema_python() -> Option<String> {
    let candidates = std::env::var("KEYRITE_JSONSCHEMA_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_string()]);
    for python in candidates {
        if sh(&format!("{python} -c 'import jsonschema' 2>/dev/null"))
            .status
            .success()
        {
            return Some(python);
        }
    }
    assert!(
        !required(),
        "python jsonschema is required in CI (softhsm-tests/setup.sh installs it)"
    );
    eprintln!("skipping the JSON Schema check: python jsonschema is not installed");
    None
}

/// Validate `json` against docs/report.schema.json with the outside validator; Err holds its output.
fn validate(python: &str, json: &Path) -> Result<(), String> {
    let program = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())\n\
        errors = list(v.iter_errors(json.load(open(sys.argv[2]))))\n\
        for e in errors: print(list(e.absolute_path), e.message)\n\
        sys.exit(1 if errors else 0)\n";
    let out = Command::new(python)
        .args(["-c", program])
        .arg(root().join("docs/report.schema.json"))
        .arg(json)
        .output()
        .expect("python runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

fn pdftotext(pdf: &Path) -> String {
    let out = sh(&format!("pdftotext -layout {} -", pdf.display()));
    assert!(out.status.success(), "pdftotext: {}", text(&out));
    stdout(&out)
}

/// The page count (pdfinfo), after qpdf has checked the file's structure: keyrite writes its PDFs
/// itself (evidence/pdf/writer.rs), so the cross-reference table, object offsets and flate streams
/// are checked by a tool we did not write.
fn pdf_pages(pdf: &Path) -> usize {
    if common::tool("qpdf").is_some() {
        let check = sh(&format!("qpdf --check {}", pdf.display()));
        let said = text(&check);
        assert!(
            check.status.success() && said.contains("No syntax or stream encoding errors"),
            "qpdf --check {}: {said}",
            pdf.display()
        );
    }
    let info = sh(&format!("pdfinfo {}", pdf.display()));
    assert!(info.status.success(), "pdfinfo: {}", text(&info));
    stdout(&info)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("pdfinfo names the page count")
}

/// Render every page with pdftoppm; each page must give one PNG.
fn render_all_pages(pdf: &Path, dir: &Path) -> usize {
    let prefix = dir.join("page");
    let out = sh(&format!(
        "pdftoppm -png -r 30 {} {}",
        pdf.display(),
        prefix.display()
    ));
    assert!(out.status.success(), "pdftoppm: {}", text(&out));
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".png"))
        .count()
}

fn flip_and_verify(out: &Path, copy: &Path, file: &str) -> String {
    assert!(sh(&format!("cp -r {} {}", out.display(), copy.display()))
        .status
        .success());
    let target = copy.join(file);
    let mut bytes = std::fs::read(&target).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&target, bytes).unwrap();
    let v = keyrite(&["verify", copy.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5), "{file} tampered: {}", text(&v));
    stdout(&v)
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn root_rehearsal_report_matches_its_schema_and_reads_back_from_the_pdf() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let run = keyrite(&["rehearse", P256, "--auto", "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", text(&run));
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();

    let v = keyrite(&["verify", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(
        stdout(&v).lines().any(|l| l.starts_with("ok")
            && l.contains("report.pdf")
            && l.contains("byte-identical")),
        "{}",
        text(&v)
    );

    if let Some(python) = jsonschema_python() {
        validate(&python, &out.join("report.json")).unwrap();
        // The validator can fail: a report without its log head, or with a short key hash, is refused.
        let mut broken = report.clone();
        broken.as_object_mut().unwrap().remove("log_head");
        broken["keys"][0]["key_hash"] = "abc".into();
        let path = dir.path().join("broken.json");
        std::fs::write(&path, serde_json::to_vec(&broken).unwrap()).unwrap();
        let err = validate(&python, &path).unwrap_err();
        assert!(
            err.contains("log_head") && err.contains("key_hash"),
            "{err}"
        );
    }

    let pdf = out.join("report.pdf");
    if have("pdftotext") && have("pdfinfo") && have("pdftoppm") {
        let pages = pdf_pages(&pdf);
        assert!(pages >= 3, "{pages} pages");
        let shown = pdftotext(&pdf);
        for p in report["participants"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            assert!(shown.contains(name), "{name} missing from report.pdf");
        }
        for k in report["keys"].as_array().unwrap() {
            let hash = grouped(k["key_hash"].as_str().unwrap());
            assert!(shown.contains(&hash), "key hash {hash} missing:\n{shown}");
        }
        assert!(shown.contains("REHEARSAL"));
        // Personal cards: every card's key hash as printed, and, on the signature page, the file of
        // every report signature the ceremony wrote (very-high: every carded participant signs).
        let cards = report["personal_cards"].as_array().unwrap();
        assert_eq!(cards.len(), 6, "the shipped script gives everyone a card");
        for c in cards {
            let hash = grouped(c["key_hash"].as_str().unwrap());
            assert!(
                shown.contains(&hash),
                "card key hash {hash} missing:\n{shown}"
            );
        }
        assert!(shown.contains("REHEARSAL participants CA"));
        assert!(shown.contains("[signed]"));
        let mut p7s: Vec<String> = std::fs::read_dir(out.join("signatures"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".p7s"))
            .collect();
        p7s.sort();
        assert_eq!(p7s.len(), 2 * cards.len(), "{p7s:?}");
        for file in &p7s {
            assert!(shown.contains(file.as_str()), "{file} missing:\n{shown}");
        }
        for page in 1..=pages {
            let mark = format!("page {page} of {pages}");
            assert!(shown.contains(&mark), "{mark} missing");
        }
        let sha = sh(&format!("sha256sum {}", out.join("report.json").display()));
        let sha = stdout(&sha).split_whitespace().next().unwrap().to_string();
        assert_eq!(
            shown.matches(&grouped(&sha)).count(),
            pages,
            "every page's footer carries the report.json SHA-256"
        );
        certificates_shown(&out, &report, &shown);
        let pngs = dir.path().join("png");
        std::fs::create_dir(&pngs).unwrap();
        assert_eq!(render_all_pages(&pdf, &pngs), pages);
    }

    // One flipped byte in report.pdf or report.json fails verify, naming that file.
    let fails = flip_and_verify(&out, &dir.path().join("t-pdf"), "report.pdf");
    assert!(fails.contains("report.pdf"), "{fails}");
    // verify keeps the confirmations in a temporary file; without one (no usable $TMPDIR) it
    // reads them from the log again, with the same findings.
    for bundle in [&out, &dir.path().join("t-pdf")] {
        let no_tmp = Command::new(env!("CARGO_BIN_EXE_keyrite"))
            .args(["verify", bundle.to_str().unwrap()])
            .env("TMPDIR", dir.path().join("no-such-folder"))
            .output()
            .unwrap();
        let with_tmp = keyrite(&["verify", bundle.to_str().unwrap()]);
        assert_eq!(
            no_tmp.status.code(),
            with_tmp.status.code(),
            "{}",
            text(&no_tmp)
        );
        assert_eq!(stdout(&no_tmp), stdout(&with_tmp));
    }
    let fails = flip_and_verify(&out, &dir.path().join("t-json"), "report.json");
    assert!(fails.contains("report.json"), "{fails}");
    // A bundle without its PDF does not verify either.
    std::fs::remove_file(&pdf).unwrap();
    let v = keyrite(&["verify", out.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(5));
    assert!(stdout(&v).contains("report.pdf"), "{}", text(&v));
}

/// Every certificate's issuer and extensions: in report.json as openssl reads the certificate file,
/// and on report.pdf by name.
fn certificates_shown(out: &Path, report: &Value, shown: &str) {
    let certs = report["certificates"].as_array().unwrap();
    assert!(!certs.is_empty());
    for c in certs {
        let file = out.join(c["file"].as_str().unwrap());
        let issuer = sh(&format!(
            "openssl x509 -in {} -noout -issuer -nameopt RFC2253",
            file.display()
        ));
        let issuer = stdout(&issuer)
            .trim()
            .trim_start_matches("issuer=")
            .to_string();
        assert_eq!(c["issuer"].as_str().unwrap(), issuer);
        assert!(shown.contains(&issuer), "issuer {issuer} missing:\n{shown}");
        let openssl = stdout(&sh(&format!(
            "openssl x509 -in {} -noout -text",
            file.display()
        )));
        let exts = c["extensions"].as_array().unwrap();
        let names: Vec<&str> = exts.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "basicConstraints",
                "keyUsage",
                "subjectKeyIdentifier",
                "authorityKeyIdentifier"
            ]
        );
        assert_eq!(
            openssl.matches("X509v3 ").count() - 1,
            exts.len(),
            "openssl lists as many extensions:\n{openssl}"
        );
        for e in exts {
            let (name, value) = (e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
            assert!(shown.contains(name), "extension {name} missing:\n{shown}");
            // openssl prints the same values: CA:TRUE, the key identifiers' hex.
            let bare = value.trim_start_matches("keyid:");
            if name != "keyUsage" {
                assert!(openssl.contains(bare), "{name} {value} not in:\n{openssl}");
            }
        }
        assert!(openssl.contains("X509v3 Basic Constraints: critical"));
        assert_eq!(exts[0]["critical"], true);
        assert!(shown.contains("critical"));
    }
}

const ATTACH_STEP: &str = r#"
[[steps]]
id = "attach-sign-in-sheet"
title = "Attach the scanned sign-in sheet"
instructions = "Scan the signed sign-in sheet and give keyrite the path of the scan."
action = "attach"
attachment = "scanned sign-in sheet"
confirm_by = ["master-of-ceremony"]
witnessed_by = ["internal-witness"]
"#;

#[test]
fn attach_records_a_hash_that_sha256sum_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("with-attach.toml");
    let base = std::fs::read_to_string(root().join(P256)).unwrap();
    std::fs::write(&script, format!("{base}{ATTACH_STEP}")).unwrap();
    let scan = dir.path().join("sign-in sheet.pdf");
    std::fs::write(
        &scan,
        b"%PDF-1.4 a scanned sheet, not a real one\n".repeat(1000),
    )
    .unwrap();
    let out = dir.path().join("bundle");
    let attach = format!("attach-sign-in-sheet={}", scan.display());
    let run = keyrite(&[
        "rehearse",
        script.to_str().unwrap(),
        "--auto",
        "--attach",
        &attach,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let a = &report["attachments"][0];
    assert_eq!(a["description"], "scanned sign-in sheet");
    assert_eq!(a["file_name"], "sign-in sheet.pdf");
    assert_eq!(a["step"], "attach-sign-in-sheet");
    assert_eq!(a["size"], 41000);
    if have("sha256sum") {
        let sum = sh(&format!("sha256sum '{}'", scan.display()));
        let sum = stdout(&sum).split_whitespace().next().unwrap().to_string();
        assert_eq!(a["sha256"], sum.as_str());
        let log = std::fs::read_to_string(out.join("audit.jsonl")).unwrap();
        assert!(log.contains(&sum), "the hash is in the log");
    }
    let v = keyrite(&["verify", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
    if let Some(python) = jsonschema_python() {
        validate(&python, &out.join("report.json")).unwrap();
    }
    if have("pdftotext") {
        let shown = pdftotext(&out.join("report.pdf"));
        assert!(shown.contains("scanned sign-in sheet"), "{shown}");
    }

    // Without a path the step fails and the ceremony stops, saying how to give one.
    let out2 = dir.path().join("bundle2");
    let run = keyrite(&[
        "rehearse",
        script.to_str().unwrap(),
        "--auto",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(3), "{}", text(&run));
    assert!(
        text(&run).contains("--attach attach-sign-in-sheet=PATH"),
        "{}",
        text(&run)
    );
    // --attach must name an attach step of the script.
    let run = keyrite(&[
        "rehearse",
        P256,
        "--auto",
        "--attach",
        "generate-root-key=/dev/null",
        "--out",
        dir.path().join("bundle3").to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{}", text(&run));
}

#[test]
fn print_makes_the_paper_script_for_the_room() {
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("script.pdf");
    let out = keyrite(&["print", P256, "--out", pdf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let again = dir.path().join("again.pdf");
    assert!(keyrite(&["print", P256, "--out", again.to_str().unwrap()])
        .status
        .success());
    assert_eq!(std::fs::read(&pdf).unwrap(), std::fs::read(&again).unwrap());
    // Never overwrites.
    let out = keyrite(&["print", P256, "--out", pdf.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));

    if have("pdftotext") && have("pdfinfo") {
        let shown = pdftotext(&pdf);
        let script: toml::Value =
            toml::from_str(&std::fs::read_to_string(root().join(P256)).unwrap()).unwrap();
        for step in script["steps"].as_array().unwrap() {
            let id = step["id"].as_str().unwrap();
            assert!(shown.contains(id), "step {id} missing");
        }
        for p in script["participants"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            assert!(shown.contains(name), "{name} missing");
        }
        for needle in ["Initials", "Time (UTC)", "Exceptions", "Roles involved"] {
            assert!(shown.contains(needle), "{needle} missing");
        }
        let pages = pdf_pages(&pdf);
        assert!(pages >= 3, "{pages} pages");
        assert!(shown.contains(&format!("page {pages} of {pages}")));
        // The last page is the blank exceptions sheet.
        let last = sh(&format!(
            "pdftotext -f {pages} -l {pages} {} -",
            pdf.display()
        ));
        assert!(stdout(&last).contains("Exceptions"), "{}", stdout(&last));
    }
}
