//! Issuing model-evaluation certificates (rcgen).

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SerialNumber,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::asn1_rs::{Tag, ToDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use crate::pki::profile::{EvaluationClaims, Field, Profile};
use crate::pki::PkiError;

/// A freshly issued model-evaluation certificate and its generated key.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// PKCS#8 PEM of the generated ECDSA P-256 key. Secret: write with 0600.
    pub key_pem: String,
    /// Lowercase hex of the serial number's DER content octets (what
    /// `warden certs revoke` takes).
    pub serial_hex: String,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint_sha256_hex: String,
}

/// Issue a model-evaluation certificate for `claims`, valid (licensed) from
/// `not_before` to `not_after`, signed by the evaluator CA.
///
/// Refuses claims that would not verify, an evaluator CA certificate that is
/// not a CA / cannot sign certificates / lacks the model-evaluation EKU (every
/// leaf it issued would be rejected), a key that does not match the CA
/// certificate, and a licence period outside the CA's own validity.
pub fn issue_evaluation_certificate(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    claims: &EvaluationClaims,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    profile: &Profile,
) -> Result<IssuedCert, PkiError> {
    claims.validate()?;
    if not_before >= not_after {
        return Err(PkiError::InvalidValidity(
            "not_before must be earlier than not_after".into(),
        ));
    }
    let ca = LoadedCa::from_pem(ca_cert_pem, ca_key_pem, "evaluator CA")?;
    if !ca.is_ca || !ca.can_sign_certs {
        return Err(PkiError::InvalidCertificate {
            context: "evaluator CA".into(),
            reason: "not a CA certificate with keyCertSign".into(),
        });
    }
    if !ca.ekus.contains(&profile.eku_oid()) {
        return Err(PkiError::InvalidCertificate {
            context: "evaluator CA".into(),
            reason: format!(
                "lacks the model-evaluation EKU {}; certificates it issues would be rejected",
                profile.eku_oid_string()
            ),
        });
    }
    if not_before < ca.not_before || not_after > ca.not_after {
        return Err(PkiError::InvalidValidity(format!(
            "licence period {not_before} .. {not_after} is not inside the evaluator CA's \
             validity {} .. {}",
            ca.not_before, ca.not_after
        )));
    }

    let extensions = Field::ALL
        .iter()
        .map(|f| Ok((*f, utf8_string_der(*f, &claims.encode_field(*f))?)))
        .collect::<Result<Vec<_>, PkiError>>()?;
    let params = leaf_params(claims, profile, &extensions, true, not_before, not_after)?;
    let key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(PkiError::gen("leaf key"))?;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(PkiError::gen("model-evaluation certificate"))?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial_hex: hex::encode(
            params
                .serial_number
                .as_ref()
                .map(|s| s.to_bytes())
                .unwrap_or_default(),
        ),
        fingerprint_sha256_hex: hex::encode(Sha256::digest(cert.der())),
    })
}

/// DER UTF8String, encoded by asn1-rs.
pub(crate) fn utf8_string_der(field: Field, s: &str) -> Result<Vec<u8>, PkiError> {
    s.to_der_vec().map_err(|e| {
        PkiError::InvalidClaims(vec![crate::pki::FieldError {
            field,
            reason: format!("cannot DER-encode {s:?}: {e}"),
        }])
    })
}

/// A random positive 16-byte serial with no leading zero octet, so its DER
/// content octets equal these bytes.
pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| PkiError::InvalidValidity("system random number generator failed".into()))?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

/// Leaf parameters. `extensions` are (field, DER value) pairs written as
/// non-critical extensions; `with_eku` exists for negative tests.
pub(crate) fn leaf_params(
    claims: &EvaluationClaims,
    profile: &Profile,
    extensions: &[(Field, Vec<u8>)],
    with_eku: bool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        truncate(
            &format!("{} {}", claims.model_name, claims.model_version),
            64,
        ),
    );
    dn.push(DnType::OrganizationName, truncate(&claims.developer, 64));
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if with_eku {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(profile.eku_oid())];
    }
    params.use_authority_key_identifier_extension = true;
    params.custom_extensions = extensions
        .iter()
        .map(|(f, der)| CustomExtension::from_oid_content(&profile.field_oid(*f), der.clone()))
        .collect();
    Ok(params)
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Parameters for an evaluator CA: CA:true pathLen 0, keyCertSign + cRLSign,
/// EKU model-evaluation (webpki checks the EKU on every non-anchor cert).
pub(crate) fn evaluator_ca_params(
    common_name: &str,
    organization: &str,
    profile: &Profile,
    with_eku: bool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, organization);
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    if with_eku {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(profile.eku_oid())];
    }
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A CA certificate + key loaded from PEM, usable as an rcgen [`Issuer`].
///
/// rcgen's own `Issuer::from_ca_cert_pem` needs its `x509-parser` feature,
/// which the project does not enable; this does the same with x509-parser
/// directly: copy the subject name attribute by attribute (same string types,
/// same order, so the issued certificate's issuer name is byte-identical), take
/// the key usages and the subject key identifier, and check that the key
/// belongs to the certificate.
pub(crate) struct LoadedCa {
    pub issuer: Issuer<'static, KeyPair>,
    pub subject_raw: Vec<u8>,
    pub is_ca: bool,
    pub can_sign_certs: bool,
    pub ekus: Vec<Vec<u64>>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LoadedCa {
    pub(crate) fn from_pem(cert_pem: &str, key_pem: &str, context: &str) -> Result<Self, PkiError> {
        use rustls_pki_types::pem::PemObject;
        let cert_err = |reason: String| PkiError::InvalidCertificate {
            context: context.to_string(),
            reason,
        };
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| cert_err(format!("no PEM CERTIFICATE: {e}")))?;
        let (rest, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| cert_err(format!("unparseable certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(cert_err("trailing data after certificate".into()));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::InvalidKey {
            context: context.to_string(),
            reason: e.to_string(),
        })?;
        if key.subject_public_key_info() != x509.public_key().raw {
            return Err(PkiError::InvalidKey {
                context: context.to_string(),
                reason: "the private key does not match the certificate's public key".into(),
            });
        }
        Self::from_parsed(&x509, key, context)
    }

    pub(crate) fn from_parsed(
        x509: &X509Certificate<'_>,
        key: KeyPair,
        context: &str,
    ) -> Result<Self, PkiError> {
        let cert_err = |reason: String| PkiError::InvalidCertificate {
            context: context.to_string(),
            reason,
        };
        let distinguished_name = copy_name(x509.subject()).map_err(cert_err)?;
        let mut key_usages = Vec::new();
        let can_sign_certs;
        if let Ok(Some(ku)) = x509.key_usage() {
            let ku = ku.value;
            can_sign_certs = ku.key_cert_sign();
            for (set, purpose) in [
                (ku.digital_signature(), KeyUsagePurpose::DigitalSignature),
                (ku.key_cert_sign(), KeyUsagePurpose::KeyCertSign),
                (ku.crl_sign(), KeyUsagePurpose::CrlSign),
            ] {
                if set {
                    key_usages.push(purpose);
                }
            }
        } else {
            can_sign_certs = true; // no KeyUsage extension: unrestricted
        }
        let ekus = match x509.extended_key_usage() {
            Ok(Some(eku)) => eku
                .value
                .other
                .iter()
                .filter_map(|o| o.iter().map(|i| i.collect::<Vec<u64>>()))
                .collect(),
            _ => Vec::new(),
        };
        let ski = x509
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name;
        params.key_usages = key_usages;
        params.key_identifier_method = match ski {
            Some(id) => KeyIdMethod::PreSpecified(id),
            None => KeyIdMethod::Sha256,
        };
        let to_dt = |t: x509_parser::time::ASN1Time| {
            OffsetDateTime::from_unix_timestamp(t.timestamp())
                .map_err(|e| cert_err(format!("validity out of range: {e}")))
        };
        Ok(LoadedCa {
            issuer: Issuer::new(params, key),
            subject_raw: x509.subject().as_raw().to_vec(),
            is_ca: x509.is_ca(),
            can_sign_certs,
            ekus,
            not_before: to_dt(x509.validity().not_before)?,
            not_after: to_dt(x509.validity().not_after)?,
        })
    }
}

/// Copy an X.509 name into an rcgen [`DistinguishedName`] preserving order
/// and string types. Multi-valued RDNs and repeated attribute types are not
/// representable in rcgen and are refused.
fn copy_name(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName, String> {
    use rcgen::string::{Ia5String, PrintableString, TeletexString};
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for rdn in name.iter() {
        let mut it = rdn.iter();
        let attr = it.next().ok_or("empty RDN in subject")?;
        if it.next().is_some() {
            return Err("multi-valued RDNs in the CA subject are not supported".into());
        }
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("attribute type OID too large")?
            .collect();
        let ty = DnType::from_oid(&oid);
        if seen.contains(&ty) {
            return Err(format!(
                "repeated attribute {} in the CA subject is not supported",
                crate::pki::profile::oid_to_string(&oid)
            ));
        }
        seen.push(ty.clone());
        let data = attr.attr_value().data;
        let text =
            || std::str::from_utf8(data).map_err(|_| "attribute is not valid text".to_string());
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_string()),
            Tag::PrintableString => DnValue::PrintableString(
                PrintableString::try_from(text()?).map_err(|e| e.to_string())?,
            ),
            Tag::Ia5String => {
                DnValue::Ia5String(Ia5String::try_from(text()?).map_err(|e| e.to_string())?)
            }
            Tag::T61String => {
                DnValue::TeletexString(TeletexString::try_from(text()?).map_err(|e| e.to_string())?)
            }
            t => return Err(format!("unsupported string type {t:?} in the CA subject")),
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pki::dev::{sample_claims, TestCa};
    use time::Duration;

    #[test]
    fn issue_refuses_bad_inputs() {
        let profile = Profile::default();
        let now = OffsetDateTime::now_utc();
        let root = TestCa::root("Test Regulator Root").unwrap();
        let ca = root.evaluator("Test Evaluator CA", &profile, true).unwrap();
        let claims = sample_claims();
        let ok = issue_evaluation_certificate(
            &ca.cert_pem(),
            &ca.key_pem(),
            &claims,
            now,
            now + Duration::days(30),
            &profile,
        )
        .unwrap();
        assert_eq!(ok.serial_hex.len(), 32);

        // Key does not match the CA certificate.
        let e = issue_evaluation_certificate(
            &ca.cert_pem(),
            &root.key_pem(),
            &claims,
            now,
            now + Duration::days(30),
            &profile,
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");

        // CA without the EKU.
        let no_eku = root.evaluator("No EKU CA", &profile, false).unwrap();
        let e = issue_evaluation_certificate(
            &no_eku.cert_pem(),
            &no_eku.key_pem(),
            &claims,
            now,
            now + Duration::days(30),
            &profile,
        )
        .unwrap_err();
        assert!(e.to_string().contains("model-evaluation EKU"), "{e}");

        // Bad claims are refused with every bad field named.
        let mut bad = claims.clone();
        bad.report_sha256 = "xyz".into();
        bad.model_name = String::new();
        let e = issue_evaluation_certificate(
            &ca.cert_pem(),
            &ca.key_pem(),
            &bad,
            now,
            now + Duration::days(30),
            &profile,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("report_sha256") && msg.contains("model_name"),
            "{msg}"
        );

        // Licence outliving the CA.
        let e = issue_evaluation_certificate(
            &ca.cert_pem(),
            &ca.key_pem(),
            &claims,
            now,
            now + Duration::days(365 * 50),
            &profile,
        )
        .unwrap_err();
        assert!(matches!(e, PkiError::InvalidValidity(_)), "{e}");
    }
}
