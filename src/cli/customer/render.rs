//! How `warden customer` prints records: `--json` mirrors the record file
//! (a `details` object an update file can take as it is); the readable form
//! nests the same fields and leaves out the empty ones.

use serde::{Deserialize, Serialize};

use super::file::DetailsFile;
use crate::api::convert::{millis, rfc3339};
use crate::proto;

fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map_or_else(
        || "unknown".to_string(),
        |n| n.trim_start_matches(prefix).to_ascii_lowercase(),
    )
}

/// A customer as printed: the file format's names and shapes, plus what
/// the server adds (version, screening, …).
#[derive(Debug, Serialize)]
pub(super) struct CustomerView {
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

pub(super) fn customer_view(x: &proto::Customer) -> CustomerView {
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

pub(super) fn print_customer(as_json: bool, x: &proto::Customer) -> anyhow::Result<()> {
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

pub(super) fn print_list(customers: &[proto::Customer]) {
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

#[cfg(test)]
mod tests {
    use super::super::file::{parse_file, CustomerFile, CustomerUpdateFile};
    use super::*;

    fn example(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/examples/customers/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
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
