//! Attribution requests: the legal process an authority presents, what it
//! asks about, and the record kept of every request.

use serde::{Deserialize, Serialize};

use super::customer::{check_identifier, check_iso_country, check_sha256, FieldViolation};
use super::customer::{is_hidden_char, HIDDEN_CHARS};
use super::UnixMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Instrument {
    Subpoena,
    CourtOrder,
    Warrant,
    /// Answered at once, flagged for review.
    Emergency,
}

impl Instrument {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subpoena => "SUBPOENA",
            Self::CourtOrder => "COURT_ORDER",
            Self::Warrant => "WARRANT",
            Self::Emergency => "EMERGENCY",
        }
    }
}

/// The legal process a request rests on. None of it is personal data about
/// customers, so it is recorded in the ledger as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegalProcess {
    pub case_reference: String,
    pub requesting_authority: String,
    pub jurisdiction: String,
    pub instrument: Instrument,
    pub document_sha256: String,
}

/// What an authority asks about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum Selector {
    Deployment {
        deployment_id: String,
    },
    /// Deployments of a model whose lifetime overlaps `[from, to]`.
    Model {
        model_digest: String,
        from: UnixMillis,
        to: UnixMillis,
    },
    /// Deployments of a customer whose lifetime overlaps `[from, to]`.
    Customer {
        customer_id: String,
        from: UnixMillis,
        to: UnixMillis,
    },
    /// The deployment that last claimed an endpoint at or before `at`.
    Endpoint {
        endpoint: String,
        at: UnixMillis,
    },
}

impl Selector {
    /// One line for people: `deployment d-1`, `model sha256:… from … to …`.
    pub fn describe(&self, rfc3339: impl Fn(UnixMillis) -> String) -> String {
        match self {
            Self::Deployment { deployment_id } => format!("deployment {deployment_id}"),
            Self::Model {
                model_digest,
                from,
                to,
            } => format!(
                "model {model_digest} from {} to {}",
                rfc3339(*from),
                rfc3339(*to)
            ),
            Self::Customer {
                customer_id,
                from,
                to,
            } => format!(
                "customer {customer_id} from {} to {}",
                rfc3339(*from),
                rfc3339(*to)
            ),
            Self::Endpoint { endpoint, at } => format!("endpoint {endpoint} at {}", rfc3339(*at)),
        }
    }
}

/// Endpoints are compared without regard to ASCII case (host names).
pub fn normalize_endpoint(e: &str) -> String {
    e.trim().to_ascii_lowercase()
}

/// Printable text of 1 to `max` bytes.
fn check_printable(field: &str, value: &str, max: usize, v: &mut Vec<FieldViolation>) {
    if value.trim().is_empty() {
        v.push(FieldViolation::new(field, "required"));
    } else if value.len() > max {
        v.push(FieldViolation::new(field, format!("at most {max} bytes")));
    } else if value.chars().any(is_hidden_char) {
        v.push(FieldViolation::new(field, HIDDEN_CHARS));
    }
}

/// Checks legal process; every violation names its field under
/// `legal_process.`.
pub fn validate_legal_process(lp: &LegalProcess, v: &mut Vec<FieldViolation>) {
    check_printable("legal_process.case_reference", &lp.case_reference, 200, v);
    check_printable(
        "legal_process.requesting_authority",
        &lp.requesting_authority,
        200,
        v,
    );
    let j = &lp.jurisdiction;
    if j.is_empty() {
        v.push(FieldViolation::new(
            "legal_process.jurisdiction",
            "required",
        ));
    } else {
        let (country, subdivision) = j.split_once('-').unwrap_or((j, ""));
        let mut country_violations = Vec::new();
        check_iso_country(
            "legal_process.jurisdiction",
            country,
            &mut country_violations,
        );
        let subdivision_ok = j.find('-').is_none()
            || ((1..=3).contains(&subdivision.len())
                && subdivision
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        if !country_violations.is_empty() || !subdivision_ok {
            v.push(FieldViolation::new(
                "legal_process.jurisdiction",
                "an ISO 3166-1 alpha-2 country code, optionally with an ISO 3166-2 subdivision (US, US-CA)",
            ));
        }
    }
    if lp.document_sha256.is_empty() {
        v.push(FieldViolation::new(
            "legal_process.document_sha256",
            "required",
        ));
    } else {
        check_sha256("legal_process.document_sha256", &lp.document_sha256, v);
    }
}

fn check_model_digest(field: &str, value: &str, v: &mut Vec<FieldViolation>) {
    let ok = value.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !ok {
        v.push(FieldViolation::new(
            field,
            "expected sha256:<64 lower-case hex>",
        ));
    }
}

fn check_window(
    prefix: &str,
    from: Option<UnixMillis>,
    to: Option<UnixMillis>,
    v: &mut Vec<FieldViolation>,
) {
    if from.is_none() {
        v.push(FieldViolation::new(format!("{prefix}.from"), "required"));
    }
    if to.is_none() {
        v.push(FieldViolation::new(format!("{prefix}.to"), "required"));
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            v.push(FieldViolation::new(
                format!("{prefix}.to"),
                "must not be before from",
            ));
        }
    }
}

/// A selector as it arrives, before validation (times absent when unset).
#[derive(Debug, Clone)]
pub enum SelectorInput {
    None,
    Deployment(String),
    Model {
        model_digest: String,
        from: Option<UnixMillis>,
        to: Option<UnixMillis>,
    },
    Customer {
        customer_id: String,
        from: Option<UnixMillis>,
        to: Option<UnixMillis>,
    },
    Endpoint {
        endpoint: String,
        at: Option<UnixMillis>,
    },
}

/// Validates a selector; every violation names its field.
pub fn validate_selector(input: SelectorInput, v: &mut Vec<FieldViolation>) -> Option<Selector> {
    let before = v.len();
    let selector = match input {
        SelectorInput::None => {
            v.push(FieldViolation::new(
                "selector",
                "one of deployment_id, model, customer or endpoint is required",
            ));
            return None;
        }
        SelectorInput::Deployment(deployment_id) => {
            check_identifier("deployment_id", &deployment_id, v);
            Selector::Deployment { deployment_id }
        }
        SelectorInput::Model {
            model_digest,
            from,
            to,
        } => {
            check_model_digest("model.model_digest", &model_digest, v);
            check_window("model", from, to, v);
            Selector::Model {
                model_digest,
                from: from.unwrap_or_default(),
                to: to.unwrap_or_default(),
            }
        }
        SelectorInput::Customer {
            customer_id,
            from,
            to,
        } => {
            check_identifier("customer.customer_id", &customer_id, v);
            check_window("customer", from, to, v);
            Selector::Customer {
                customer_id,
                from: from.unwrap_or_default(),
                to: to.unwrap_or_default(),
            }
        }
        SelectorInput::Endpoint { endpoint, at } => {
            let e = normalize_endpoint(&endpoint);
            if e.is_empty() {
                v.push(FieldViolation::new("endpoint.endpoint", "required"));
            } else if e.len() > 255 || e.chars().any(|c| c.is_control() || c.is_whitespace()) {
                v.push(FieldViolation::new(
                    "endpoint.endpoint",
                    "a host, IP or IP:port of at most 255 bytes",
                ));
            }
            if at.is_none() {
                v.push(FieldViolation::new("endpoint.at", "required"));
            }
            Selector::Endpoint {
                endpoint: e,
                at: at.unwrap_or_default(),
            }
        }
    };
    (v.len() == before).then_some(selector)
}

/// What one answer disclosed, recorded once the answer is assembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    pub ledger_index: u64,
    pub deployment_ids: Vec<String>,
    /// The identity versions disclosed, as the ledger commits to them.
    pub identities: Vec<super::commitment::CustomerRef>,
}

/// The record kept of every attribution request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributionRequest {
    pub request_id: String,
    pub principal: String,
    pub at: UnixMillis,
    pub legal_process: LegalProcess,
    pub selector: Selector,
    pub page_token: String,
    pub flagged_for_review: bool,
    /// The entry that recorded the request; set by the store.
    pub ledger_index: u64,
    /// Set once the answer was assembled and recorded.
    pub disclosure: Option<Disclosure>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> LegalProcess {
        LegalProcess {
            case_reference: "CR-2026-0042".into(),
            requesting_authority: "Example Cyber Unit".into(),
            jurisdiction: "US-CA".into(),
            instrument: Instrument::Subpoena,
            document_sha256: "ab".repeat(32),
        }
    }

    fn fields(v: &[FieldViolation]) -> Vec<&str> {
        v.iter().map(|f| f.field.as_str()).collect()
    }

    #[test]
    fn legal_process_is_checked_field_by_field() {
        let mut v = Vec::new();
        validate_legal_process(&process(), &mut v);
        assert!(v.is_empty(), "{v:?}");
        for (lp, field) in [
            (
                LegalProcess {
                    case_reference: " ".into(),
                    ..process()
                },
                "legal_process.case_reference",
            ),
            (
                LegalProcess {
                    requesting_authority: "a\u{7}".into(),
                    ..process()
                },
                "legal_process.requesting_authority",
            ),
            (
                LegalProcess {
                    jurisdiction: "XX".into(),
                    ..process()
                },
                "legal_process.jurisdiction",
            ),
            (
                LegalProcess {
                    jurisdiction: "US-".into(),
                    ..process()
                },
                "legal_process.jurisdiction",
            ),
            (
                LegalProcess {
                    document_sha256: "zz".into(),
                    ..process()
                },
                "legal_process.document_sha256",
            ),
        ] {
            let mut v = Vec::new();
            validate_legal_process(&lp, &mut v);
            assert_eq!(fields(&v), vec![field]);
        }
    }

    #[test]
    fn selectors_name_their_fields() {
        let mut v = Vec::new();
        assert!(validate_selector(SelectorInput::None, &mut v).is_none());
        assert_eq!(fields(&v), vec!["selector"]);
        let mut v = Vec::new();
        let s = validate_selector(
            SelectorInput::Model {
                model_digest: "md5:1".into(),
                from: Some(10),
                to: Some(5),
            },
            &mut v,
        );
        assert!(s.is_none());
        assert_eq!(fields(&v), vec!["model.model_digest", "model.to"]);
        let mut v = Vec::new();
        let s = validate_selector(
            SelectorInput::Endpoint {
                endpoint: "API.Example.com:443".into(),
                at: Some(7),
            },
            &mut v,
        );
        assert_eq!(
            s,
            Some(Selector::Endpoint {
                endpoint: "api.example.com:443".into(),
                at: 7
            })
        );
        let mut v = Vec::new();
        validate_selector(
            SelectorInput::Customer {
                customer_id: String::new(),
                from: None,
                to: Some(1),
            },
            &mut v,
        );
        assert_eq!(fields(&v), vec!["customer.customer_id", "customer.from"]);
    }
}
