use super::*;
use std::os::unix::fs::symlink;

fn bundle() -> (tempfile::TempDir, BundleDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("artifacts")).unwrap();
    std::fs::write(dir.path().join("artifacts/a.pem"), b"abc").unwrap();
    std::fs::write(dir.path().join("audit.jsonl"), b"one\ntwo\nthr").unwrap();
    let b = BundleDir::open(dir.path()).unwrap();
    (dir, b)
}

#[test]
fn regular_files_inside_are_read() {
    let (_dir, b) = bundle();
    assert_eq!(b.read("artifacts/a.pem", 3).unwrap(), b"abc");
    assert_eq!(b.read_log("audit.jsonl").unwrap(), b"one\ntwo\nthr");
    assert_eq!(b.kind("artifacts").unwrap(), Some(Kind::Folder));
    assert_eq!(b.kind("nothing").unwrap(), None);
    let names: Vec<String> = b.list("").unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["artifacts", "audit.jsonl"]);
}

#[test]
fn limits_are_enforced() {
    let (_dir, b) = bundle();
    assert!(matches!(
        b.read("artifacts/a.pem", 2),
        Err(ReadError::TooLarge(2))
    ));
}

#[test]
fn a_log_line_over_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = b"short\n".to_vec();
    log.extend(std::iter::repeat_n(b'x', LOG_LINE_LIMIT as usize + 1));
    std::fs::write(dir.path().join("audit.jsonl"), &log).unwrap();
    let b = BundleDir::open(dir.path()).unwrap();
    assert!(matches!(
        b.read_log("audit.jsonl"),
        Err(ReadError::LineTooLong(2))
    ));
}

#[test]
fn links_fifos_and_devices_are_refused_without_blocking() {
    let (dir, b) = bundle();
    let p = dir.path();
    symlink("/dev/zero", p.join("report.pdf")).unwrap();
    symlink("/etc", p.join("signatures")).unwrap();
    symlink("a.pem", p.join("artifacts/b.pem")).unwrap();
    rustix::fs::mknodat(
        CWD,
        p.join("report.json"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert!(matches!(b.read("report.pdf", 10), Err(ReadError::Symlink)));
    assert!(matches!(
        b.read("artifacts/b.pem", 10),
        Err(ReadError::Symlink)
    ));
    assert!(matches!(
        b.read("signatures/passwd", 10),
        Err(ReadError::Symlink)
    ));
    assert!(b.list("signatures").is_err());
    let fifo = b.read("report.json", 10).unwrap_err();
    assert_eq!(
        fifo.to_string(),
        "is a FIFO (named pipe), not a regular file: a bundle holds only regular files"
    );
    assert!(matches!(
        b.read("artifacts", 10),
        Err(ReadError::NotRegular("a folder"))
    ));
}

#[test]
fn paths_never_climb_out() {
    let (_dir, b) = bundle();
    for bad in [
        "../x",
        "artifacts/../audit.jsonl",
        "/etc/passwd",
        "",
        "artifacts/",
    ] {
        assert!(b.read(bad, 10).is_err(), "{bad}");
    }
}

#[test]
fn the_log_streams_line_by_line_under_the_same_limits() {
    let (_dir, b) = bundle();
    let mut lines = b.open_log("audit.jsonl").unwrap();
    let mut line = Vec::new();
    let mut seen = Vec::new();
    while lines.next_line(&mut line).unwrap() {
        seen.push(line.clone());
    }
    assert_eq!(
        seen,
        [b"one\n".to_vec(), b"two\n".to_vec(), b"thr".to_vec()]
    );
    let dir = tempfile::tempdir().unwrap();
    let mut log = b"short\n".to_vec();
    log.extend(std::iter::repeat_n(b'x', LOG_LINE_LIMIT as usize + 1));
    log.extend(b"\nafter\n");
    std::fs::write(dir.path().join("audit.jsonl"), &log).unwrap();
    let b = BundleDir::open(dir.path()).unwrap();
    let mut lines = b.open_log("audit.jsonl").unwrap();
    assert!(lines.next_line(&mut line).unwrap());
    assert!(matches!(
        lines.next_line(&mut line),
        Err(ReadError::LineTooLong(2))
    ));
}
