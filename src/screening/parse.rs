//! Parsers for the OFAC SDN CSV files and the generic CSV list format.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{ListEntry, ListSource, SanctionsList, ScreeningError};

const SDN_FIELDS: [&str; 12] = [
    "ent_num",
    "SDN_Name",
    "SDN_Type",
    "Program",
    "Title",
    "Call_Sign",
    "Vess_type",
    "Tonnage",
    "GRT",
    "Vess_flag",
    "Vess_owner",
    "Remarks",
];
const ALT_FIELDS: [&str; 5] = ["ent_num", "alt_num", "alt_type", "alt_name", "alt_remarks"];

/// Lowercase hex SHA-256 of the concatenation of `parts`.
pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes a field: UTF-8, or Latin-1 when the bytes are not valid UTF-8.
fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

struct Rec {
    line: u64,
    fields: Vec<String>,
}

/// Maps byte offsets (non-decreasing) to 1-based line numbers. The csv
/// crate's own line counter is unreliable with CRLF line ends, and its byte
/// offset may point at the line end preceding a record.
struct LineCounter<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
}

impl LineCounter<'_> {
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while offset < self.bytes.len() && matches!(self.bytes[offset], b'\r' | b'\n') {
            offset += 1;
        }
        if offset >= self.pos {
            self.line += self.bytes[self.pos..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.pos = offset;
        }
        self.line
    }
}

/// Reads every record of a CSV file. With `has_headers`, the header is
/// returned separately.
fn read_records(
    src: ListSource<'_>,
    has_headers: bool,
) -> Result<(Option<Vec<String>>, Vec<Rec>), ScreeningError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(has_headers)
        .flexible(true)
        .from_reader(src.bytes);
    let mut lines = LineCounter {
        bytes: src.bytes,
        pos: 0,
        line: 1,
    };
    let file = src.file_name;
    let csv_err = |e: csv::Error, lines: &mut LineCounter<'_>| ScreeningError::Csv {
        file: file.to_string(),
        line: e.position().map_or(0, |p| lines.line_at(p.byte())),
        message: e.to_string(),
    };
    let header = if has_headers {
        let h = rdr.byte_headers().map_err(|e| csv_err(e, &mut lines))?;
        Some(h.iter().map(decode).collect())
    } else {
        None
    };
    let mut out = Vec::new();
    for r in rdr.byte_records() {
        let r = r.map_err(|e| csv_err(e, &mut lines))?;
        let line = r.position().map_or(0, |p| lines.line_at(p.byte()));
        out.push(Rec {
            line,
            fields: r.iter().map(decode).collect(),
        });
    }
    Ok((header, out))
}

/// Drops a trailing record that is only the DOS end-of-file marker (0x1A).
fn drop_trailing_sub(recs: &mut Vec<Rec>) {
    let is_sub = recs.last().is_some_and(|r| {
        r.fields.len() == 1 && r.fields[0].trim_matches(|c: char| c.is_whitespace()) == "\u{1a}"
    });
    if is_sub {
        recs.pop();
    }
}

/// OFAC value: trimmed, `None` for the `-0-` null marker or empty.
fn ofac_value(raw: &str) -> Option<&str> {
    let t = raw.trim();
    if t.is_empty() || t == "-0-" {
        None
    } else {
        Some(t)
    }
}

fn invalid(file: &str, line: u64, field: &str, reason: impl Into<String>) -> ScreeningError {
    ScreeningError::InvalidField {
        file: file.to_string(),
        line,
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn parse_ent_num(file: &str, line: u64, raw: &str) -> Result<u64, ScreeningError> {
    let v = ofac_value(raw).ok_or_else(|| invalid(file, line, "ent_num", "missing"))?;
    v.parse::<u64>()
        .map_err(|_| invalid(file, line, "ent_num", format!("not an integer: {v:?}")))
}

/// Parses the OFAC SDN legacy CSV (`sdn.csv`, optional `alt.csv`).
///
/// `sdn.csv`: no header, 12 columns (`ent_num, SDN_Name, SDN_Type, Program,
/// Title, Call_Sign, Vess_type, Tonnage, GRT, Vess_flag, Vess_owner,
/// Remarks`); `-0-` (with or without trailing space) is null. `SDN_Type` is
/// null for entities, else `individual`, `vessel` or `aircraft`. A final line
/// holding only 0x1A is ignored. `alt.csv`: no header, 5 columns (`ent_num,
/// alt_num, alt_type, alt_name, alt_remarks`); each `alt_name` becomes an alias
/// of the SDN entry with the same `ent_num`, which must exist. `sha256` covers
/// the `sdn.csv` bytes followed by the `alt.csv` bytes. Non-UTF-8 fields are
/// read as Latin-1.
// Column by column against the file layout documented above, kept in one
// place so it can be read against that layout.
pub fn parse_ofac_sdn(
    list_name: &str,
    version: &str,
    sdn: ListSource<'_>,
    alt: Option<ListSource<'_>>,
) -> Result<SanctionsList, ScreeningError> {
    let file = sdn.file_name;
    let (_, mut recs) = read_records(sdn, false)?;
    drop_trailing_sub(&mut recs);

    let mut entries: Vec<ListEntry> = Vec::with_capacity(recs.len());
    let mut by_num: HashMap<u64, (usize, u64)> = HashMap::with_capacity(recs.len());
    for r in &recs {
        if r.fields.len() != SDN_FIELDS.len() {
            return Err(ScreeningError::FieldCount {
                file: file.to_string(),
                line: r.line,
                expected: SDN_FIELDS.len(),
                found: r.fields.len(),
            });
        }
        let num = parse_ent_num(file, r.line, &r.fields[0])?;
        let name = ofac_value(&r.fields[1])
            .ok_or_else(|| invalid(file, r.line, SDN_FIELDS[1], "missing name"))?;
        let kind = match ofac_value(&r.fields[2]) {
            None => "entity".to_string(),
            Some(t) => {
                let t = t.to_ascii_lowercase();
                if matches!(t.as_str(), "individual" | "vessel" | "aircraft" | "entity") {
                    t
                } else {
                    return Err(invalid(
                        file,
                        r.line,
                        SDN_FIELDS[2],
                        format!(
                            "unknown type {t:?} (expected individual, vessel, aircraft or -0-)"
                        ),
                    ));
                }
            }
        };
        let program = ofac_value(&r.fields[3]).unwrap_or_default().to_string();
        if let Some(&(_, first_line)) = by_num.get(&num) {
            return Err(ScreeningError::DuplicateId {
                file: file.to_string(),
                line: r.line,
                field: SDN_FIELDS[0].to_string(),
                id: num.to_string(),
                first_line,
            });
        }
        by_num.insert(num, (entries.len(), r.line));
        entries.push(ListEntry {
            id: num.to_string(),
            name: name.to_string(),
            aliases: Vec::new(),
            kind,
            program,
        });
    }
    if entries.is_empty() {
        return Err(ScreeningError::EmptyList {
            file: file.to_string(),
        });
    }

    let mut parts: Vec<&[u8]> = vec![sdn.bytes];
    if let Some(alt) = alt {
        parts.push(alt.bytes);
        let afile = alt.file_name;
        let (_, mut arecs) = read_records(alt, false)?;
        drop_trailing_sub(&mut arecs);
        for r in &arecs {
            if r.fields.len() != ALT_FIELDS.len() {
                return Err(ScreeningError::FieldCount {
                    file: afile.to_string(),
                    line: r.line,
                    expected: ALT_FIELDS.len(),
                    found: r.fields.len(),
                });
            }
            let num = parse_ent_num(afile, r.line, &r.fields[0])?;
            if let Some(v) = ofac_value(&r.fields[1]) {
                if v.parse::<u64>().is_err() {
                    return Err(invalid(
                        afile,
                        r.line,
                        ALT_FIELDS[1],
                        format!("not an integer: {v:?}"),
                    ));
                }
            }
            let alias = ofac_value(&r.fields[3])
                .ok_or_else(|| invalid(afile, r.line, ALT_FIELDS[3], "missing alias name"))?;
            let &(idx, _) = by_num.get(&num).ok_or_else(|| {
                invalid(
                    afile,
                    r.line,
                    ALT_FIELDS[0],
                    format!("no SDN entry with ent_num {num}"),
                )
            })?;
            let entry = &mut entries[idx];
            if entry.name != alias && !entry.aliases.iter().any(|a| a == alias) {
                entry.aliases.push(alias.to_string());
            }
        }
    }

    Ok(SanctionsList {
        name: list_name.to_string(),
        version: version.to_string(),
        sha256: sha256_hex(&parts),
        entries,
    })
}

/// Parses the generic CSV format.
///
/// The header row names the columns (any order, case-insensitive):
/// `name` and `id` are required, `aliases` (`;`-separated), `type` and
/// `program` are optional; other columns are ignored. Every record must have
/// as many fields as the header; `name` and `id` must be non-empty and ids
/// unique. `type` is lowercased (`unknown` when empty). Non-UTF-8 fields are
/// read as Latin-1.
pub fn parse_generic_csv(
    list_name: &str,
    version: &str,
    src: ListSource<'_>,
) -> Result<SanctionsList, ScreeningError> {
    let file = src.file_name;
    let (header, recs) = read_records(src, true)?;
    let header: Vec<String> = header
        .unwrap_or_default()
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let missing = |column: &str| ScreeningError::MissingColumn {
        file: file.to_string(),
        column: column.to_string(),
    };
    let c_name = col("name").ok_or_else(|| missing("name"))?;
    let c_id = col("id").ok_or_else(|| missing("id"))?;
    let c_aliases = col("aliases");
    let c_type = col("type");
    let c_program = col("program");

    let mut entries = Vec::with_capacity(recs.len());
    let mut seen: HashMap<String, u64> = HashMap::with_capacity(recs.len());
    for r in &recs {
        if r.fields.len() != header.len() {
            return Err(ScreeningError::FieldCount {
                file: file.to_string(),
                line: r.line,
                expected: header.len(),
                found: r.fields.len(),
            });
        }
        let get = |c: Option<usize>| c.map_or("", |c| r.fields[c].trim());
        let id = get(Some(c_id));
        if id.is_empty() {
            return Err(invalid(file, r.line, "id", "missing id"));
        }
        let name = get(Some(c_name));
        if name.is_empty() {
            return Err(invalid(file, r.line, "name", "missing name"));
        }
        if let Some(&first_line) = seen.get(id) {
            return Err(ScreeningError::DuplicateId {
                file: file.to_string(),
                line: r.line,
                field: "id".to_string(),
                id: id.to_string(),
                first_line,
            });
        }
        seen.insert(id.to_string(), r.line);
        let mut aliases: Vec<String> = Vec::new();
        for a in get(c_aliases).split(';').map(str::trim) {
            if !a.is_empty() && a != name && !aliases.iter().any(|x| x == a) {
                aliases.push(a.to_string());
            }
        }
        let kind = get(c_type).to_lowercase();
        entries.push(ListEntry {
            id: id.to_string(),
            name: name.to_string(),
            aliases,
            kind: if kind.is_empty() {
                "unknown".to_string()
            } else {
                kind
            },
            program: get(c_program).to_string(),
        });
    }
    if entries.is_empty() {
        return Err(ScreeningError::EmptyList {
            file: file.to_string(),
        });
    }
    Ok(SanctionsList {
        name: list_name.to_string(),
        version: version.to_string(),
        sha256: sha256_hex(&[src.bytes]),
        entries,
    })
}
