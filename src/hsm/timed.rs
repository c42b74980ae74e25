//! Time spent inside PKCS#11, for the performance bench (docs/performance.md, B2): with
//! `KEYRITE_HSM_TIMES=FILE` set, every [`Hsm`] call made through [`TimedHsm`], and every module load,
//! token provisioning and session opening wrapped in [`measure`], adds its wall time to one
//! process-wide sum, and [`write_summary`] appends `hsm_ns=<sum> calls=<n>` to FILE at exit (one line
//! per process: a rehearsal may re-execute itself), with a breakdown by operation. Unset, the wrapper only reads two clocks per call.

use super::{
    AgreementKey, Hsm, HsmError, KekUse, KeyPairInfo, PinChange, PinLimits, PinState,
    SignMechanism, TokenIdentity, TokenObject, UnwrappedKey, WrapMechanism,
};
use crate::script::KeyAlgorithm;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;
use zeroize::Zeroizing;

/// The variable naming the file the summary is appended to.
pub const TIMES_VAR: &str = "KEYRITE_HSM_TIMES";

static HSM_NANOS: AtomicU64 = AtomicU64::new(0);
static HSM_CALLS: AtomicU64 = AtomicU64::new(0);
/// Per operation: (nanoseconds, calls), for the summary's breakdown.
static BY_NAME: Mutex<BTreeMap<&str, (u64, u64)>> = Mutex::new(BTreeMap::new());

/// Run `op`, adding its wall time to the process's PKCS#11 time under `name`.
pub fn measure<T>(name: &'static str, op: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = op();
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    HSM_NANOS.fetch_add(nanos, Ordering::Relaxed);
    HSM_CALLS.fetch_add(1, Ordering::Relaxed);
    let mut by_name = BY_NAME.lock().unwrap_or_else(PoisonError::into_inner);
    let slot = by_name.entry(name).or_default();
    slot.0 += nanos;
    slot.1 += 1;
    out
}

/// Nanoseconds and calls measured so far in this process.
pub fn totals() -> (u64, u64) {
    (
        HSM_NANOS.load(Ordering::Relaxed),
        HSM_CALLS.load(Ordering::Relaxed),
    )
}

/// Append this process's totals to `$KEYRITE_HSM_TIMES`, when set. A failure only costs the figure.
pub fn write_summary() {
    let Some(path) = std::env::var_os(TIMES_VAR) else {
        return;
    };
    let (nanos, calls) = totals();
    let by_name = BY_NAME.lock().unwrap_or_else(PoisonError::into_inner);
    let detail: String = by_name
        .iter()
        .map(|(name, (ns, n))| format!(" {name}={n}x{:.1}ms", *ns as f64 / 1e6))
        .collect();
    let line = format!("hsm_ns={nanos} calls={calls}{detail}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "keyrite: could not append the HSM timing to {}: {e}",
            std::path::Path::new(&path).display()
        );
    }
}

/// An [`Hsm`] whose every call is timed with [`measure`].
pub struct TimedHsm<H>(pub H);

impl<H: Hsm> Hsm for TimedHsm<H> {
    fn identity(&self) -> &TokenIdentity {
        self.0.identity()
    }
    fn login(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        measure("login", || self.0.login(pin))
    }
    fn logout(&mut self) -> Result<(), HsmError> {
        measure("logout", || self.0.logout())
    }
    fn label_exists(&mut self, label: &str) -> Result<bool, HsmError> {
        measure("label_exists", || self.0.label_exists(label))
    }
    fn generate_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        measure("generate_key_pair", || {
            self.0.generate_key_pair(label, algorithm)
        })
    }
    fn key_pair(&mut self, label: &str) -> Result<KeyPairInfo, HsmError> {
        measure("key_pair", || self.0.key_pair(label))
    }
    fn find_private_keys(
        &mut self,
        query: &crate::script::KeyQuery,
    ) -> Result<Vec<(String, String)>, HsmError> {
        measure("find_private_keys", || self.0.find_private_keys(query))
    }
    fn sign(
        &mut self,
        label: &str,
        mechanism: SignMechanism,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        measure("sign", || self.0.sign(label, mechanism, data))
    }
    fn random(&mut self, len: usize) -> Result<Vec<u8>, HsmError> {
        measure("random", || self.0.random(len))
    }
    fn store_certificate(
        &mut self,
        key_label: &str,
        subject_der: &[u8],
        der: &[u8],
    ) -> Result<(), HsmError> {
        measure("store_certificate", || {
            self.0.store_certificate(key_label, subject_der, der)
        })
    }
    fn certificates(&mut self) -> Result<Vec<(String, Vec<u8>)>, HsmError> {
        measure("certificates", || self.0.certificates())
    }
    fn private_key_label(&mut self, id_hex: &str) -> Result<String, HsmError> {
        measure("private_key_label", || self.0.private_key_label(id_hex))
    }
    fn write_data(&mut self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        measure("write_data", || self.0.write_data(label, value))
    }
    fn read_data(&mut self, label: &str) -> Result<Option<Zeroizing<Vec<u8>>>, HsmError> {
        measure("read_data", || self.0.read_data(label))
    }
    fn data_labels(&mut self) -> Result<Vec<String>, HsmError> {
        measure("data_labels", || self.0.data_labels())
    }
    fn destroy_data(&mut self, label: &str) -> Result<usize, HsmError> {
        measure("destroy_data", || self.0.destroy_data(label))
    }
    fn key_objects(&mut self, label: &str, id_hex: &str) -> Result<Vec<TokenObject>, HsmError> {
        measure("key_objects", || self.0.key_objects(label, id_hex))
    }
    fn destroy_object(
        &mut self,
        label: &str,
        id_hex: &str,
        object: &TokenObject,
    ) -> Result<usize, HsmError> {
        measure("destroy_object", || {
            self.0.destroy_object(label, id_hex, object)
        })
    }
    fn pin_state(&mut self) -> Result<PinState, HsmError> {
        measure("pin_state", || self.0.pin_state())
    }
    fn pin_limits(&mut self) -> Result<PinLimits, HsmError> {
        measure("pin_limits", || self.0.pin_limits())
    }
    fn warnings(&self) -> Vec<String> {
        self.0.warnings()
    }
    fn mechanisms(&mut self) -> Result<Option<Vec<super::capabilities::Offered>>, HsmError> {
        measure("mechanisms", || self.0.mechanisms())
    }
    fn login_protected(&mut self) -> Result<(), HsmError> {
        measure("login_protected", || self.0.login_protected())
    }
    fn login_so(&mut self, pin: &SecretString) -> Result<(), HsmError> {
        measure("login_so", || self.0.login_so(pin))
    }
    fn set_pin(&mut self, change: PinChange<'_>) -> Result<(), HsmError> {
        measure("set_pin", || self.0.set_pin(change))
    }
    fn init_user_pin(&mut self, new: &SecretString) -> Result<(), HsmError> {
        measure("init_user_pin", || self.0.init_user_pin(new))
    }
    fn agreement_key(&mut self, label: &str) -> Result<Option<AgreementKey>, HsmError> {
        measure("agreement_key", || self.0.agreement_key(label))
    }
    fn generate_agreement_key(&mut self, label: &str) -> Result<AgreementKey, HsmError> {
        measure("generate_agreement_key", || {
            self.0.generate_agreement_key(label)
        })
    }
    fn ecdh(&mut self, label: &str, peer: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        measure("ecdh", || self.0.ecdh(label, peer))
    }
    fn destroy_agreement_key(&mut self, label: &str) -> Result<usize, HsmError> {
        measure("destroy_agreement_key", || {
            self.0.destroy_agreement_key(label)
        })
    }
    fn wrap_mechanism(&mut self) -> Result<Option<WrapMechanism>, HsmError> {
        measure("wrap_mechanism", || self.0.wrap_mechanism())
    }
    fn generate_backup_key_pair(
        &mut self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<KeyPairInfo, HsmError> {
        measure("generate_backup_key_pair", || {
            self.0.generate_backup_key_pair(label, algorithm)
        })
    }
    fn import_trusted_kek(
        &mut self,
        label: &str,
        kek: &[u8],
        so_pin: &SecretString,
        usage: KekUse,
    ) -> Result<(), HsmError> {
        measure("import_trusted_kek", || {
            self.0.import_trusted_kek(label, kek, so_pin, usage)
        })
    }
    fn wrap_key(
        &mut self,
        kek_label: &str,
        key_label: &str,
        mechanism: WrapMechanism,
    ) -> Result<Vec<u8>, HsmError> {
        measure("wrap_key", || {
            self.0.wrap_key(kek_label, key_label, mechanism)
        })
    }
    fn unwrap_key(
        &mut self,
        kek_label: &str,
        blob: &[u8],
        label: &str,
        algorithm: KeyAlgorithm,
        mechanism: WrapMechanism,
    ) -> Result<UnwrappedKey, HsmError> {
        measure("unwrap_key", || {
            self.0
                .unwrap_key(kek_label, blob, label, algorithm, mechanism)
        })
    }
    fn create_public_key(
        &mut self,
        label: &str,
        id_hex: &str,
        spki_der: &[u8],
    ) -> Result<(), HsmError> {
        measure("create_public_key", || {
            self.0.create_public_key(label, id_hex, spki_der)
        })
    }
    fn destroy_labelled(&mut self, label: &str, secret: bool) -> Result<usize, HsmError> {
        measure("destroy_labelled", || {
            self.0.destroy_labelled(label, secret)
        })
    }
    fn secret_key_count(&mut self) -> Result<usize, HsmError> {
        measure("secret_key_count", || self.0.secret_key_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsm::mock::MockHsm;

    #[test]
    fn every_call_through_the_wrapper_is_counted() {
        let mut hsm = TimedHsm(MockHsm::new("timed"));
        let (_, before) = totals();
        hsm.random(8).unwrap();
        hsm.label_exists("x").unwrap();
        let (_, after) = totals();
        // Other tests may measure concurrently: at least our two calls were added.
        assert!(after >= before + 2, "{before} -> {after}");
    }
}
