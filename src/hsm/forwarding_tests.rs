//! The wrappers around a real token ([`super::faulty::FaultyHsm`], [`super::timed::TimedHsm`])
//! forward every method of [`super::Hsm`]: a default method left out would answer "unsupported"
//! where the real token works (backup, ML-DSA, ... would fail only under the bench or a fault
//! test). Checked against the trait's source, so a new trait method fails here until forwarded.

use std::collections::BTreeSet;

fn methods(src: &str) -> BTreeSet<String> {
    src.split("fn ")
        .skip(1)
        .filter_map(|s| s.split('(').next())
        .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect()
}

fn trait_methods() -> BTreeSet<String> {
    let module = include_str!("mod.rs");
    let start = module.find("pub trait Hsm {").expect("the trait");
    let end = start + module[start..].find("\n}\n").expect("its end");
    methods(&module[start..end])
}

fn unforwarded(source: &str, impl_line: &str) -> Vec<String> {
    let start = source.find(impl_line).expect("the impl");
    let end = start + source[start..].find("\n}\n").expect("its end");
    let forwarded = methods(&source[start..end]);
    trait_methods().difference(&forwarded).cloned().collect()
}

#[test]
fn the_trait_has_methods_to_forward() {
    let all = trait_methods();
    assert!(all.len() > 20 && all.contains("sign"), "{all:?}");
}

#[test]
fn faulty_hsm_forwards_every_method() {
    let missing = unforwarded(include_str!("faulty.rs"), "impl Hsm for FaultyHsm");
    assert!(missing.is_empty(), "FaultyHsm does not forward {missing:?}");
}

#[test]
fn timed_hsm_forwards_every_method() {
    let missing = unforwarded(include_str!("timed.rs"), "impl<H: Hsm> Hsm for TimedHsm<H>");
    assert!(missing.is_empty(), "TimedHsm does not forward {missing:?}");
}
