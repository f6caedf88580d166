//! The customer record files `warden customer add` and `update` read, and
//! `get --json` prints back: they mirror `CustomerDetails` and its
//! neighbours in `proto/warden/v1/customers.proto`, and refuse unknown
//! fields so that a misspelt field is named (with its line and column)
//! before anything is sent.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::api::convert::{millis, rfc3339, timestamp};
use crate::proto;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Individual,
    #[serde(alias = "organization")]
    Organisation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Verified,
    Suspended,
    Closed,
}

impl Status {
    pub(super) fn to_proto(self) -> proto::CustomerStatus {
        match self {
            Self::Pending => proto::CustomerStatus::Pending,
            Self::Verified => proto::CustomerStatus::Verified,
            Self::Suspended => proto::CustomerStatus::Suspended,
            Self::Closed => proto::CustomerStatus::Closed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// `warden customer add FILE`: a `RegisterCustomerRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerFile {
    pub customer_id: String,
    pub kind: Kind,
    pub legal_name: String,
    /// ISO 3166-1 alpha-2: nationality of an individual, country of an
    /// organisation.
    pub country: String,
    /// `pending` when absent.
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub details: DetailsFile,
}

/// `warden customer update ID FILE`: the new identity record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerUpdateFile {
    pub legal_name: String,
    pub country: String,
    #[serde(default)]
    pub details: DetailsFile,
}

/// `CustomerDetails`; every field may be left out (empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetailsFile {
    pub aliases: Vec<String>,
    /// Individuals: YYYY-MM-DD.
    pub date_of_birth: String,
    pub place_of_birth: String,
    /// Organisations.
    pub registration_number: String,
    pub legal_form: String,
    /// ISO 3166-1 alpha-2 of the registering jurisdiction.
    pub jurisdiction: String,
    pub addresses: Vec<AddressFile>,
    pub email: String,
    /// E.164, e.g. `+4930123456`.
    pub phone: String,
    /// Lower-case hex SHA-256 of the payment means, never the number.
    pub payment_fingerprint: String,
    pub beneficial_owners: Vec<PersonFile>,
    pub key_personnel: Vec<PersonFile>,
    pub declared_purpose: String,
    pub verification: Option<VerificationFile>,
    pub risk_rating: Option<Risk>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressFile {
    pub lines: Vec<String>,
    pub city: String,
    pub postal_code: String,
    pub region: String,
    pub country: String,
}

/// A beneficial owner or a member of key personnel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PersonFile {
    pub name: String,
    pub nationality: String,
    pub date_of_birth: String,
    pub id_number: String,
    pub id_issuing_country: String,
    /// 0-100.
    pub ownership_percent: f64,
    /// Key personnel: director, officer, …
    pub role: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerificationFile {
    pub method: String,
    pub evidence_sha256: String,
    pub verified_by: String,
    /// RFC 3339, e.g. `2026-10-01T09:30:00Z`.
    pub verified_at: Option<String>,
}

/// An RFC 3339 time as Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-10-01T12:00:00Z: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{s:?} is out of range"))
}

impl DetailsFile {
    pub(super) fn into_proto(self) -> anyhow::Result<proto::CustomerDetails> {
        let DetailsFile {
            aliases,
            date_of_birth,
            place_of_birth,
            registration_number,
            legal_form,
            jurisdiction,
            addresses,
            email,
            phone,
            payment_fingerprint,
            beneficial_owners,
            key_personnel,
            declared_purpose,
            verification,
            risk_rating,
        } = self;
        let verification = verification
            .map(|v| -> anyhow::Result<proto::Verification> {
                let verified_at = match v.verified_at.as_deref() {
                    None | Some("") => None,
                    Some(t) => Some(timestamp(parse_rfc3339(t).map_err(|e| {
                        anyhow::anyhow!("details.verification.verified_at: {e}")
                    })?)),
                };
                Ok(proto::Verification {
                    method: v.method,
                    evidence_sha256: v.evidence_sha256,
                    verified_by: v.verified_by,
                    verified_at,
                })
            })
            .transpose()?;
        let risk_rating = match risk_rating {
            None => proto::RiskRating::Unspecified,
            Some(Risk::Low) => proto::RiskRating::Low,
            Some(Risk::Medium) => proto::RiskRating::Medium,
            Some(Risk::High) => proto::RiskRating::High,
        };
        Ok(proto::CustomerDetails {
            aliases,
            date_of_birth,
            place_of_birth,
            registration_number,
            legal_form,
            jurisdiction,
            addresses: addresses
                .into_iter()
                .map(|a| proto::Address {
                    lines: a.lines,
                    city: a.city,
                    postal_code: a.postal_code,
                    region: a.region,
                    country: a.country,
                })
                .collect(),
            email,
            phone,
            payment_fingerprint,
            beneficial_owners: beneficial_owners.into_iter().map(person_to_proto).collect(),
            key_personnel: key_personnel.into_iter().map(person_to_proto).collect(),
            declared_purpose,
            verification,
            risk_rating: risk_rating as i32,
        })
    }

    pub(super) fn from_proto(d: &proto::CustomerDetails) -> Self {
        let risk_rating = match proto::RiskRating::try_from(d.risk_rating) {
            Ok(proto::RiskRating::Low) => Some(Risk::Low),
            Ok(proto::RiskRating::Medium) => Some(Risk::Medium),
            Ok(proto::RiskRating::High) => Some(Risk::High),
            _ => None,
        };
        Self {
            aliases: d.aliases.clone(),
            date_of_birth: d.date_of_birth.clone(),
            place_of_birth: d.place_of_birth.clone(),
            registration_number: d.registration_number.clone(),
            legal_form: d.legal_form.clone(),
            jurisdiction: d.jurisdiction.clone(),
            addresses: d
                .addresses
                .iter()
                .map(|a| AddressFile {
                    lines: a.lines.clone(),
                    city: a.city.clone(),
                    postal_code: a.postal_code.clone(),
                    region: a.region.clone(),
                    country: a.country.clone(),
                })
                .collect(),
            email: d.email.clone(),
            phone: d.phone.clone(),
            payment_fingerprint: d.payment_fingerprint.clone(),
            beneficial_owners: d.beneficial_owners.iter().map(person_from_proto).collect(),
            key_personnel: d.key_personnel.iter().map(person_from_proto).collect(),
            declared_purpose: d.declared_purpose.clone(),
            verification: d.verification.as_ref().map(|v| VerificationFile {
                method: v.method.clone(),
                evidence_sha256: v.evidence_sha256.clone(),
                verified_by: v.verified_by.clone(),
                verified_at: v.verified_at.as_ref().map(|t| rfc3339(millis(t))),
            }),
            risk_rating,
        }
    }
}

fn person_to_proto(p: PersonFile) -> proto::Person {
    proto::Person {
        name: p.name,
        nationality: p.nationality,
        date_of_birth: p.date_of_birth,
        id_number: p.id_number,
        id_issuing_country: p.id_issuing_country,
        ownership_percent: p.ownership_percent,
        role: p.role,
    }
}

fn person_from_proto(p: &proto::Person) -> PersonFile {
    PersonFile {
        name: p.name.clone(),
        nationality: p.nationality.clone(),
        date_of_birth: p.date_of_birth.clone(),
        id_number: p.id_number.clone(),
        id_issuing_country: p.id_issuing_country.clone(),
        ownership_percent: p.ownership_percent,
        role: p.role.clone(),
    }
}

impl CustomerFile {
    pub fn into_request(self) -> anyhow::Result<proto::RegisterCustomerRequest> {
        Ok(proto::RegisterCustomerRequest {
            customer_id: self.customer_id,
            kind: match self.kind {
                Kind::Individual => proto::CustomerKind::Individual,
                Kind::Organisation => proto::CustomerKind::Organisation,
            } as i32,
            legal_name: self.legal_name,
            country: self.country,
            status: self
                .status
                .map_or(proto::CustomerStatus::Unspecified, Status::to_proto)
                as i32,
            details: Some(self.details.into_proto()?),
        })
    }
}

impl CustomerUpdateFile {
    pub fn into_request(
        self,
        customer_id: String,
        expected_version: u64,
    ) -> anyhow::Result<proto::UpdateCustomerRequest> {
        Ok(proto::UpdateCustomerRequest {
            customer_id,
            expected_version,
            legal_name: self.legal_name,
            country: self.country,
            details: Some(self.details.into_proto()?),
        })
    }
}

/// Reads FILE, or stdin for `-`; returns the name to use in messages too.
pub(in crate::cli) fn read_input(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read stdin")?;
        Ok(("stdin".into(), buf))
    } else {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok((path.display().to_string(), bytes))
    }
}

/// Parses a customer file; the error names the file, the field and where.
pub(crate) fn parse_file<T: serde::de::DeserializeOwned>(
    name: &str,
    bytes: &[u8],
    hint: &str,
) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("{name}: {e}\n{hint}"))
}

#[cfg(test)]
mod tests {
    use super::super::UPDATE_HINT;
    use super::*;

    fn example(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/examples/customers/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn the_examples_parse_and_are_valid_records() {
        let now = crate::clock::now_millis();
        for (file, kind) in [
            (
                "beta-labs.json",
                crate::domain::customer::CustomerKind::Organisation,
            ),
            (
                "individual.json",
                crate::domain::customer::CustomerKind::Individual,
            ),
        ] {
            let f: CustomerFile = parse_file(file, &example(file), "").unwrap();
            let r = f.into_request().unwrap();
            let d = crate::api::convert::details_from_proto(r.details).unwrap();
            let v = crate::domain::customer::validate_identity(
                kind,
                &r.legal_name,
                &r.country,
                &d,
                now,
            );
            assert!(v.is_empty(), "{file}: {v:?}");
        }
        let f: CustomerUpdateFile = parse_file("u", &example("beta-labs.update.json"), "").unwrap();
        let r = f.into_request("beta-labs".into(), 1).unwrap();
        let d = crate::api::convert::details_from_proto(r.details).unwrap();
        let v = crate::domain::customer::validate_identity(
            crate::domain::customer::CustomerKind::Organisation,
            &r.legal_name,
            &r.country,
            &d,
            now,
        );
        assert!(v.is_empty(), "{v:?}");
        assert!(d.verification.is_some_and(|v| v.verified_at.is_some()));
    }

    #[test]
    fn a_misspelt_field_is_named_with_its_place() {
        let text = br#"{"customer_id": "x", "kind": "individual", "legal_name": "A",
            "country": "DE", "details": {"addresses": [{"citty": "Berlin"}]}}"#;
        let e = parse_file::<CustomerFile>("f.json", text, "")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.json: unknown field `citty`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        let e =
            parse_file::<CustomerFile>("f.json", br#"{"customer_id": "x", "kind": "person"}"#, "")
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown variant `person`"), "{e}");
        let e = parse_file::<CustomerUpdateFile>(
            "u.json",
            br#"{"customer_id": "x", "legal_name": "A", "country": "DE"}"#,
            UPDATE_HINT,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown field `customer_id`") && e.contains("update --help"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_verification_time_names_the_field() {
        let d = DetailsFile {
            verification: Some(VerificationFile {
                verified_at: Some("yesterday".into()),
                ..VerificationFile::default()
            }),
            ..DetailsFile::default()
        };
        let e = d.into_proto().unwrap_err().to_string();
        assert!(e.starts_with("details.verification.verified_at"), "{e}");
    }
}
