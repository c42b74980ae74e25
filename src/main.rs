#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
//! Thin entry point: parse the command line, dispatch, exit with the documented code.

use clap::Parser;

fn main() {
    keyrite::hardening::harden_or_warn();
    let cli = keyrite::cli::Cli::parse();
    let code = keyrite::commands::dispatch(cli);
    // Every session is closed by now (the ceremony's state was dropped): C_Finalize the modules.
    keyrite::hsm::pkcs11::finalize_modules();
    // A rehearsal's last records (a key, a certificate, a finished split) reach the disk.
    if let Err(e) = keyrite::driver::rehearsal::sync_deferred() {
        eprintln!("keyrite: {e}");
    }
    keyrite::hsm::timed::write_summary();
    std::process::exit(code);
}
