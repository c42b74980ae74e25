//! Shared by the SoftHSM test binaries: a token made by softhsm2-util (not by keyrite), so that
//! `keyrite run` is tested against a token it did not provision itself.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Lay out a private SoftHSM2 configuration in `dir` and initialise the token `example-root-hsm`
/// with softhsm2-util. Returns the path for SOFTHSM2_CONF.
pub fn softhsm_util_token(dir: &Path, so_pin: &str, user_pin: &str) -> PathBuf {
    std::fs::create_dir(dir.join("tokens")).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "example-root-hsm"])
        .args(["--so-pin", so_pin, "--pin", user_pin])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util runs");
    assert!(
        init.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    conf
}
