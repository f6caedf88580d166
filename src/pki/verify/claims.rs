//! Reading the claim extensions of a model-evaluation certificate.
//!
//! The [`Verifier`](super::Verifier) calls this only after webpki accepted
//! the chain; [`certificate_claims`] reads a certificate already bound by
//! other means. Every missing or malformed field is reported, not just the
//! first.

use x509_parser::asn1_rs::FromDer;
use x509_parser::certificate::X509Certificate;

use super::{CertProblem, CertProblemKind};
use crate::pki::profile::{oid_to_string, ClaimsBuilder, EvaluationClaims, Field, Profile};

/// The claims of a model-evaluation certificate (DER) under `profile`,
/// read without checking the chain: for showing what a certificate that is
/// already bound by other means (its fingerprint in the ledger) says.
pub fn certificate_claims(der: &[u8], profile: &Profile) -> Result<EvaluationClaims, String> {
    let (_, leaf) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
    read_claims(&leaf, profile).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Read every claim extension; report every missing or malformed field.
pub(super) fn read_claims(
    leaf: &X509Certificate<'_>,
    profile: &Profile,
) -> Result<EvaluationClaims, Vec<CertProblem>> {
    let mut builder = ClaimsBuilder::default();
    let mut problems = Vec::new();
    for field in Field::ALL {
        let arcs = profile.field_oid(field);
        let oid_s = oid_to_string(&arcs);
        let oid = match x509_parser::asn1_rs::Oid::from(&arcs) {
            Ok(o) => o,
            Err(_) => {
                problems.push(CertProblem::new(
                    CertProblemKind::ExtensionMalformed(field),
                    format!("profile OID {oid_s} cannot be encoded"),
                ));
                continue;
            }
        };
        match leaf.get_extension_unique(&oid) {
            Err(_) => problems.push(CertProblem::new(
                CertProblemKind::ExtensionMalformed(field),
                format!(
                    "extension {} ({oid_s}) appears more than once",
                    field.name()
                ),
            )),
            Ok(None) => problems.push(CertProblem::new(
                CertProblemKind::ExtensionMissing(field),
                format!("extension {} ({oid_s}) is missing", field.name()),
            )),
            Ok(Some(ext)) => match <&str>::from_der(ext.value) {
                Ok(([], value)) => {
                    if let Err(reason) = builder.set(field, value) {
                        problems.push(CertProblem::new(
                            CertProblemKind::ExtensionMalformed(field),
                            format!("extension {} ({oid_s}): {reason}", field.name()),
                        ));
                    }
                }
                Ok(_) => problems.push(CertProblem::new(
                    CertProblemKind::ExtensionMalformed(field),
                    format!(
                        "extension {} ({oid_s}): trailing data after the UTF8String",
                        field.name()
                    ),
                )),
                Err(_) => problems.push(CertProblem::new(
                    CertProblemKind::ExtensionMalformed(field),
                    format!(
                        "extension {} ({oid_s}) is not a DER UTF8String",
                        field.name()
                    ),
                )),
            },
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    builder.finish().map_err(|missing| {
        missing
            .into_iter()
            .map(|f| CertProblem::new(CertProblemKind::ExtensionMissing(f), format!("{f} missing")))
            .collect()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{CertificateCheck, TrustBundle, Verifier};
    use super::*;
    use crate::pki::dev::{sample_claims, LeafSpec, TestPki};
    use rustls_pki_types::UnixTime;

    fn kinds(c: &CertificateCheck) -> Vec<CertProblemKind> {
        c.problems.iter().map(|p| p.kind).collect()
    }

    fn check(pki: &TestPki, bundle: &TrustBundle, chain: &str) -> CertificateCheck {
        Verifier::default().verify(bundle, chain, UnixTime::now(), &pki.profile)
    }

    #[test]
    fn each_field_missing_and_malformed() {
        let pki = TestPki::new().unwrap();
        let bundle = pki.bundle().unwrap();
        let malformed: Vec<(Field, &str)> = vec![
            (Field::ModelDigest, "sha256:ABCDEF"),
            (Field::ModelName, ""),
            (Field::ModelVersion, " 1.0"),
            (Field::Developer, "Acme\nEvil"),
            (Field::SuiteId, ""),
            (Field::SuiteVersion, ""),
            (Field::Result, "PASS"),
            (Field::ReportSha256, "abc"),
            (Field::RiskTier, "256"),
            (Field::TrainingComputeFlop, "inf"),
            (Field::ScopeRegions, "eu,,us"),
            (Field::ScopeMaxAccelerators, "-1"),
        ];
        for (field, bad) in malformed {
            let leaf = pki
                .evaluator
                .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).omit(field))
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::ExtensionMissing(field)],
                "{field}"
            );
            assert!(c.verified.is_none());

            let leaf = pki
                .evaluator
                .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).text(field, bad))
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::ExtensionMalformed(field)],
                "{field} {bad:?}: {:?}",
                c.problems
            );
        }
        // More malformed values for the key fields.
        for (field, bad) in [
            (Field::ModelDigest, "sha512:0123"),
            (Field::ModelDigest, &*format!("sha256:{}", "g".repeat(64))),
            (Field::ScopeRegions, ""),
            (Field::ScopeRegions, "*,eu"),
            (Field::ScopeRegions, "eu,eu"),
            (Field::ScopeRegions, "eu west"),
            (Field::ScopeMaxAccelerators, "4294967296"),
            (Field::ScopeMaxAccelerators, "007"),
            (Field::ScopeMaxAccelerators, "+5"),
            (Field::RiskTier, "-1"),
            (Field::RiskTier, "1.5"),
            (Field::Result, "passed"),
            (Field::TrainingComputeFlop, "-3e25"),
            (Field::TrainingComputeFlop, "NaN"),
        ] {
            let leaf = pki
                .evaluator
                .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).text(field, bad))
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::ExtensionMalformed(field)],
                "{field} {bad:?}"
            );
        }
        // Not a UTF8String at all: PrintableString, INTEGER, garbage, trailing data.
        for raw in [
            vec![0x13, 0x04, b'p', b'a', b's', b's'],
            vec![0x02, 0x01, 0x05],
            vec![0xff, 0x00, 0x13],
            vec![0x0c, 0x04, b'p', b'a', b's', b's', 0x00],
        ] {
            let leaf = pki
                .evaluator
                .issue_leaf(
                    &LeafSpec::new(&pki.profile, sample_claims()).raw(Field::Result, raw.clone()),
                )
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert_eq!(
                kinds(&c),
                vec![CertProblemKind::ExtensionMalformed(Field::Result)],
                "{raw:02x?}"
            );
        }
        // Accepted edge values.
        for (field, ok) in [
            (Field::ScopeRegions, "*"),
            (Field::RiskTier, "0"),
            (Field::RiskTier, "255"),
            (Field::ScopeMaxAccelerators, "4294967295"),
            (Field::TrainingComputeFlop, "1000"),
            (Field::TrainingComputeFlop, "0"),
        ] {
            let leaf = pki
                .evaluator
                .issue_leaf(&LeafSpec::new(&pki.profile, sample_claims()).text(field, ok))
                .unwrap();
            let c = check(&pki, &bundle, &pki.chain(&leaf));
            assert!(c.is_valid(), "{field} {ok:?}: {:?}", c.problems);
        }
    }

    #[test]
    fn multiple_problems_all_reported() {
        let pki = TestPki::new().unwrap();
        let leaf = pki
            .evaluator
            .issue_leaf(
                &LeafSpec::new(&pki.profile, sample_claims())
                    .omit(Field::ModelDigest)
                    .omit(Field::ScopeRegions)
                    .text(Field::ScopeMaxAccelerators, "lots")
                    .text(Field::RiskTier, "high")
                    .omit(Field::Result),
            )
            .unwrap();
        let c = check(&pki, &pki.bundle().unwrap(), &pki.chain(&leaf));
        assert_eq!(
            kinds(&c),
            vec![
                CertProblemKind::ExtensionMissing(Field::ModelDigest),
                CertProblemKind::ExtensionMissing(Field::Result),
                CertProblemKind::ExtensionMalformed(Field::RiskTier),
                CertProblemKind::ExtensionMissing(Field::ScopeRegions),
                CertProblemKind::ExtensionMalformed(Field::ScopeMaxAccelerators),
            ]
        );
        for p in &c.problems {
            assert!(p.message.contains(p.kind.field().unwrap().name()), "{p}");
        }
    }
}
