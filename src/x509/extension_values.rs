//! Values of the extensions certificates issued to other CAs carry (issue 11), in the words
//! `openssl x509 -text` uses: policies, authority information access, CRL distribution points and
//! name constraints.

use const_oid::db::rfc5280::{ID_AD_CA_ISSUERS, ID_AD_OCSP};
use const_oid::AssociatedOid;
use der::Decode;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, CertificatePolicies, CrlDistributionPoints, NameConstraints,
};
use x509_cert::ext::Extension;

fn general_name(name: &GeneralName) -> String {
    match name {
        GeneralName::UniformResourceIdentifier(u) => format!("URI:{}", u.as_str()),
        GeneralName::DnsName(d) => format!("DNS:{}", d.as_str()),
        GeneralName::Rfc822Name(e) => format!("email:{}", e.as_str()),
        GeneralName::DirectoryName(n) => format!("DirName:{n}"),
        other => format!("{other:?}"),
    }
}

/// The decoded value, or `None` for an extension this file does not handle.
pub fn value(ext: &Extension) -> Option<String> {
    let der = ext.extn_value.as_bytes();
    let oid = ext.extn_id;
    if oid == CertificatePolicies::OID {
        let policies = CertificatePolicies::from_der(der).ok()?;
        let ids: Vec<String> = policies
            .0
            .iter()
            .map(|p| format!("Policy: {}", p.policy_identifier))
            .collect();
        return Some(ids.join(", "));
    }
    if oid == AuthorityInfoAccessSyntax::OID {
        let aia = AuthorityInfoAccessSyntax::from_der(der).ok()?;
        let items: Vec<String> = aia
            .0
            .iter()
            .map(|a| {
                let method = match a.access_method {
                    m if m == ID_AD_OCSP => "OCSP".to_string(),
                    m if m == ID_AD_CA_ISSUERS => "CA Issuers".to_string(),
                    m => m.to_string(),
                };
                format!("{method} - {}", general_name(&a.access_location))
            })
            .collect();
        return Some(items.join(", "));
    }
    if oid == CrlDistributionPoints::OID {
        let dps = CrlDistributionPoints::from_der(der).ok()?;
        let mut items = Vec::new();
        for dp in &dps.0 {
            if let Some(DistributionPointName::FullName(names)) = &dp.distribution_point {
                items.extend(names.iter().map(general_name));
            }
        }
        return Some(format!("Full Name: {}", items.join(", ")));
    }
    if oid == NameConstraints::OID {
        let nc = NameConstraints::from_der(der).ok()?;
        let list =
            |trees: &Option<Vec<x509_cert::ext::pkix::constraints::name::GeneralSubtree>>| {
                trees
                    .iter()
                    .flatten()
                    .map(|t| general_name(&t.base))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
        return Some(format!(
            "Permitted: {}; Excluded: {}",
            list(&nc.permitted_subtrees),
            list(&nc.excluded_subtrees)
        ));
    }
    None
}
