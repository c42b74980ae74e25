//! The pages of the shipped ceremonies' report.pdf and paper script, read back with poppler: each
//! page rendered to PNG (pdftoppm), and on each page (pdftotext -f N -l N) no section heading is
//! the last line, so a heading never stands alone at the bottom of a page. The report of an
//! aborted ceremony states the abort plainly.

mod common;

use common::{have, keyrite, sh, text};
use std::path::Path;

/// Every heading the report and the paper script use (subheadings by their start).
const HEADINGS: [&str; 18] = [
    "Participants",
    "Hardware security module",
    "Keys",
    "Certificates",
    "Activation quorum",
    "Step transcript",
    "Exceptions",
    "Attached external evidence",
    "Files in the evidence folder",
    "Audit-log head",
    "Appendix: personal cards",
    "Ceremony laptop (pre-flight)",
    "Digital signatures",
    "Sign-in sheet",
    "HSM, keys and certificates planned",
    "Quorum cards and bags",
    "Steps",
    "Anchors written at the end",
];

fn is_heading(line: &str) -> bool {
    HEADINGS.contains(&line) || line.starts_with("Key \"") || line.starts_with("Certificate \"")
}

/// The page's lines without the footer (the SHA-256 label and groups, "page x of y") and the
/// REHEARSAL watermark.
fn content_lines(page: &str) -> Vec<String> {
    page.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.contains("SHA-256") || l.contains(':') || l.len() > 90)
        .filter(|l| !(l.starts_with("page ") && l.contains(" of ")))
        .filter(|l| {
            !l.split(' ')
                .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .filter(|l| *l != "REHEARSAL")
        .map(str::to_string)
        .collect()
}

fn pages(pdf: &Path) -> usize {
    let info = sh(&format!("pdfinfo {}", pdf.display()));
    assert!(info.status.success(), "pdfinfo: {}", text(&info));
    String::from_utf8_lossy(&info.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("pdfinfo names the page count")
}

/// Render every page to PNG and check that no page ends with a heading. Returns all pages' text.
fn check_pages(pdf: &Path, png_dir: &Path) -> String {
    let n = pages(pdf);
    let prefix = png_dir.join(pdf.file_stem().unwrap());
    let ppm = sh(&format!(
        "pdftoppm -png -r 50 {} {}",
        pdf.display(),
        prefix.display()
    ));
    assert!(ppm.status.success(), "pdftoppm: {}", text(&ppm));
    let pngs = std::fs::read_dir(png_dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&*pdf.file_stem().unwrap().to_string_lossy()) && name.ends_with(".png")
        })
        .count();
    assert_eq!(pngs, n, "one PNG per page of {}", pdf.display());
    let mut all = String::new();
    for page in 1..=n {
        let out = sh(&format!(
            "pdftotext -f {page} -l {page} {} -",
            pdf.display()
        ));
        assert!(out.status.success(), "pdftotext: {}", text(&out));
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines = content_lines(&shown);
        let last = lines.last().map(String::as_str).unwrap_or("");
        assert!(
            !is_heading(last),
            "{} page {page} of {n} ends with the heading {last:?}:\n{shown}",
            pdf.display()
        );
        all.push_str(&shown);
    }
    all
}

fn tools() -> bool {
    have("pdftotext") && have("pdfinfo") && have("pdftoppm")
}

#[test]
fn the_shipped_reports_never_end_a_page_with_a_heading() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for script in ["root-ca-p256", "root-ca"] {
        let out = dir.path().join(script);
        let run = keyrite(&[
            "rehearse",
            &format!("ceremony-scripts/{script}.toml"),
            "--auto",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{script}: {}", text(&run));
        let pngs = dir.path().join(format!("{script}-pages"));
        std::fs::create_dir(&pngs).unwrap();
        let shown = check_pages(&out.join("report.pdf"), &pngs);
        // The order an auditor reads: summary, people, keys, quorum, transcript, then the rest.
        let at = |h: &str| shown.find(h).unwrap_or_else(|| panic!("{script}: no {h}"));
        assert!(at("Participants") < at("Keys"));
        assert!(at("Certificates") < at("Activation quorum"));
        assert!(at("Activation quorum") < at("Step transcript"));
        assert!(at("Step transcript") < at("Signatures"));
        assert!(at("Signatures") < at("Appendix: personal cards"));
        let v = keyrite(&["verify", out.to_str().unwrap()]);
        assert!(v.status.success(), "{script}: {}", text(&v));
    }
}

#[test]
fn the_shipped_paper_scripts_never_end_a_page_with_a_heading() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for script in [
        "root-ca",
        "root-ca-p256",
        "root-ca-quorum",
        "key-activation",
        "share-health-check",
        "reshare",
        "sub-ca-signing",
        "cross-certificate",
        "crl-issuance",
    ] {
        let pdf = dir.path().join(format!("{script}.pdf"));
        let shipped = common::root().join(format!("ceremony-scripts/{script}.toml"));
        // A script that uses an earlier split must pin its commitments (the policy refuses it
        // otherwise); the room prints it with the pin copied in, as here.
        let source = std::fs::read_to_string(&shipped).unwrap();
        let path = if source.contains("[quorum]") && !script.starts_with("root-ca") {
            let pinned = source.replacen(
                "[quorum]\n",
                &format!("[quorum]\ncommitments_sha256 = \"{}\"\n", "ab".repeat(32)),
                1,
            );
            let copy = dir.path().join(format!("{script}.toml"));
            std::fs::write(&copy, pinned).unwrap();
            copy
        } else {
            shipped
        };
        let out = keyrite(&[
            "print",
            path.to_str().unwrap(),
            "--out",
            pdf.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{script}: {}", text(&out));
        let shown = check_pages(&pdf, dir.path());
        assert!(
            !shown.contains("/ceremony-scripts/"),
            "{script}: an absolute path shows"
        );
        for needle in [
            "Printed name",
            "Time zone",
            "Key hash",
            "Serial read off the device",
        ] {
            if needle == "Key hash" && script != "root-ca" && script != "root-ca-p256" {
                continue;
            }
            assert!(shown.contains(needle), "{script}: no {needle:?}");
        }
        if script != "root-ca-p256" {
            assert!(
                shown.contains("New bag serial"),
                "{script}: no quorum bag list"
            );
        }
        // Later ceremonies of the root: what each signing step signs, and a field for its fingerprint.
        let signs = match script {
            "sub-ca-signing" => Some("Subordinate CA certificate"),
            "cross-certificate" => Some("Cross-certificate"),
            "crl-issuance" => Some("CRL \""),
            _ => None,
        };
        if let Some(what) = signs {
            assert!(shown.contains(what), "{script}: no {what:?}");
            assert!(
                shown.contains("fingerprint as read back"),
                "{script}: no fingerprint field"
            );
        }
    }
}

#[test]
fn an_aborted_report_states_the_abort_plainly() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let answers = dir.path().join("answers.toml");
    // The pre-flight gets only the master of ceremony, not the witness: the ceremony aborts there.
    std::fs::write(
        &answers,
        "[[steps]]\nid = \"preflight\"\nconfirm = [\"Maria Keller\"]\n",
    )
    .unwrap();
    let out = dir.path().join("bundle");
    let run = keyrite(&[
        "rehearse",
        "ceremony-scripts/root-ca-p256.toml",
        "--answers",
        answers.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(3), "{}", text(&run));
    let shown = check_pages(&out.join("report.pdf"), dir.path());
    assert!(shown.contains("This ceremony was aborted"), "{shown}");
    // The formal result says what happened; advice on what to do next stays out of it.
    let result = shown
        .lines()
        .find(|l| l.contains("ABORTED"))
        .unwrap_or_else(|| panic!("no result line: {shown}"));
    assert!(
        !result.contains("—") && !result.contains("check "),
        "{result}"
    );
    assert!(
        shown.contains("No key, certificate or other file"),
        "{shown}"
    );
}
