#![forbid(unsafe_code)]
//! Thin entry point: parse the command line, dispatch, exit with the documented code.

use clap::Parser;

fn main() {
    let cli = keyrite::cli::Cli::parse();
    let code = keyrite::commands::dispatch(cli);
    keyrite::hsm::timed::write_summary();
    std::process::exit(code);
}
