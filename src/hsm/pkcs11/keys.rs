//! Finding key objects afresh (handles to private objects die at logout), reading a key pair's public
//! half and evidence attributes, and the templates keyrite generates keys with.

use super::{Ck, Pkcs11Hsm};
use crate::hsm::{spki, HsmError, KeyAttributes, KeyPairInfo};
use crate::script::KeyAlgorithm;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, KeyType, MlDsaParameterSetType, ObjectClass, ObjectHandle,
    ParameterSetType,
};
use cryptoki::types::Ulong;

impl Pkcs11Hsm {
    pub(super) fn find(
        &self,
        template: &[Attribute],
        doing: &str,
    ) -> Result<Vec<ObjectHandle>, HsmError> {
        self.session
            .find_objects(template)
            .ck("C_FindObjects", || doing.into())
    }

    pub(super) fn find_one(
        &self,
        template: &[Attribute],
        what: &str,
        label: &str,
    ) -> Result<ObjectHandle, HsmError> {
        let doing = format!("find the {what} \"{label}\"");
        match self.find(template, &doing)?.as_slice() {
            [one] => Ok(*one),
            [] => Err(HsmError::new(
                doing,
                format!("token \"{}\" has no {what} labelled \"{label}\"", self.token()),
                "check the key label in the script (pkcs11-tool --list-objects shows the token's objects)",
            )),
            many => Err(HsmError::new(
                doing,
                format!("token \"{}\" has {} {what}s labelled \"{label}\"", self.token(), many.len()),
                "labels must be unique on the token: resolve the duplicates before the ceremony",
            )),
        }
    }

    /// The private key, then its public half by CKA_ID (by label when the key has no CKA_ID).
    pub(super) fn find_pair(&self, label: &str) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
        let label_attr = Attribute::Label(label.as_bytes().to_vec());
        let private = self.find_one(
            &[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                label_attr.clone(),
            ],
            "private key",
            label,
        )?;
        let id = self.id_of(private, label)?;
        let by = if id.is_empty() {
            label_attr
        } else {
            Attribute::Id(id)
        };
        let public = self.find_one(
            &[Attribute::Class(ObjectClass::PUBLIC_KEY), by],
            "public key",
            label,
        )?;
        Ok((private, public))
    }

    /// Every private key matching `query`, as (CKA_LABEL, CKA_ID hex): an existing key from an
    /// earlier ceremony must match exactly one.
    pub(super) fn private_keys(
        &self,
        query: &crate::script::KeyQuery,
    ) -> Result<Vec<(String, String)>, HsmError> {
        let doing = format!("find the private key by {query}");
        self.require_login(&doing)?;
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &query.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &query.id {
            template.push(Attribute::Id(id.clone()));
        }
        let mut found = Vec::new();
        for key in self.find(&template, &doing)? {
            let (mut label, mut id) = (String::new(), Vec::new());
            for attr in self.attributes(key, &[AttributeType::Label, AttributeType::Id], &doing)? {
                match attr {
                    Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
                    Attribute::Id(v) => id = v,
                    _ => {}
                }
            }
            found.push((label, hex::encode(id)));
        }
        Ok(found)
    }

    pub(super) fn attributes(
        &self,
        object: ObjectHandle,
        types: &[AttributeType],
        label: &str,
    ) -> Result<Vec<Attribute>, HsmError> {
        self.session
            .get_attributes(object, types)
            .ck("C_GetAttributeValue", || {
                format!("read the attributes of \"{label}\"")
            })
    }

    pub(super) fn key_type(
        &self,
        object: ObjectHandle,
        label: &str,
    ) -> Result<Option<KeyType>, HsmError> {
        let attrs = self.attributes(object, &[AttributeType::KeyType], label)?;
        Ok(attrs.into_iter().find_map(|a| match a {
            Attribute::KeyType(t) => Some(t),
            _ => None,
        }))
    }

    pub(super) fn id_of(&self, object: ObjectHandle, label: &str) -> Result<Vec<u8>, HsmError> {
        let attrs = self.attributes(object, &[AttributeType::Id], label)?;
        Ok(attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Id(id) => Some(id),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Public key as SPKI plus the evidence attributes of the private key.
    pub(super) fn describe(
        &self,
        label: &str,
        private: ObjectHandle,
        public: ObjectHandle,
    ) -> Result<KeyPairInfo, HsmError> {
        use AttributeType as T;
        let doing = format!("read key pair \"{label}\"");
        let mut attributes = KeyAttributes::default();
        let mut id = Vec::new();
        let mut key_type = None;
        let wanted = [&[T::Id, T::KeyType][..], &EVIDENCE[..]].concat();
        for attr in self.attributes(private, &wanted, label)? {
            match attr {
                Attribute::Id(v) => id = v,
                Attribute::KeyType(v) => key_type = Some(v),
                other => evidence(&mut attributes, &other),
            }
        }
        // Issue 12: only a key made for backup is extractable; then say by which keys.
        if attributes.extractable == Some(true) {
            for attr in self.attributes(private, &[T::WrapWithTrusted], label)? {
                if let Attribute::WrapWithTrusted(v) = attr {
                    attributes.wrap_with_trusted = Some(v);
                }
            }
        }
        let unsupported = |what: String| {
            HsmError::new(
                doing.clone(),
                what,
                "keyrite handles RSA-3072, RSA-4096, P-256, P-384 and ML-DSA-44/65/87 keys: name a key of one of those",
            )
        };
        let (algorithm, spki_der) = if key_type == Some(KeyType::EC) {
            let (mut params, mut point) = (Vec::new(), Vec::new());
            for attr in self.attributes(public, &[T::EcParams, T::EcPoint], label)? {
                match attr {
                    Attribute::EcParams(v) => params = v,
                    Attribute::EcPoint(v) => point = v,
                    _ => {}
                }
            }
            let algorithm = [KeyAlgorithm::P256, KeyAlgorithm::P384]
                .into_iter()
                .find(|alg| spki::ec_params_der(*alg).as_deref() == Some(params.as_slice()))
                .ok_or_else(|| {
                    unsupported(format!(
                        "\"{label}\" is on a curve keyrite does not support"
                    ))
                })?;
            (algorithm, spki::ec_spki_der(algorithm, &point))
        } else if key_type == Some(KeyType::RSA) {
            let (mut modulus, mut exponent) = (Vec::new(), Vec::new());
            for attr in self.attributes(public, &[T::Modulus, T::PublicExponent], label)? {
                match attr {
                    Attribute::Modulus(v) => modulus = v,
                    Attribute::PublicExponent(v) => exponent = v,
                    _ => {}
                }
            }
            let algorithm = match rsa_bits(&modulus) {
                3072 => KeyAlgorithm::Rsa3072,
                4096 => KeyAlgorithm::Rsa4096,
                bits => return Err(unsupported(format!("\"{label}\" is an RSA-{bits} key"))),
            };
            (algorithm, spki::rsa_spki_der(&modulus, &exponent))
        } else if key_type == Some(KeyType::ML_DSA) {
            ml_dsa_public(&self.attributes(public, &[T::ParameterSet, T::Value], label)?)
                .ok_or_else(|| {
                    unsupported(format!(
                        "\"{label}\" is an ML-DSA key of a parameter set keyrite does not know"
                    ))
                })?
        } else {
            return Err(unsupported(format!(
                "\"{label}\" is neither an RSA, an EC nor an ML-DSA key"
            )));
        };
        let spki_der = spki_der.map_err(|e| {
            HsmError::new(
                doing.clone(),
                format!("the token's public key is malformed: {e}"),
                "report this to the HSM vendor",
            )
        })?;
        Ok(KeyPairInfo {
            label: label.to_string(),
            id_hex: hex::encode(id),
            algorithm,
            spki_der,
            attributes,
        })
    }
}

/// The parameter set (CKA_PARAMETER_SET) and SPKI (from CKA_VALUE) of an ML-DSA public key.
fn ml_dsa_public(attrs: &[Attribute]) -> Option<(KeyAlgorithm, Result<Vec<u8>, String>)> {
    let set = attrs.iter().find_map(|a| match a {
        Attribute::ParameterSet(p) => Some(Ulong::from(*p)),
        _ => None,
    })?;
    let value = attrs.iter().find_map(|a| match a {
        Attribute::Value(v) => Some(v.as_slice()),
        _ => None,
    })?;
    let algorithm = ML_DSA_SETS
        .into_iter()
        .find(|(_, p)| Ulong::from(ParameterSetType::from(*p)) == set)?
        .0;
    Some((algorithm, spki::ml_dsa_spki_der(algorithm, value)))
}

const ML_DSA_SETS: [(KeyAlgorithm, MlDsaParameterSetType); 3] = [
    (KeyAlgorithm::MlDsa44, MlDsaParameterSetType::ML_DSA_44),
    (KeyAlgorithm::MlDsa65, MlDsaParameterSetType::ML_DSA_65),
    (KeyAlgorithm::MlDsa87, MlDsaParameterSetType::ML_DSA_87),
];

/// Bit length of a big-endian unsigned integer.
fn rsa_bits(modulus: &[u8]) -> usize {
    let digits = modulus.iter().skip_while(|b| **b == 0).collect::<Vec<_>>();
    digits
        .first()
        .map_or(0, |top| digits.len() * 8 - top.leading_zeros() as usize)
}

type Templates = (Mechanism<'static>, Vec<Attribute>, Vec<Attribute>);

/// What every key object keyrite makes carries: on the token, private or not, under its label and
/// CKA_ID (signing keys here, key-agreement keys in `agree.rs`).
pub(super) fn key_common(label: &str, id: &[u8], private: bool) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(private),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

/// Mechanism, public and private templates for a ceremony key. Only what the evidence needs is asked
/// for, so that every token accepts it: the private half is a token object that is private, sensitive,
/// non-extractable and signs; the public half carries no usage flags at all (tpm2-pkcs11 derives
/// CKA_VERIFY from the private key's flags and refuses a template that disagrees). What matters is
/// read back afterwards ([`Pkcs11Hsm::check_key_protection`]) rather than assumed.
pub(super) fn templates(
    label: &str,
    id: &[u8],
    algorithm: KeyAlgorithm,
) -> cryptoki::error::Result<Templates> {
    let common = |private: bool| key_common(label, id, private);
    let mut private = common(true);
    private.extend([
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ]);
    let mut public = common(false);
    let ml_dsa = ML_DSA_SETS.into_iter().find(|(a, _)| *a == algorithm);
    let mechanism = match (spki::ec_params_der(algorithm), ml_dsa) {
        // FIPS 204 key generation: the parameter set goes on the public template (PKCS#11 3.2).
        (_, Some((_, set))) => {
            public.push(Attribute::ParameterSet(set.into()));
            Mechanism::MlDsaKeyPairGen
        }
        (Some(params), None) => {
            public.push(Attribute::EcParams(params));
            Mechanism::EccKeyPairGen
        }
        (None, None) => {
            let bits = Ulong::try_from(algorithm.bits() as usize)?;
            public.push(Attribute::ModulusBits(bits));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    Ok((mechanism, public, private))
}

impl Pkcs11Hsm {
    /// After generation: the private key must read back as private, sensitive and non-extractable
    /// (a token may silently ignore a template attribute). `None` where the token does not say.
    pub(super) fn check_key_protection(
        &self,
        private: ObjectHandle,
        label: &str,
    ) -> Result<(), HsmError> {
        use AttributeType as T;
        let (mut is_private, mut sensitive, mut extractable) = (None, None, None);
        for attr in self.attributes(private, &[T::Private, T::Sensitive, T::Extractable], label)? {
            match attr {
                Attribute::Private(v) => is_private = Some(v),
                Attribute::Sensitive(v) => sensitive = Some(v),
                Attribute::Extractable(v) => extractable = Some(v),
                _ => {}
            }
        }
        let mut wrong = Vec::new();
        if is_private != Some(true) {
            wrong.push(format!("CKA_PRIVATE is {}", shown(is_private)));
        }
        if sensitive != Some(true) {
            wrong.push(format!("CKA_SENSITIVE is {}", shown(sensitive)));
        }
        if extractable != Some(false) {
            wrong.push(format!("CKA_EXTRACTABLE is {}", shown(extractable)));
        }
        if wrong.is_empty() {
            return Ok(());
        }
        Err(HsmError::new(
            format!("check key \"{label}\""),
            format!(
                "token \"{}\" generated \"{label}\" without the protection keyrite asked for: {} \
                 (the key pair is on the token)",
                self.token(),
                wrong.join(", ")
            ),
            "stop: do not use this key; have the security officer destroy it and check the HSM's key \
             policy before generating again",
        ))
    }
}

fn shown(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "not reported",
    }
}

/// The attributes read back from every key keyrite makes or restores: the evidence that it was made
/// inside the token and cannot leave it ([`KeyAttributes`]).
pub(super) const EVIDENCE: [AttributeType; 5] = [
    AttributeType::Local,
    AttributeType::NeverExtractable,
    AttributeType::AlwaysSensitive,
    AttributeType::Extractable,
    AttributeType::Sensitive,
];

/// Keep `attr` in `a` if it is one of [`EVIDENCE`].
pub(super) fn evidence(a: &mut KeyAttributes, attr: &Attribute) {
    match attr {
        Attribute::Local(v) => a.local = Some(*v),
        Attribute::NeverExtractable(v) => a.never_extractable = Some(*v),
        Attribute::AlwaysSensitive(v) => a.always_sensitive = Some(*v),
        Attribute::Extractable(v) => a.extractable = Some(*v),
        Attribute::Sensitive(v) => a.sensitive = Some(*v),
        _ => {}
    }
}
