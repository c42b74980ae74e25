//! CKR names and what an operator should do about each. Pure code (no cryptoki): the module root turns
//! cryptoki's error into a name, this file says what it means in the ceremony room.

/// `CKR_PIN_INCORRECT` from cryptoki's variant name `PinIncorrect`. Every cryptoki `RvError` variant
/// is the CamelCase of its CKR name, so this conversion covers them all without a 90-line table.
pub(crate) fn ckr_from_variant(variant: &str) -> String {
    let mut out = String::from("CKR");
    for c in variant.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// What to do next, for the codes an operator can meet. `function` refines a few answers.
pub(crate) fn fix_for(function: &str, ckr: &str) -> String {
    let fix = match ckr {
        "CKR_PIN_INCORRECT" if function == "C_Login" => {
            "the PIN was wrong: re-enter it carefully. Tokens lock after a few wrong tries, so check \
             the remaining tries (pkcs11-tool -L shows 'user PIN count low' / 'final try') first"
        }
        "CKR_PIN_INCORRECT" => "the PIN was wrong: re-enter it carefully",
        "CKR_PIN_LOCKED" => {
            "the PIN is locked after too many wrong tries: stop, record it, and have the security \
             officer unblock or reset the user PIN (C_InitPIN as SO) before continuing"
        }
        "CKR_PIN_LEN_RANGE" | "CKR_PIN_INVALID" => {
            "the PIN has a length or characters this token refuses: check its min/max PIN length \
             (pkcs11-tool -L)"
        }
        "CKR_PIN_EXPIRED" => "the PIN has expired: set a new one with the token's PIN tool",
        "CKR_USER_NOT_LOGGED_IN" => "log in (activate the token with the user PIN) before this step",
        "CKR_USER_ALREADY_LOGGED_IN" | "CKR_USER_ANOTHER_ALREADY_LOGGED_IN" => {
            "someone is already logged in to this token: close other programs using it, or log out first"
        }
        "CKR_USER_PIN_NOT_INITIALIZED" => {
            "the token has no user PIN yet: the security officer must set it (C_InitPIN)"
        }
        "CKR_TOKEN_NOT_PRESENT" | "CKR_DEVICE_REMOVED" => {
            "the token is not present: check the HSM is connected and powered, then repeat the step"
        }
        "CKR_TOKEN_NOT_RECOGNIZED" => "the module does not recognise this token: check the module path",
        "CKR_TOKEN_WRITE_PROTECTED" => {
            "the token is write-protected: use a writable token or change its policy"
        }
        "CKR_MECHANISM_INVALID" | "CKR_MECHANISM_PARAM_INVALID" => {
            "this HSM does not support the mechanism for this key: choose an algorithm it lists \
             (pkcs11-tool --list-mechanisms)"
        }
        "CKR_CURVE_NOT_SUPPORTED" | "CKR_DOMAIN_PARAMS_INVALID" => {
            "this HSM does not support the curve: choose another key algorithm in the script"
        }
        "CKR_KEY_SIZE_RANGE" => {
            "this HSM does not support the key size: choose a size its mechanisms list \
             (pkcs11-tool --list-mechanisms)"
        }
        "CKR_TEMPLATE_INCONSISTENT"
        | "CKR_TEMPLATE_INCOMPLETE"
        | "CKR_ATTRIBUTE_VALUE_INVALID"
        | "CKR_ATTRIBUTE_TYPE_INVALID"
        | "CKR_ATTRIBUTE_READ_ONLY" => {
            "the HSM refused the key attributes keyrite asks for (token, private, sensitive, \
             non-extractable, sign-only): check the HSM's key policy allows such keys"
        }
        "CKR_KEY_TYPE_INCONSISTENT" | "CKR_KEY_FUNCTION_NOT_PERMITTED" => {
            "this key cannot be used with this mechanism: check that the script's key algorithm \
             matches the signature algorithm"
        }
        "CKR_DATA_LEN_RANGE" | "CKR_DATA_INVALID" => {
            "the data to sign has a length the mechanism refuses: ECDSA signs a digest, not the message"
        }
        // A template the token will not take often comes back as a bare general error (tpm2-pkcs11's
        // "attr mismatch"): that is not a cabling problem.
        "CKR_GENERAL_ERROR" | "CKR_FUNCTION_FAILED"
            if matches!(
                function,
                "C_GenerateKeyPair" | "C_CreateObject" | "C_SetAttributeValue" | "C_GetAttributeValue"
            ) =>
        {
            "the token refused the request without saying why; with this function that usually means \
             it does not accept an attribute keyrite asked for (docs/hsm-compatibility.md lists what \
             keyrite needs): check the token's own log, and its key or object policy"
        }
        "CKR_DEVICE_ERROR" | "CKR_GENERAL_ERROR" | "CKR_DEVICE_MEMORY" => {
            "the HSM reported a hardware or internal error: check its cabling, power and own logs, \
             restart it and repeat the step; if it happens again, stop the ceremony and call the vendor"
        }
        "CKR_FUNCTION_FAILED" => {
            "the HSM could not do this and gave no reason: repeat the step once; if it fails again, \
             check the HSM's logs (SoftHSM: syslog) and the token's free memory"
        }
        "CKR_SESSION_HANDLE_INVALID" | "CKR_SESSION_CLOSED" => {
            "the session was closed, e.g. the HSM restarted or the token was removed: reopen it"
        }
        "CKR_SESSION_COUNT" => "the token has too many open sessions: close other programs using it",
        "CKR_FUNCTION_NOT_SUPPORTED" => {
            "this PKCS#11 module does not implement the function: use the HSM vendor's full module"
        }
        "CKR_RANDOM_NO_RNG" => "this token has no random number generator: use one that has",
        "CKR_HOST_MEMORY" => "the computer ran out of memory: close other programs and repeat the step",
        "CKR_CRYPTOKI_NOT_INITIALIZED" | "CKR_ARGUMENTS_BAD" | "CKR_OPERATION_ACTIVE" => {
            "keyrite called the module wrongly: report this as a keyrite bug, with the log"
        }
        _ => {
            return format!(
                "look up {ckr} in the HSM vendor's PKCS#11 documentation; keep the log for the report"
            )
        }
    };
    fix.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_become_ckr_names() {
        assert_eq!(ckr_from_variant("PinIncorrect"), "CKR_PIN_INCORRECT");
        assert_eq!(ckr_from_variant("Cancel"), "CKR_CANCEL");
        assert_eq!(
            ckr_from_variant("SessionReadWriteSoExists"),
            "CKR_SESSION_READ_WRITE_SO_EXISTS"
        );
        assert_eq!(ckr_from_variant("RandomNoRng"), "CKR_RANDOM_NO_RNG");
    }

    #[test]
    fn common_codes_have_specific_fixes() {
        assert!(fix_for("C_Login", "CKR_PIN_INCORRECT").contains("remaining tries"));
        assert!(fix_for("C_Sign", "CKR_USER_NOT_LOGGED_IN").starts_with("log in"));
        assert!(fix_for("C_Sign", "CKR_VENDOR_DEFINED").contains("CKR_VENDOR_DEFINED"));
        assert!(fix_for("C_GenerateKeyPair", "CKR_GENERAL_ERROR").contains("attribute"));
        assert!(!fix_for("C_GenerateKeyPair", "CKR_GENERAL_ERROR").contains("cabling"));
        assert!(fix_for("C_Sign", "CKR_GENERAL_ERROR").contains("cabling"));
    }
}
