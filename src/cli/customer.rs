//! `warden customer …`: the KYC onboarding system's commands.
//!
//! Records are given as JSON files that mirror `CustomerDetails` and its
//! neighbours in `proto/warden/v1/customers.proto`: [`CustomerFile`] for
//! `add`, [`CustomerUpdateFile`] for `update`. Every struct refuses unknown
//! fields, so a misspelt field is an error naming it (with its line and
//! column) before anything is sent. What the file says is then checked by
//! the server, which reports every invalid field by the same name the file
//! uses (`details.addresses[0].city`); the CLI prints one per line.
//!
//! Output mirrors the file format: `get --json` prints the record with a
//! `details` object that an update file can take as it is.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::commands::status_error;
use super::ClientArgs;
use crate::api::convert::{millis, rfc3339, timestamp};
use crate::proto;
use crate::proto::customers_client::CustomersClient;

/// The file format, shown by `warden customer add --help`.
const ADD_FORMAT: &str = r#"FILE is JSON (`-` reads stdin); unknown fields are refused by name:

  {
    "customer_id": "beta-labs",            1-128 of [A-Za-z0-9._:-]
    "kind": "organisation",                or "individual"
    "legal_name": "Beta Labs GmbH",
    "country": "DE",                       ISO 3166-1 alpha-2
    "status": "pending",                   optional: pending (default), verified, suspended
    "details": {                           every field optional in the file
      "aliases": ["Beta Labs"],
      "date_of_birth": "", "place_of_birth": "",            individuals (date YYYY-MM-DD)
      "registration_number": "HRB 000000 B",                organisations
      "legal_form": "GmbH", "jurisdiction": "DE",
      "addresses": [{"lines": ["Beispielstrasse 12"], "city": "Berlin",
                     "postal_code": "10115", "region": "", "country": "DE"}],
      "email": "kyc@beta-labs.example",
      "phone": "+4930123456",                                E.164
      "payment_fingerprint": "",                             hex SHA-256, never the number
      "beneficial_owners": [{"name": "…", "nationality": "DE", "date_of_birth": "1979-03-02",
                             "id_number": "", "id_issuing_country": "",
                             "ownership_percent": 60, "role": ""}],
      "key_personnel": [ …same shape… ],
      "declared_purpose": "…",
      "verification": {"method": "registry-extract", "evidence_sha256": "<64 hex>",
                       "verified_by": "…", "verified_at": "2026-10-01T09:30:00Z"},
      "risk_rating": "low"                                   low, medium or high
    }
  }

The server requires, for every customer, at least one address (lines, city,
country), an email and declared_purpose; for an individual date_of_birth; for
an organisation registration_number, legal_form and jurisdiction. A record has
at most 32 aliases, 20 addresses of 1-8 lines, 100 beneficial_owners and 100
key_personnel, and is at most 64 KiB in all. The server reports invalid fields
by name (the first 50, and how many more). See examples/customers/ for
complete files."#;

/// The update file format, shown by `warden customer update --help`.
const UPDATE_FORMAT: &str = r#"FILE is JSON (`-` reads stdin) holding the whole new identity record:

  {"legal_name": "…", "country": "DE", "details": { …as for `warden customer add`… }}

The customer id is given on the command line, the kind cannot change, and the
status changes with `warden customer status`. The `details` object that
`warden --json customer get` prints can be used as it is."#;

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Register a customer from a JSON file.
    #[command(after_long_help = ADD_FORMAT)]
    Add {
        /// The record (JSON; `-` reads stdin).
        file: PathBuf,
    },
    /// Replace a customer's identity record (writes a new version; the
    /// status is unchanged).
    #[command(after_long_help = UPDATE_FORMAT)]
    Update {
        customer_id: String,
        /// legal_name, country and details (JSON; `-` reads stdin).
        file: PathBuf,
        /// Apply only if this is still the newest version.
        #[arg(long)]
        expected_version: Option<u64>,
    },
    /// Show a customer: its newest version, or the one in force at --as-of.
    Get {
        customer_id: String,
        /// RFC 3339 time, e.g. 2026-10-01T12:00:00Z.
        #[arg(long, value_parser = parse_rfc3339)]
        as_of: Option<i64>,
    },
    /// List customers (newest versions), by customer id.
    List {
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// ISO 3166-1 alpha-2 code.
        #[arg(long)]
        country: Option<String>,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        page_size: u32,
        /// Continue after this token (printed by the previous page).
        #[arg(long)]
        page_token: Option<String>,
        /// Follow the pages to the end.
        #[arg(long)]
        all: bool,
    },
    /// Set a customer's status.
    Status {
        customer_id: String,
        #[arg(value_enum)]
        status: Status,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resolve a potential sanctions match; a confirmed match also
    /// suspends the customer.
    Resolve {
        customer_id: String,
        #[arg(value_enum)]
        resolution: Resolution,
        /// Why (required; kept with the result, its hash goes to the ledger).
        #[arg(long)]
        note: String,
    },
}

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
    fn to_proto(self) -> proto::CustomerStatus {
        match self {
            Self::Pending => proto::CustomerStatus::Pending,
            Self::Verified => proto::CustomerStatus::Verified,
            Self::Suspended => proto::CustomerStatus::Suspended,
            Self::Closed => proto::CustomerStatus::Closed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resolution {
    /// The customer is not the listed party.
    FalsePositive,
    /// The customer is the listed party (suspends it).
    #[value(alias = "confirmed-match")]
    Confirmed,
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
    fn into_proto(self) -> anyhow::Result<proto::CustomerDetails> {
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

    fn from_proto(d: &proto::CustomerDetails) -> Self {
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
pub(super) fn read_input(path: &Path) -> anyhow::Result<(String, Vec<u8>)> {
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

fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map_or_else(
        || "unknown".to_string(),
        |n| n.trim_start_matches(prefix).to_ascii_lowercase(),
    )
}

/// A customer as printed: the file format's names and shapes, plus what
/// the server adds (version, screening, …).
#[derive(Debug, Serialize)]
struct CustomerView {
    customer_id: String,
    kind: String,
    legal_name: String,
    country: String,
    status: String,
    status_reason: String,
    version: u64,
    updated_at: Option<String>,
    updated_by: String,
    purged: bool,
    screening: Option<ScreeningView>,
    details: DetailsFile,
}

#[derive(Debug, Serialize)]
struct ScreeningView {
    status: String,
    list_name: String,
    list_version: String,
    list_sha256: String,
    threshold: f64,
    screened_at: Option<String>,
    hits: Vec<HitView>,
    resolution_note: String,
    resolved_by: String,
    resolved_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct HitView {
    entry_id: String,
    entry_name: String,
    list_name: String,
    matched_field: String,
    score: f64,
}

fn ts(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.map(|t| rfc3339(millis(t)))
}

fn customer_view(x: &proto::Customer) -> CustomerView {
    CustomerView {
        customer_id: x.customer_id.clone(),
        kind: enum_name(
            proto::CustomerKind::try_from(x.kind)
                .ok()
                .map(|k| k.as_str_name()),
            "CUSTOMER_KIND_",
        ),
        legal_name: x.legal_name.clone(),
        country: x.country.clone(),
        status: status_name(x.status),
        status_reason: x.status_reason.clone(),
        version: x.version,
        updated_at: ts(x.updated_at.as_ref()),
        updated_by: x.updated_by.clone(),
        purged: x.purged,
        screening: x.screening.as_ref().map(|s| ScreeningView {
            status: screening_name(s.status),
            list_name: s.list_name.clone(),
            list_version: s.list_version.clone(),
            list_sha256: s.list_sha256.clone(),
            threshold: s.threshold,
            screened_at: ts(s.screened_at.as_ref()),
            hits: s
                .hits
                .iter()
                .map(|h| HitView {
                    entry_id: h.entry_id.clone(),
                    entry_name: h.entry_name.clone(),
                    list_name: h.list_name.clone(),
                    matched_field: h.matched_field.clone(),
                    score: h.score,
                })
                .collect(),
            resolution_note: s.resolution_note.clone(),
            resolved_by: s.resolved_by.clone(),
            resolved_at: ts(s.resolved_at.as_ref()),
        }),
        details: x
            .details
            .as_ref()
            .map(DetailsFile::from_proto)
            .unwrap_or_default(),
    }
}

fn status_name(s: i32) -> String {
    enum_name(
        proto::CustomerStatus::try_from(s)
            .ok()
            .map(|s| s.as_str_name()),
        "CUSTOMER_STATUS_",
    )
}

fn screening_name(s: i32) -> String {
    enum_name(
        proto::ScreeningStatus::try_from(s)
            .ok()
            .map(|s| s.as_str_name()),
        "SCREENING_STATUS_",
    )
}

fn print_customer(as_json: bool, x: &proto::Customer) -> anyhow::Result<()> {
    let view = customer_view(x);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", render(&view)?);
    }
    Ok(())
}

/// Readable text of a serializable value: one `key value` line per field,
/// nested fields indented under their name, list items numbered, empty
/// fields left out. Field order is the struct's.
fn render<T: Serialize>(value: &T) -> anyhow::Result<String> {
    // Through JSON text into an order-keeping tree (serde_json's own map
    // type sorts keys).
    let node: Node = serde_json::from_str(&serde_json::to_string(value)?)?;
    let mut out = String::new();
    if let Node::Map(entries) = &node {
        render_map(entries, 0, &mut out);
    }
    Ok(out)
}

#[derive(Debug)]
enum Node {
    Scalar(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
    Empty,
}

impl Node {
    fn is_empty(&self) -> bool {
        match self {
            Node::Empty => true,
            Node::Scalar(s) => s.is_empty(),
            Node::List(items) => items.iter().all(Node::is_empty),
            Node::Map(entries) => entries.iter().all(|(_, v)| v.is_empty()),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(if v {
                    Node::Scalar("true".into())
                } else {
                    Node::Empty
                })
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(if v == 0 {
                    Node::Empty
                } else {
                    Node::Scalar(v.to_string())
                })
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(if v == 0 {
                    Node::Empty
                } else {
                    Node::Scalar(v.to_string())
                })
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(if v == 0.0 {
                    Node::Empty
                } else {
                    Node::Scalar(v.to_string())
                })
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Scalar(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Empty)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Empty)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(Node::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Node>()? {
                    entries.push((k, v));
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

fn render_map(entries: &[(String, Node)], indent: usize, out: &mut String) {
    let shown: Vec<&(String, Node)> = entries.iter().filter(|(_, v)| !v.is_empty()).collect();
    let width = shown.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let pad = " ".repeat(indent);
    for (key, value) in shown {
        match value {
            Node::Scalar(s) => out.push_str(&format!("{pad}{key:<width$}  {s}\n")),
            Node::List(items) if items.iter().all(|i| matches!(i, Node::Scalar(_))) => {
                let joined: Vec<&str> = items
                    .iter()
                    .filter_map(|i| match i {
                        Node::Scalar(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                out.push_str(&format!("{pad}{key:<width$}  {}\n", joined.join("; ")));
            }
            Node::List(items) => {
                out.push_str(&format!("{pad}{key}\n"));
                for (i, item) in items.iter().enumerate() {
                    let label = format!("[{i}] ");
                    let mut sub = String::new();
                    match item {
                        Node::Map(e) => render_map(e, indent + 2 + label.len(), &mut sub),
                        Node::Scalar(s) => {
                            sub = format!("{}{s}\n", " ".repeat(indent + 2 + label.len()))
                        }
                        _ => {}
                    }
                    // The label takes the place of the first line's indent.
                    let first = indent + 2 + label.len();
                    if sub.len() >= first {
                        out.push_str(&" ".repeat(indent + 2));
                        out.push_str(&label);
                        out.push_str(&sub[first..]);
                    }
                }
            }
            Node::Map(e) => {
                out.push_str(&format!("{pad}{key}\n"));
                render_map(e, indent + 2, out);
            }
            Node::Empty => {}
        }
    }
}

fn print_list(customers: &[proto::Customer]) {
    let width = customers
        .iter()
        .map(|c| c.customer_id.len())
        .max()
        .unwrap_or(0);
    for c in customers {
        let screening = c
            .screening
            .as_ref()
            .map_or_else(|| "-".to_string(), |s| screening_name(s.status));
        println!(
            "{:<width$}  {:<9}  {:<12}  {}  {:<15}  {}",
            c.customer_id,
            status_name(c.status),
            enum_name(
                proto::CustomerKind::try_from(c.kind)
                    .ok()
                    .map(|k| k.as_str_name()),
                "CUSTOMER_KIND_",
            ),
            c.country,
            screening,
            c.legal_name,
        );
    }
}

const UPDATE_HINT: &str =
    "(an update file holds legal_name, country and details; see `warden customer update --help`)";
const ADD_HINT: &str = "(see `warden customer add --help` for the file format)";

async fn connect(c: &ClientArgs) -> anyhow::Result<CustomersClient<tonic::transport::Channel>> {
    Ok(CustomersClient::new(c.connect("kyc").await?))
}

pub async fn run(c: &ClientArgs, cmd: CustomerCommand) -> anyhow::Result<()> {
    // Each file is read and checked before connecting, so a bad file is
    // reported without a server.
    let x = match cmd {
        CustomerCommand::Add { file } => {
            let (name, bytes) = read_input(&file)?;
            let f: CustomerFile = parse_file(&name, &bytes, ADD_HINT)?;
            let request = f
                .into_request()
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            connect(c).await?.register_customer(request).await
        }
        CustomerCommand::Update {
            customer_id,
            file,
            expected_version,
        } => {
            let (name, bytes) = read_input(&file)?;
            let f: CustomerUpdateFile = parse_file(&name, &bytes, UPDATE_HINT)?;
            let request = f
                .into_request(customer_id, expected_version.unwrap_or(0))
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            connect(c).await?.update_customer(request).await
        }
        CustomerCommand::Get { customer_id, as_of } => {
            connect(c)
                .await?
                .get_customer(proto::GetCustomerRequest {
                    customer_id,
                    as_of: as_of.map(timestamp),
                })
                .await
        }
        CustomerCommand::List {
            status,
            country,
            page_size,
            page_token,
            all,
        } => {
            let mut client = connect(c).await?;
            let mut customers = Vec::new();
            let mut token = page_token.unwrap_or_default();
            loop {
                let r = client
                    .list_customers(proto::ListCustomersRequest {
                        page_size,
                        page_token: token,
                        status: status.map_or(proto::CustomerStatus::Unspecified, Status::to_proto)
                            as i32,
                        country: country.clone().unwrap_or_default(),
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                customers.extend(r.customers);
                token = r.next_page_token;
                if !all || token.is_empty() {
                    break;
                }
            }
            if c.json {
                #[derive(Serialize)]
                struct Page {
                    customers: Vec<CustomerView>,
                    next_page_token: String,
                }
                let page = Page {
                    customers: customers.iter().map(customer_view).collect(),
                    next_page_token: token,
                };
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_list(&customers);
                if !token.is_empty() {
                    println!("more: --page-token {token} (or --all)");
                }
            }
            return Ok(());
        }
        CustomerCommand::Status {
            customer_id,
            status,
            reason,
        } => {
            connect(c)
                .await?
                .set_customer_status(proto::SetCustomerStatusRequest {
                    customer_id,
                    status: status.to_proto() as i32,
                    reason,
                })
                .await
        }
        CustomerCommand::Resolve {
            customer_id,
            resolution,
            note,
        } => {
            connect(c)
                .await?
                .resolve_screening(proto::ResolveScreeningRequest {
                    customer_id,
                    resolution: match resolution {
                        Resolution::FalsePositive => proto::ScreeningResolution::FalsePositive,
                        Resolution::Confirmed => proto::ScreeningResolution::ConfirmedMatch,
                    } as i32,
                    note,
                })
                .await
        }
    }
    .map_err(status_error)?
    .into_inner();
    print_customer(c.json, &x)
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn printed_details_read_back_as_an_update() {
        let f: CustomerFile = parse_file("b", &example("beta-labs.json"), "").unwrap();
        let details = f.details.clone();
        let proto_details = f.details.into_proto().unwrap();
        let view = customer_view(&proto::Customer {
            customer_id: "beta-labs".into(),
            legal_name: f.legal_name.clone(),
            country: f.country.clone(),
            details: Some(proto_details),
            ..proto::Customer::default()
        });
        let json = serde_json::to_value(&view).unwrap();
        let update: CustomerUpdateFile = serde_json::from_value(serde_json::json!({
            "legal_name": json["legal_name"],
            "country": json["country"],
            "details": json["details"],
        }))
        .unwrap();
        assert_eq!(update.details, details);
    }

    #[test]
    fn readable_output_nests_and_leaves_out_empty_fields() {
        let f: CustomerFile = parse_file("b", &example("beta-labs.json"), "").unwrap();
        let view = customer_view(&proto::Customer {
            customer_id: "beta-labs".into(),
            kind: proto::CustomerKind::Organisation as i32,
            legal_name: f.legal_name.clone(),
            status: proto::CustomerStatus::Pending as i32,
            version: 1,
            screening: Some(proto::Screening {
                status: proto::ScreeningStatus::PotentialMatch as i32,
                hits: vec![proto::ScreeningHit {
                    entry_id: "SYN-1".into(),
                    entry_name: "Someone".into(),
                    matched_field: "legal_name".into(),
                    score: 0.95,
                    ..proto::ScreeningHit::default()
                }],
                ..proto::Screening::default()
            }),
            details: Some(f.details.into_proto().unwrap()),
            ..proto::Customer::default()
        });
        let text = render(&view).unwrap();
        assert!(text.starts_with("customer_id  beta-labs\nkind"), "{text}");
        assert!(text.contains("\nstatus       pending\n"), "{text}");
        assert!(
            text.contains("\nscreening\n  status  potential_match\n  hits\n    [0] entry_id"),
            "{text}"
        );
        assert!(text.contains("score          0.95"), "{text}");
        assert!(text.contains("\n  addresses\n    [0] lines"), "{text}");
        assert!(!text.contains("purged"), "{text}");
        assert!(!text.contains("date_of_birth  \n"), "{text}");
    }
}
