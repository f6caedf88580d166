//! The model-evaluation certificate profile: OIDs, claim fields and their
//! strict textual encodings. See `certs/PROFILE.md`.
//!
//! Every OID hangs off one configurable base arc:
//!
//! | OID              | meaning                                   |
//! |------------------|-------------------------------------------|
//! | `<base>.1`       | EKU id-kp-modelEvaluation                 |
//! | `<base>.2.N`     | claim extension N (see [`Field::arc`])    |
//!
//! Each claim extension is non-critical and its value is one DER UTF8String.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pki::{FieldError, PkiError};

/// Default base arc: the IANA documentation enterprise number (RFC 5612),
/// `1.3.6.1.4.1.32473.1`. A real accreditation scheme defines its own.
pub const DEFAULT_BASE_ARC: &[u64] = &[1, 3, 6, 1, 4, 1, 32473, 1];

/// Upper bound on the length of any text claim, in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Upper bound on the number of listed regions.
pub const MAX_REGIONS: usize = 64;

/// Parse a dotted OID string such as `"1.3.6.1.4.1.32473.1"`.
pub fn parse_oid(s: &str) -> Result<Vec<u64>, PkiError> {
    let err = |reason: String| PkiError::InvalidOid {
        input: s.to_string(),
        reason,
    };
    if s.trim().is_empty() {
        return Err(err("empty string".into()));
    }
    let mut arcs = Vec::new();
    for (i, part) in s.split('.').enumerate() {
        if part.is_empty() {
            return Err(err(format!("component {} is empty", i + 1)));
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(format!(
                "component {} ({part:?}) is not a non-negative decimal integer",
                i + 1
            )));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(err(format!(
                "component {} ({part:?}) has a leading zero",
                i + 1
            )));
        }
        let v: u64 = part.parse().map_err(|_| {
            err(format!(
                "component {} ({part:?}) does not fit in 64 bits",
                i + 1
            ))
        })?;
        arcs.push(v);
    }
    check_arcs(&arcs).map_err(err)?;
    Ok(arcs)
}

/// Render arcs as a dotted string.
pub fn oid_to_string(arcs: &[u64]) -> String {
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn check_arcs(arcs: &[u64]) -> Result<(), String> {
    if arcs.len() < 2 {
        return Err("an OID needs at least two components".into());
    }
    if arcs.len() > 32 {
        return Err("more than 32 components".into());
    }
    if arcs[0] > 2 {
        return Err("the first component must be 0, 1 or 2".into());
    }
    if arcs[0] < 2 && arcs[1] >= 40 {
        return Err("the second component must be below 40 when the first is 0 or 1".into());
    }
    // asn1-rs / x509-parser only handle OIDs whose first two components
    // share one octet (40 * first + second < 128).
    if arcs[0] == 2 && arcs[1] > 47 {
        return Err(
            "under 2, the second component must be at most 47 (x509-parser limitation)".into(),
        );
    }
    Ok(())
}

/// DER content octets (no tag/length) of an OID, via asn1-rs.
fn oid_content_der(arcs: &[u64]) -> Result<Vec<u8>, PkiError> {
    x509_parser::asn1_rs::Oid::from(arcs)
        .map(|oid| oid.as_bytes().to_vec())
        .map_err(|e| PkiError::InvalidOid {
            input: oid_to_string(arcs),
            reason: format!("{e:?}"),
        })
}

/// The profile: where the OIDs live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Profile {
    base_arc: Vec<u64>,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            base_arc: DEFAULT_BASE_ARC.to_vec(),
        }
    }
}

impl Profile {
    /// A profile rooted at `base_arc`. Fails if the arc is not a valid OID.
    pub fn new(base_arc: Vec<u64>) -> Result<Self, PkiError> {
        check_arcs(&base_arc).map_err(|reason| PkiError::InvalidOid {
            input: oid_to_string(&base_arc),
            reason,
        })?;
        // The derived OIDs must encode too.
        let p = Profile { base_arc };
        oid_content_der(&p.eku_oid())?;
        Ok(p)
    }

    /// A profile rooted at a dotted base arc, e.g. from configuration.
    pub fn from_oid_str(base_arc: &str) -> Result<Self, PkiError> {
        Self::new(parse_oid(base_arc)?)
    }

    pub fn base_arc(&self) -> &[u64] {
        &self.base_arc
    }

    /// `<base>.1`: the model-evaluation extended key usage.
    pub fn eku_oid(&self) -> Vec<u64> {
        let mut v = self.base_arc.clone();
        v.push(1);
        v
    }

    /// `<base>.2.N`: the extension carrying `field`.
    pub fn field_oid(&self, field: Field) -> Vec<u64> {
        let mut v = self.base_arc.clone();
        v.push(2);
        v.push(field.arc());
        v
    }

    pub fn eku_oid_string(&self) -> String {
        oid_to_string(&self.eku_oid())
    }

    pub fn field_oid_string(&self, field: Field) -> String {
        oid_to_string(&self.field_oid(field))
    }

    /// The field carried by the extension `oid`, if it is one of ours.
    pub fn field_for_oid(&self, oid: &[u64]) -> Option<Field> {
        Field::ALL.into_iter().find(|f| self.field_oid(*f) == oid)
    }

    /// DER content octets of the EKU OID with a `'static` lifetime, as
    /// `webpki::KeyUsage::required` wants. Leaked once per distinct base arc
    /// for the life of the process (bounded by the number of configured arcs).
    pub(crate) fn eku_der_static(&self) -> Result<&'static [u8], PkiError> {
        static CACHE: OnceLock<Mutex<HashMap<Vec<u64>, &'static [u8]>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(der) = map.get(&self.base_arc) {
            return Ok(der);
        }
        let der: &'static [u8] = Box::leak(oid_content_der(&self.eku_oid())?.into_boxed_slice());
        map.insert(self.base_arc.clone(), der);
        Ok(der)
    }
}

/// One claim carried by a model-evaluation certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    ModelDigest,
    ModelName,
    ModelVersion,
    Developer,
    SuiteId,
    SuiteVersion,
    Result,
    ReportSha256,
    RiskTier,
    TrainingComputeFlop,
    ScopeRegions,
    ScopeMaxAccelerators,
}

impl Field {
    pub const ALL: [Field; 12] = [
        Field::ModelDigest,
        Field::ModelName,
        Field::ModelVersion,
        Field::Developer,
        Field::SuiteId,
        Field::SuiteVersion,
        Field::Result,
        Field::ReportSha256,
        Field::RiskTier,
        Field::TrainingComputeFlop,
        Field::ScopeRegions,
        Field::ScopeMaxAccelerators,
    ];

    /// Name used in messages; equals the claims' JSON/TOML key.
    pub fn name(self) -> &'static str {
        match self {
            Field::ModelDigest => "model_digest",
            Field::ModelName => "model_name",
            Field::ModelVersion => "model_version",
            Field::Developer => "developer",
            Field::SuiteId => "suite_id",
            Field::SuiteVersion => "suite_version",
            Field::Result => "result",
            Field::ReportSha256 => "report_sha256",
            Field::RiskTier => "risk_tier",
            Field::TrainingComputeFlop => "training_compute_flop",
            Field::ScopeRegions => "regions",
            Field::ScopeMaxAccelerators => "max_accelerators",
        }
    }

    /// Last arc: the extension OID is `<base>.2.<arc>`.
    pub fn arc(self) -> u64 {
        match self {
            Field::ModelDigest => 1,
            Field::ModelName => 2,
            Field::ModelVersion => 3,
            Field::Developer => 4,
            Field::SuiteId => 5,
            Field::SuiteVersion => 6,
            Field::Result => 7,
            Field::ReportSha256 => 8,
            Field::RiskTier => 9,
            Field::TrainingComputeFlop => 10,
            Field::ScopeRegions => 11,
            Field::ScopeMaxAccelerators => 12,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Outcome of the evaluation suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvaluationResult {
    Pass,
    Fail,
}

impl EvaluationResult {
    pub fn as_str(self) -> &'static str {
        match self {
            EvaluationResult::Pass => "pass",
            EvaluationResult::Fail => "fail",
        }
    }
}

/// Deployment regions the licence covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Regions {
    /// `*`: any region.
    Any,
    /// An explicit, non-empty list of region names.
    List(Vec<String>),
}

impl Regions {
    /// Whether `region` is covered.
    pub fn allows(&self, region: &str) -> bool {
        match self {
            Regions::Any => true,
            Regions::List(list) => list.iter().any(|r| r == region),
        }
    }

    /// The extension encoding: `*` or `name,name,...`.
    pub fn encode(&self) -> String {
        match self {
            Regions::Any => "*".into(),
            Regions::List(list) => list.join(","),
        }
    }

    /// Strict parse of the extension encoding.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Regions::Any);
        }
        Self::from_list(s.split(',').map(str::to_string).collect())
    }

    fn from_list(list: Vec<String>) -> Result<Self, String> {
        if list.is_empty() || (list.len() == 1 && list[0].is_empty()) {
            return Err("empty region list (use \"*\" for any region)".into());
        }
        if list.len() == 1 && list[0] == "*" {
            return Ok(Regions::Any);
        }
        if list.len() > MAX_REGIONS {
            return Err(format!("more than {MAX_REGIONS} regions"));
        }
        for (i, r) in list.iter().enumerate() {
            if r == "*" {
                return Err("\"*\" cannot be combined with named regions".into());
            }
            if r.is_empty() || r.len() > 64 {
                return Err(format!("region {} is empty or longer than 64 bytes", i + 1));
            }
            if !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(format!(
                    "region {r:?} may only contain ASCII letters, digits, '-', '_' and '.'"
                ));
            }
            if list[..i].contains(r) {
                return Err(format!("region {r:?} is listed twice"));
            }
        }
        Ok(Regions::List(list))
    }
}

impl Serialize for Regions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Regions::Any => s.serialize_str("*"),
            Regions::List(list) => list.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Regions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Str(String),
            List(Vec<String>),
        }
        let parsed = match Repr::deserialize(d)? {
            Repr::Str(s) => Regions::parse(&s),
            Repr::List(v) => Regions::from_list(v),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

/// Everything a model-evaluation certificate asserts (besides its validity
/// period, which is the licence period).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationClaims {
    /// `sha256:<64 lowercase hex>` of the model directory.
    pub model_digest: String,
    pub model_name: String,
    pub model_version: String,
    /// Legal name of the organisation that built the model.
    pub developer: String,
    pub suite_id: String,
    pub suite_version: String,
    pub result: EvaluationResult,
    /// 64 lowercase hex characters.
    pub report_sha256: String,
    pub risk_tier: u8,
    /// Training compute in FLOP; finite and >= 0.
    pub training_compute_flop: f64,
    pub regions: Regions,
    pub max_accelerators: u32,
}

/// The `--results FILE` format read by the evaluator tool: the claims minus
/// `model_digest`, which is computed from the model directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationResults {
    pub model_name: String,
    pub model_version: String,
    pub developer: String,
    pub suite_id: String,
    pub suite_version: String,
    pub result: EvaluationResult,
    pub report_sha256: String,
    pub risk_tier: u8,
    pub training_compute_flop: f64,
    pub regions: Regions,
    pub max_accelerators: u32,
}

impl EvaluationResults {
    /// Parse JSON (text starting with `{`) or TOML.
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| PkiError::InvalidResults(format!("JSON: {e}")))
        } else {
            toml::from_str(text).map_err(|e| PkiError::InvalidResults(format!("TOML: {e}")))
        }
    }

    /// Read a results file; `.json` is JSON, `.toml` is TOML, anything else is sniffed.
    pub fn load(path: &Path) -> Result<Self, PkiError> {
        let text = std::fs::read_to_string(path).map_err(|e| PkiError::io(path, e))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let res = match ext {
            "json" => serde_json::from_str(&text)
                .map_err(|e| PkiError::InvalidResults(format!("{}: {e}", path.display()))),
            "toml" => toml::from_str(&text)
                .map_err(|e| PkiError::InvalidResults(format!("{}: {e}", path.display()))),
            _ => Self::parse(&text),
        };
        res
    }

    /// Attach the computed model digest. The result is validated.
    pub fn into_claims(self, model_digest: String) -> Result<EvaluationClaims, PkiError> {
        let claims = EvaluationClaims {
            model_digest,
            model_name: self.model_name,
            model_version: self.model_version,
            developer: self.developer,
            suite_id: self.suite_id,
            suite_version: self.suite_version,
            result: self.result,
            report_sha256: self.report_sha256,
            risk_tier: self.risk_tier,
            training_compute_flop: self.training_compute_flop,
            regions: self.regions,
            max_accelerators: self.max_accelerators,
        };
        claims.validate()?;
        Ok(claims)
    }
}

impl EvaluationClaims {
    /// The exact UTF-8 text stored in `field`'s extension.
    pub fn encode_field(&self, field: Field) -> String {
        match field {
            Field::ModelDigest => self.model_digest.clone(),
            Field::ModelName => self.model_name.clone(),
            Field::ModelVersion => self.model_version.clone(),
            Field::Developer => self.developer.clone(),
            Field::SuiteId => self.suite_id.clone(),
            Field::SuiteVersion => self.suite_version.clone(),
            Field::Result => self.result.as_str().into(),
            Field::ReportSha256 => self.report_sha256.clone(),
            Field::RiskTier => self.risk_tier.to_string(),
            // `{:e}` is the shortest representation that round-trips, e.g. `3.2e25`.
            Field::TrainingComputeFlop => format!("{:e}", self.training_compute_flop),
            Field::ScopeRegions => self.regions.encode(),
            Field::ScopeMaxAccelerators => self.max_accelerators.to_string(),
        }
    }

    /// Check that every field survives encode → strict parse unchanged, i.e.
    /// that a certificate carrying these claims would verify. Reports every
    /// bad field.
    pub fn validate(&self) -> Result<(), PkiError> {
        let mut b = ClaimsBuilder::default();
        let mut errors = Vec::new();
        for f in Field::ALL {
            if let Err(reason) = b.set(f, &self.encode_field(f)) {
                errors.push(FieldError { field: f, reason });
            }
        }
        if !errors.is_empty() {
            return Err(PkiError::InvalidClaims(errors));
        }
        match b.finish() {
            Ok(parsed) if parsed == *self => Ok(()),
            _ => Err(PkiError::InvalidClaims(vec![FieldError {
                field: Field::TrainingComputeFlop,
                reason: "value does not round-trip through its encoding".into(),
            }])),
        }
    }
}

/// Accumulates strictly parsed field values (verification side).
#[derive(Default)]
pub(crate) struct ClaimsBuilder {
    model_digest: Option<String>,
    model_name: Option<String>,
    model_version: Option<String>,
    developer: Option<String>,
    suite_id: Option<String>,
    suite_version: Option<String>,
    result: Option<EvaluationResult>,
    report_sha256: Option<String>,
    risk_tier: Option<u8>,
    training_compute_flop: Option<f64>,
    regions: Option<Regions>,
    max_accelerators: Option<u32>,
}

fn is_lower_hex_64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_text(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > MAX_TEXT_LEN {
        return Err(format!("longer than {MAX_TEXT_LEN} bytes"));
    }
    // The model and developer names end in deployment records, attribution
    // answers and the ledger: nothing invisible may make one look like
    // another.
    if s.chars().any(crate::domain::customer::is_hidden_char) {
        return Err(crate::domain::customer::HIDDEN_CHARS.into());
    }
    if s.trim() != s {
        return Err("has leading or trailing whitespace".into());
    }
    Ok(s.to_string())
}

/// Strict unsigned decimal: ASCII digits only, no sign, no leading zeros.
fn parse_decimal<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not an unsigned decimal integer"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{s:?} has a leading zero"));
    }
    s.parse::<T>()
        .map_err(|_| format!("{s:?} is out of range for {what}"))
}

impl ClaimsBuilder {
    /// Parse `value` as `field`'s encoding and remember it.
    pub(crate) fn set(&mut self, field: Field, value: &str) -> Result<(), String> {
        match field {
            Field::ModelDigest => {
                let hex = value
                    .strip_prefix("sha256:")
                    .ok_or_else(|| format!("{value:?} does not start with \"sha256:\""))?;
                if !is_lower_hex_64(hex) {
                    return Err("expected \"sha256:\" followed by 64 lowercase hex digits".into());
                }
                self.model_digest = Some(value.to_string());
            }
            Field::ModelName => self.model_name = Some(parse_text(value)?),
            Field::ModelVersion => self.model_version = Some(parse_text(value)?),
            Field::Developer => self.developer = Some(parse_text(value)?),
            Field::SuiteId => self.suite_id = Some(parse_text(value)?),
            Field::SuiteVersion => self.suite_version = Some(parse_text(value)?),
            Field::Result => {
                self.result = Some(match value {
                    "pass" => EvaluationResult::Pass,
                    "fail" => EvaluationResult::Fail,
                    _ => return Err(format!("{value:?} is neither \"pass\" nor \"fail\"")),
                })
            }
            Field::ReportSha256 => {
                if !is_lower_hex_64(value) {
                    return Err("expected 64 lowercase hex digits".into());
                }
                self.report_sha256 = Some(value.to_string());
            }
            Field::RiskTier => self.risk_tier = Some(parse_decimal::<u8>(value, "0..=255")?),
            Field::TrainingComputeFlop => {
                if value.is_empty()
                    || !value.bytes().all(|b| {
                        b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+')
                    })
                    || value.starts_with(['-', '+'])
                {
                    return Err(format!(
                        "{value:?} is not a non-negative decimal number such as 3.2e25"
                    ));
                }
                let v: f64 = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not a decimal number such as 3.2e25"))?;
                if !v.is_finite() || v < 0.0 {
                    return Err(format!("{value:?} is not finite and >= 0"));
                }
                self.training_compute_flop = Some(v);
            }
            Field::ScopeRegions => self.regions = Some(Regions::parse(value)?),
            Field::ScopeMaxAccelerators => {
                self.max_accelerators = Some(parse_decimal::<u32>(value, "u32")?)
            }
        }
        Ok(())
    }

    /// All fields, or the list of those never set.
    pub(crate) fn finish(self) -> Result<EvaluationClaims, Vec<Field>> {
        match self {
            ClaimsBuilder {
                model_digest: Some(model_digest),
                model_name: Some(model_name),
                model_version: Some(model_version),
                developer: Some(developer),
                suite_id: Some(suite_id),
                suite_version: Some(suite_version),
                result: Some(result),
                report_sha256: Some(report_sha256),
                risk_tier: Some(risk_tier),
                training_compute_flop: Some(training_compute_flop),
                regions: Some(regions),
                max_accelerators: Some(max_accelerators),
            } => Ok(EvaluationClaims {
                model_digest,
                model_name,
                model_version,
                developer,
                suite_id,
                suite_version,
                result,
                report_sha256,
                risk_tier,
                training_compute_flop,
                regions,
                max_accelerators,
            }),
            b => {
                let missing = [
                    (Field::ModelDigest, b.model_digest.is_none()),
                    (Field::ModelName, b.model_name.is_none()),
                    (Field::ModelVersion, b.model_version.is_none()),
                    (Field::Developer, b.developer.is_none()),
                    (Field::SuiteId, b.suite_id.is_none()),
                    (Field::SuiteVersion, b.suite_version.is_none()),
                    (Field::Result, b.result.is_none()),
                    (Field::ReportSha256, b.report_sha256.is_none()),
                    (Field::RiskTier, b.risk_tier.is_none()),
                    (
                        Field::TrainingComputeFlop,
                        b.training_compute_flop.is_none(),
                    ),
                    (Field::ScopeRegions, b.regions.is_none()),
                    (Field::ScopeMaxAccelerators, b.max_accelerators.is_none()),
                ];
                Err(missing
                    .into_iter()
                    .filter(|(_, m)| *m)
                    .map(|(f, _)| f)
                    .collect())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn certificate_text_refuses_control_and_invisible_characters() {
        for bad in [
            "Acme\u{200b} AI",
            "Acme\u{ad}AI",
            "Acme\u{202e}IA",
            "Acme\nAI",
        ] {
            let e = parse_text(bad).unwrap_err();
            assert!(e.contains("not allowed"), "{bad:?}: {e}");
        }
        assert_eq!(parse_text("Лаборатория Acme").unwrap(), "Лаборатория Acme");
    }

    #[test]
    fn oid_parsing() {
        assert_eq!(parse_oid("1.3.6.1.4.1.32473.1").unwrap(), DEFAULT_BASE_ARC);
        for bad in [
            "",
            "1",
            "1..2",
            "1.a",
            "3.1",
            "1.40",
            "1.02",
            "1.2.99999999999999999999",
        ] {
            let e = parse_oid(bad).unwrap_err();
            assert!(e.to_string().contains("invalid OID"), "{bad}: {e}");
        }
        assert!(Profile::from_oid_str("2.999.7")
            .unwrap_err()
            .to_string()
            .contains("47"));
        let p = Profile::from_oid_str("2.25.7").unwrap();
        assert_eq!(p.eku_oid_string(), "2.25.7.1");
        assert_eq!(
            p.field_oid_string(Field::ScopeMaxAccelerators),
            "2.25.7.2.12"
        );
        assert_eq!(p.field_for_oid(&[2, 25, 7, 2, 9]), Some(Field::RiskTier));
        let d = Profile::default();
        assert_eq!(d.eku_oid_string(), "1.3.6.1.4.1.32473.1.1");
        // The leaked DER is cached per arc.
        assert_eq!(
            d.eku_der_static().unwrap().as_ptr(),
            d.eku_der_static().unwrap().as_ptr()
        );
    }

    #[test]
    fn results_file_formats() {
        let json = r#"{"model_name":"m","model_version":"1","developer":"Acme AI Ltd",
            "suite_id":"s","suite_version":"2","result":"pass","report_sha256":"
            REPLACE","risk_tier":3,"training_compute_flop":3.2e25,"regions":"eu,us",
            "max_accelerators":64}"#
            .replace("\n            REPLACE", &"a".repeat(64));
        let r = EvaluationResults::parse(&json).unwrap();
        assert_eq!(r.regions, Regions::List(vec!["eu".into(), "us".into()]));
        let toml = format!(
            "model_name='m'\nmodel_version='1'\ndeveloper='Acme'\nsuite_id='s'\n\
             suite_version='2'\nresult='fail'\nreport_sha256='{}'\nrisk_tier=0\n\
             training_compute_flop=1e20\nregions=['*']\nmax_accelerators=1\n",
            "b".repeat(64)
        );
        let r = EvaluationResults::parse(&toml).unwrap();
        assert_eq!(r.regions, Regions::Any);
        let c = r.into_claims(format!("sha256:{}", "c".repeat(64))).unwrap();
        assert_eq!(c.encode_field(Field::TrainingComputeFlop), "1e20");
        assert!(EvaluationResults::parse("regions = '*,eu'").is_err());
        let bad = c.clone().model_digest;
        let mut c2 = c.clone();
        c2.model_digest = bad.to_uppercase();
        c2.training_compute_flop = f64::NAN;
        match c2.validate() {
            Err(PkiError::InvalidClaims(errs)) => {
                let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
                assert_eq!(fields, vec![Field::ModelDigest, Field::TrainingComputeFlop]);
            }
            other => panic!("{other:?}"),
        }
    }
}
