//! KYC customer records: the full identity record of an individual or an
//! organisation, its validation, and its screening result. Every change
//! writes a new immutable version. Pure data and rules; the store seals
//! the personal data at rest.

use serde::{Deserialize, Serialize};

use super::UnixMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CustomerKind {
    Individual,
    Organisation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CustomerStatus {
    Pending,
    Verified,
    Suspended,
    Closed,
}

impl CustomerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Verified => "VERIFIED",
            Self::Suspended => "SUSPENDED",
            Self::Closed => "CLOSED",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskRating {
    #[default]
    Unspecified,
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub lines: Vec<String>,
    pub city: String,
    pub postal_code: String,
    pub region: String,
    pub country: String,
}

/// A beneficial owner or a member of key personnel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub nationality: String,
    pub date_of_birth: String,
    pub id_number: String,
    pub id_issuing_country: String,
    pub ownership_percent: f64,
    pub role: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub method: String,
    pub evidence_sha256: String,
    pub verified_by: String,
    pub verified_at: Option<UnixMillis>,
}

/// The identity record besides kind, legal name and country.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerDetails {
    pub aliases: Vec<String>,
    pub date_of_birth: String,
    pub place_of_birth: String,
    pub registration_number: String,
    pub legal_form: String,
    pub jurisdiction: String,
    pub addresses: Vec<Address>,
    pub email: String,
    pub phone: String,
    pub payment_fingerprint: String,
    pub beneficial_owners: Vec<Person>,
    pub key_personnel: Vec<Person>,
    pub declared_purpose: String,
    pub verification: Option<Verification>,
    pub risk_rating: RiskRating,
}

/// One immutable version of a customer record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub customer_id: String,
    pub kind: CustomerKind,
    pub legal_name: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub status: CustomerStatus,
    pub status_reason: String,
    /// Starts at 1 and increases by one with every change.
    pub version: u64,
    pub updated_at: UnixMillis,
    /// SPIFFE id of the principal that wrote this version.
    pub updated_by: String,
    /// Random per-version salt (hex) of the ledger's commitment to this
    /// version; never written to the ledger itself.
    #[serde(default)]
    pub commitment_salt: String,
    #[serde(default)]
    pub details: CustomerDetails,
    /// True once retention purged this version's personal data: names,
    /// reason, details and salt are then empty.
    #[serde(default)]
    pub purged: bool,
}

impl Customer {
    /// Every name to screen, with the field it came from (as the API names
    /// it).
    pub fn screened_names(&self) -> Vec<(String, &str)> {
        let mut out = vec![("legal_name".to_string(), self.legal_name.as_str())];
        let d = &self.details;
        for (i, a) in d.aliases.iter().enumerate() {
            out.push((format!("details.aliases[{i}]"), a.as_str()));
        }
        for (i, p) in d.beneficial_owners.iter().enumerate() {
            out.push((
                format!("details.beneficial_owners[{i}].name"),
                p.name.as_str(),
            ));
        }
        for (i, p) in d.key_personnel.iter().enumerate() {
            out.push((format!("details.key_personnel[{i}].name"), p.name.as_str()));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScreeningStatus {
    NotScreened,
    Clear,
    PotentialMatch,
    FalsePositive,
    ConfirmedMatch,
}

impl ScreeningStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotScreened => "NOT_SCREENED",
            Self::Clear => "CLEAR",
            Self::PotentialMatch => "POTENTIAL_MATCH",
            Self::FalsePositive => "FALSE_POSITIVE",
            Self::ConfirmedMatch => "CONFIRMED_MATCH",
        }
    }

    /// Whether admission must deny until a kyc principal resolves it.
    pub fn blocks_admission(self) -> bool {
        matches!(self, Self::PotentialMatch | Self::ConfirmedMatch)
    }
}

/// A hit, described by the list's side only (list data is public) and the
/// name of the customer's field that matched, never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreeningHit {
    pub entry_id: String,
    pub entry_name: String,
    pub list_name: String,
    pub matched_field: String,
    pub score: f64,
}

/// The latest screening of a customer against the loaded list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Screening {
    pub customer_id: String,
    /// Starts at 1 and increases by one with every change of the result.
    pub revision: u64,
    pub status: ScreeningStatus,
    pub list_name: String,
    pub list_version: String,
    pub list_sha256: String,
    pub threshold: f64,
    pub screened_at: UnixMillis,
    pub hits: Vec<ScreeningHit>,
    /// The customer version screened.
    pub customer_version: u64,
    pub resolution_note: String,
    /// Random salt (hex) of the ledger's commitment to the note.
    #[serde(default)]
    pub resolution_salt: String,
    pub resolved_by: String,
    pub resolved_at: Option<UnixMillis>,
}

/// What is wrong with a field of an input, named as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Identifiers chosen by callers (customer ids, request ids): 1 to 128 of
/// `[A-Za-z0-9._:-]`, so they are safe in keys, logs and file names.
pub fn check_identifier(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    if value.is_empty() {
        out.push(FieldViolation::new(field, "required"));
    } else if value.len() > 128 {
        out.push(FieldViolation::new(field, "at most 128 characters"));
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        out.push(FieldViolation::new(
            field,
            "only letters, digits, '.', '_', ':' and '-' are allowed",
        ));
    }
}

/// ISO 3166-1 alpha-2 shape: two upper-case ASCII letters.
pub fn check_country(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        out.push(FieldViolation::new(
            field,
            "an ISO 3166-1 alpha-2 code such as \"DE\" is required",
        ));
    }
}

/// Characters no text field may hold: control characters (Cc) and the
/// invisible ones, format characters (Cf: zero-width space and joiners, soft
/// hyphen, word joiner, bidirectional controls, byte-order mark) and the
/// other default-ignorable code points (Hangul fillers, variation
/// selectors). Invisible characters make two texts that look identical
/// differ (a sanctions-screening dodge, a look-alike ledger entry), so they
/// are refused rather than stored.
pub fn is_hidden_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    // The TS #39 skeleton drops exactly the default-ignorable code points.
    c.is_control()
        || (!c.is_ascii()
            && (c.general_category() == GeneralCategory::Format
                || unicode_security::skeleton(c.encode_utf8(&mut [0u8; 4]))
                    .next()
                    .is_none()))
}

/// What a field holding an [`is_hidden_char`] is told.
pub const HIDDEN_CHARS: &str =
    "control characters and invisible characters (such as U+200B zero-width space, \
     U+00AD soft hyphen, U+202E right-to-left override) are not allowed";

/// A required free-text field: present, at most `max` bytes, no control or
/// invisible characters ([`is_hidden_char`]).
pub fn check_text(field: &str, value: &str, max: usize, out: &mut Vec<FieldViolation>) {
    if value.trim().is_empty() {
        out.push(FieldViolation::new(field, "required"));
    } else if value.len() > max {
        out.push(FieldViolation::new(field, format!("at most {max} bytes")));
    } else if value.chars().any(is_hidden_char) {
        out.push(FieldViolation::new(field, HIDDEN_CHARS));
    }
}

/// ISO 3166-1 alpha-2 codes officially assigned.
const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// An assigned ISO 3166-1 alpha-2 code, upper case.
pub fn check_iso_country(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    if value.len() != 2 || !ISO_3166_ALPHA2.split(' ').any(|c| c == value) {
        out.push(FieldViolation::new(
            field,
            format!(
                "{} is not an ISO 3166-1 alpha-2 code such as \"DE\"",
                quoted(value)
            ),
        ));
    }
}

/// A calendar date `YYYY-MM-DD`, not after `today` and not before 1900.
pub fn check_date(field: &str, value: &str, today: UnixMillis, out: &mut Vec<FieldViolation>) {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(value, &format) {
        Err(_) => out.push(FieldViolation::new(
            field,
            format!("{} is not a date YYYY-MM-DD", quoted(value)),
        )),
        Ok(d) => {
            let now = time::OffsetDateTime::from_unix_timestamp(today / 1000)
                .map(|t| t.date())
                .unwrap_or(time::Date::MAX);
            if d > now {
                out.push(FieldViolation::new(field, "must not be in the future"));
            } else if d.year() < 1900 {
                out.push(FieldViolation::new(field, "must not be before 1900"));
            }
        }
    }
}

/// A plausible email address: one '@', a non-empty local part, a dotted
/// domain of letters, digits and hyphens; no spaces; at most 254 bytes.
pub fn check_email(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    let ok = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !local.contains(|c: char| c.is_whitespace() || is_hidden_char(c) || c == '@')
                && domain.contains('.')
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        });
    if !ok {
        out.push(FieldViolation::new(
            field,
            "an email address such as \"kyc@example.com\" is required",
        ));
    }
}

/// E.164: '+' followed by 8 to 15 digits, the first not 0.
pub fn check_phone(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    let digits = value.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        out.push(FieldViolation::new(
            field,
            "an E.164 number such as \"+4930123456\" is required",
        ));
    }
}

/// Lower-case hex SHA-256.
pub fn check_sha256(field: &str, value: &str, out: &mut Vec<FieldViolation>) {
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        out.push(FieldViolation::new(
            field,
            "64 lower-case hex digits (a SHA-256) are required",
        ));
    }
}

/// Optional free text: at most `max` bytes, no control or invisible
/// characters.
fn check_optional_text(field: &str, value: &str, max: usize, out: &mut Vec<FieldViolation>) {
    if !value.is_empty() {
        check_text(field, value, max, out);
    }
}

fn check_person(
    field: &str,
    p: &Person,
    owner: bool,
    today: UnixMillis,
    out: &mut Vec<FieldViolation>,
) {
    check_text(&format!("{field}.name"), &p.name, 512, out);
    check_iso_country(&format!("{field}.nationality"), &p.nationality, out);
    check_date(
        &format!("{field}.date_of_birth"),
        &p.date_of_birth,
        today,
        out,
    );
    if p.id_number.is_empty() != p.id_issuing_country.is_empty() {
        out.push(FieldViolation::new(
            format!("{field}.id_issuing_country"),
            "id_number and id_issuing_country are given together",
        ));
    }
    check_optional_text(&format!("{field}.id_number"), &p.id_number, 64, out);
    if !p.id_issuing_country.is_empty() {
        check_iso_country(
            &format!("{field}.id_issuing_country"),
            &p.id_issuing_country,
            out,
        );
    }
    check_optional_text(&format!("{field}.role"), &p.role, 128, out);
    let pct = p.ownership_percent;
    if !(0.0..=100.0).contains(&pct) || pct.is_nan() {
        out.push(FieldViolation::new(
            format!("{field}.ownership_percent"),
            "must be between 0 and 100",
        ));
    } else if owner && pct <= 0.0 {
        out.push(FieldViolation::new(
            format!("{field}.ownership_percent"),
            "a beneficial owner owns more than 0%",
        ));
    }
}

/// The number of entries in each repeated field of a record, checked
/// first so that these violations lead the list an answer carries.
fn check_counts(d: &CustomerDetails, out: &mut Vec<FieldViolation>) {
    use super::limits::{
        MAX_ADDRESSES, MAX_ADDRESS_LINES, MAX_ALIASES, MAX_BENEFICIAL_OWNERS, MAX_KEY_PERSONNEL,
    };
    for (field, len, max) in [
        ("details.aliases", d.aliases.len(), MAX_ALIASES),
        ("details.addresses", d.addresses.len(), MAX_ADDRESSES),
        (
            "details.beneficial_owners",
            d.beneficial_owners.len(),
            MAX_BENEFICIAL_OWNERS,
        ),
        (
            "details.key_personnel",
            d.key_personnel.len(),
            MAX_KEY_PERSONNEL,
        ),
    ] {
        if len > max {
            out.push(FieldViolation::new(
                field,
                format!("at most {max}, not {len}"),
            ));
        }
    }
    for (i, a) in d.addresses.iter().enumerate() {
        if a.lines.len() > MAX_ADDRESS_LINES {
            out.push(FieldViolation::new(
                format!("details.addresses[{i}].lines"),
                format!("at most {MAX_ADDRESS_LINES}, not {}", a.lines.len()),
            ));
        }
    }
}

/// A caller's value quoted in a description, or only its size when it is
/// too long to repeat back.
fn quoted(value: &str) -> String {
    if value.len() <= 32 {
        format!("{value:?}")
    } else {
        format!("a {}-byte value", value.len())
    }
}

/// Checks an identity record: the fields every customer needs, those its
/// kind needs, and the syntax of everything given. Every problem is
/// reported, each naming its field as the API names it.
// A table of rules: one short check per field, in the order of the record,
// so a reader can hold it against the proto and the API docs.
pub fn validate_identity(
    kind: CustomerKind,
    legal_name: &str,
    country: &str,
    d: &CustomerDetails,
    today: UnixMillis,
) -> Vec<FieldViolation> {
    let mut v = Vec::new();
    check_counts(d, &mut v);
    check_text("legal_name", legal_name, 512, &mut v);
    check_iso_country("country", country, &mut v);
    for (i, a) in d.aliases.iter().enumerate() {
        check_text(&format!("details.aliases[{i}]"), a, 512, &mut v);
    }
    match kind {
        CustomerKind::Individual => {
            if d.date_of_birth.is_empty() {
                v.push(FieldViolation::new(
                    "details.date_of_birth",
                    "required for an individual",
                ));
            } else {
                check_date("details.date_of_birth", &d.date_of_birth, today, &mut v);
            }
            check_optional_text("details.place_of_birth", &d.place_of_birth, 256, &mut v);
            for (f, value) in [
                ("details.registration_number", &d.registration_number),
                ("details.legal_form", &d.legal_form),
                ("details.jurisdiction", &d.jurisdiction),
            ] {
                if !value.is_empty() {
                    v.push(FieldViolation::new(f, "only for an organisation"));
                }
            }
        }
        CustomerKind::Organisation => {
            for (f, value) in [
                ("details.registration_number", &d.registration_number),
                ("details.legal_form", &d.legal_form),
            ] {
                if value.trim().is_empty() {
                    v.push(FieldViolation::new(f, "required for an organisation"));
                } else {
                    check_text(f, value, 128, &mut v);
                }
            }
            if d.jurisdiction.is_empty() {
                v.push(FieldViolation::new(
                    "details.jurisdiction",
                    "required for an organisation",
                ));
            } else {
                check_iso_country("details.jurisdiction", &d.jurisdiction, &mut v);
            }
            for (f, value) in [
                ("details.date_of_birth", &d.date_of_birth),
                ("details.place_of_birth", &d.place_of_birth),
            ] {
                if !value.is_empty() {
                    v.push(FieldViolation::new(f, "only for an individual"));
                }
            }
        }
    }
    if d.addresses.is_empty() {
        v.push(FieldViolation::new(
            "details.addresses",
            "at least one address is required",
        ));
    }
    for (i, a) in d.addresses.iter().enumerate() {
        let f = format!("details.addresses[{i}]");
        if a.lines.is_empty() {
            v.push(FieldViolation::new(
                format!("{f}.lines"),
                "at least one line is required",
            ));
        }
        for (j, line) in a.lines.iter().enumerate() {
            check_text(&format!("{f}.lines[{j}]"), line, 256, &mut v);
        }
        check_text(&format!("{f}.city"), &a.city, 128, &mut v);
        check_optional_text(&format!("{f}.postal_code"), &a.postal_code, 32, &mut v);
        check_optional_text(&format!("{f}.region"), &a.region, 128, &mut v);
        check_iso_country(&format!("{f}.country"), &a.country, &mut v);
    }
    check_email("details.email", &d.email, &mut v);
    if !d.phone.is_empty() {
        check_phone("details.phone", &d.phone, &mut v);
    }
    if !d.payment_fingerprint.is_empty() {
        check_sha256(
            "details.payment_fingerprint",
            &d.payment_fingerprint,
            &mut v,
        );
    }
    let mut owned = 0.0;
    for (i, p) in d.beneficial_owners.iter().enumerate() {
        check_person(
            &format!("details.beneficial_owners[{i}]"),
            p,
            true,
            today,
            &mut v,
        );
        owned += p.ownership_percent;
    }
    if owned > 100.0 + 1e-9 {
        v.push(FieldViolation::new(
            "details.beneficial_owners",
            format!("ownership percentages sum to {owned}, more than 100"),
        ));
    }
    for (i, p) in d.key_personnel.iter().enumerate() {
        check_person(
            &format!("details.key_personnel[{i}]"),
            p,
            false,
            today,
            &mut v,
        );
    }
    check_text(
        "details.declared_purpose",
        &d.declared_purpose,
        2048,
        &mut v,
    );
    if let Some(ver) = &d.verification {
        check_text("details.verification.method", &ver.method, 128, &mut v);
        check_sha256(
            "details.verification.evidence_sha256",
            &ver.evidence_sha256,
            &mut v,
        );
        check_text(
            "details.verification.verified_by",
            &ver.verified_by,
            256,
            &mut v,
        );
        if ver.verified_at.is_none_or(|t| t > today) {
            v.push(FieldViolation::new(
                "details.verification.verified_at",
                "required, and not in the future",
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_reject_empty_long_and_odd_characters() {
        let mut v = Vec::new();
        check_identifier("id", "", &mut v);
        check_identifier("id", &"a".repeat(129), &mut v);
        check_identifier("id", "a b", &mut v);
        check_identifier("id", "cust-42.eu:x_1", &mut v);
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn field_syntax_checks() {
        let today = 1_790_000_000_000; // 2026-09
        let mut v = Vec::new();
        for ok in ["a@example.com", "first.last+kyc@sub.example.co.uk"] {
            check_email("e", ok, &mut v);
        }
        for ok in ["+4930123456", "+12025550123"] {
            check_phone("p", ok, &mut v);
        }
        check_date("d", "2000-02-29", today, &mut v);
        check_iso_country("c", "GB", &mut v);
        check_sha256("s", &"a".repeat(64), &mut v);
        assert!(v.is_empty(), "{v:?}");
        for bad in [
            "",
            "no-at",
            "a@b",
            "a b@example.com",
            "a@-x.com",
            "a@ex..com",
        ] {
            check_email("e", bad, &mut v);
        }
        assert_eq!(v.len(), 6, "{v:?}");
        v.clear();
        for bad in [
            "030123456",
            "+0301234567",
            "+49 30 123",
            "+1234567",
            "+1234567890123456",
        ] {
            check_phone("p", bad, &mut v);
        }
        assert_eq!(v.len(), 5, "{v:?}");
        v.clear();
        for bad in [
            "2001-02-29",
            "1899-12-31",
            "2030-01-01",
            "01/02/2000",
            "2000-1-1",
        ] {
            check_date("d", bad, today, &mut v);
        }
        assert_eq!(v.len(), 5, "{v:?}");
        v.clear();
        for bad in ["UK", "XX", "gb", "GBR"] {
            check_iso_country("c", bad, &mut v);
        }
        assert_eq!(v.len(), 4, "{v:?}");
    }

    #[test]
    fn ownership_may_not_exceed_100_percent() {
        let owner = |pct: f64| Person {
            name: "Owner".into(),
            nationality: "DE".into(),
            date_of_birth: "1970-01-01".into(),
            ownership_percent: pct,
            ..Person::default()
        };
        let mut d = CustomerDetails {
            registration_number: "1".into(),
            legal_form: "GmbH".into(),
            jurisdiction: "DE".into(),
            addresses: vec![Address {
                lines: vec!["Street 1".into()],
                city: "Berlin".into(),
                country: "DE".into(),
                ..Address::default()
            }],
            email: "a@example.com".into(),
            declared_purpose: "inference".into(),
            beneficial_owners: vec![owner(60.0), owner(40.0)],
            ..CustomerDetails::default()
        };
        let check = |d: &CustomerDetails| {
            validate_identity(
                CustomerKind::Organisation,
                "X GmbH",
                "DE",
                d,
                1_790_000_000_000,
            )
        };
        assert!(check(&d).is_empty(), "{:?}", check(&d));
        d.beneficial_owners.push(owner(0.5));
        let v = check(&d);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "details.beneficial_owners");
        d.beneficial_owners = vec![owner(101.0)];
        assert_eq!(
            check(&d)[0].field,
            "details.beneficial_owners[0].ownership_percent"
        );
    }

    #[test]
    fn repeated_fields_are_accepted_at_their_cap_and_refused_above_it() {
        use crate::domain::limits::{
            MAX_ADDRESSES, MAX_ADDRESS_LINES, MAX_ALIASES, MAX_BENEFICIAL_OWNERS, MAX_KEY_PERSONNEL,
        };
        let person = |pct: f64| Person {
            name: "Owner".into(),
            nationality: "DE".into(),
            date_of_birth: "1970-01-01".into(),
            ownership_percent: pct,
            ..Person::default()
        };
        let address = |lines: usize| Address {
            lines: vec!["Street 1".into(); lines],
            city: "Berlin".into(),
            country: "DE".into(),
            ..Address::default()
        };
        let at_cap = |extra: usize| CustomerDetails {
            registration_number: "1".into(),
            legal_form: "GmbH".into(),
            jurisdiction: "DE".into(),
            aliases: vec!["X".into(); MAX_ALIASES + extra],
            addresses: vec![address(MAX_ADDRESS_LINES + extra); MAX_ADDRESSES + extra],
            email: "a@example.com".into(),
            declared_purpose: "inference".into(),
            beneficial_owners: vec![person(0.5); MAX_BENEFICIAL_OWNERS + extra],
            key_personnel: vec![person(0.0); MAX_KEY_PERSONNEL + extra],
            ..CustomerDetails::default()
        };
        let check = |d: &CustomerDetails| {
            validate_identity(
                CustomerKind::Organisation,
                "X GmbH",
                "DE",
                d,
                1_790_000_000_000,
            )
        };
        assert_eq!(check(&at_cap(0)), Vec::new());
        let v = check(&at_cap(1));
        let mut leading: Vec<&str> = v.iter().take(4).map(|x| x.field.as_str()).collect();
        leading.sort_unstable();
        assert_eq!(
            leading,
            [
                "details.addresses",
                "details.aliases",
                "details.beneficial_owners",
                "details.key_personnel"
            ],
            "the counts lead: {v:?}"
        );
        let lines = v.iter().filter(|x| x.field.ends_with("].lines")).count();
        assert_eq!(lines, MAX_ADDRESSES + 1);
    }

    #[test]
    fn a_long_bad_value_is_not_repeated_back() {
        let mut v = Vec::new();
        check_iso_country("c", &"Z".repeat(10_000), &mut v);
        check_date("d", &"9".repeat(10_000), 1_790_000_000_000, &mut v);
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|x| x.description.len() < 100), "{v:?}");
        v.clear();
        check_iso_country("c", "XX", &mut v);
        assert!(v[0].description.contains("\"XX\""), "{v:?}");
    }

    #[test]
    fn text_refuses_control_and_invisible_characters_but_not_other_scripts() {
        for c in [
            '\u{0}',
            '\n',
            '\u{7f}',
            '\u{85}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{ad}',
            '\u{2060}',
            '\u{202e}',
            '\u{2066}',
            '\u{feff}',
            '\u{600}',
            '\u{61c}',
            '\u{3164}',
            '\u{fe0f}',
            '\u{e0041}',
        ] {
            let mut v = Vec::new();
            check_text("legal_name", &format!("Dra{c}von"), 64, &mut v);
            assert_eq!(v.len(), 1, "U+{:04X}", u32::from(c));
            assert_eq!(v[0].field, "legal_name");
            v.clear();
            check_email("email", &format!("a{c}b@example.com"), &mut v);
            assert_eq!(v.len(), 1, "U+{:04X}", u32::from(c));
        }
        let mut v = Vec::new();
        for ok in [
            "Дравон Улмекк",
            "Δράβον Ουλμέκκ",
            "José Müller-Straße",
            "王伟",
            "محمد",
            "O'Neil & Sons",
            "Ｄｒａｖｏｎ",
        ] {
            check_text("legal_name", ok, 64, &mut v);
        }
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn countries_must_be_two_upper_case_letters() {
        let mut v = Vec::new();
        check_country("country", "de", &mut v);
        check_country("country", "DEU", &mut v);
        check_country("country", "DE", &mut v);
        assert_eq!(v.len(), 2);
    }
}
