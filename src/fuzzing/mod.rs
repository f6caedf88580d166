//! Entry points for the coverage-guided fuzz targets in `fuzz/`.
//!
//! Each function takes arbitrary bytes, feeds them to one parser that reads
//! untrusted input, and panics only if warden itself would: a parser must
//! answer every input with a value or an error. Where a parser's answer
//! promises something (a verified certificate's claims are valid, a parsed
//! checkpoint reads back the same), the function asserts it too.
//!
//! The fuzz targets and `tests/it/fuzz_corpus.rs` both call these functions,
//! so every committed corpus file is replayed by `cargo test` without a
//! fuzzer. Fixed inputs (a trust bundle, a ledger key, a verification time)
//! are built deterministically so a corpus means the same on every run.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest as _, Sha256};

use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::note::{Signer, Verifier as NoteVerifier};
use crate::pki::verify::certificate_claims;
use crate::pki::{Profile, TrustBundle, Verifier};
use crate::screening::{parse_generic_csv, parse_ofac_sdn, ListSource, SanctionsList, Screener};

/// The regulator root the chain target trusts (generated once; see
/// `regenerate_fixtures` in `tests/it/fuzz_corpus.rs`).
pub const CHAIN_ROOT_PEM: &str = include_str!("root.pem");
/// Current CRLs of the root and of the evaluator CA under it (DER).
pub const CHAIN_CRLS: [&[u8]; 2] = [
    include_bytes!("root.crl.der"),
    include_bytes!("evaluator.crl.der"),
];
/// The time every chain is verified at: 2027-01-01T00:00:00Z, inside the
/// validity of the fixture certificates and CRLs.
pub const CHAIN_NOW_UNIX: u64 = 1_798_761_600;

/// Name and seed of the fixed ledger key the note and checkpoint targets
/// verify against.
pub const NOTE_KEY_NAME: &str = "warden.fuzz/ledger";
pub const NOTE_KEY_SEED: [u8; 32] = [7; 32];

/// End marker of a backup file, for [`backup`]'s sealed variant.
const BACKUP_END_MARKER: &[u8; 8] = b"WBKEND01";

/// The fixed ledger signer ([`NOTE_KEY_NAME`], [`NOTE_KEY_SEED`]).
pub fn note_signer() -> Signer {
    match Signer::from_seed(NOTE_KEY_NAME, NOTE_KEY_SEED) {
        Ok(s) => s,
        Err(e) => panic!("fixed fuzz key: {e}"),
    }
}

fn note_verifier() -> &'static NoteVerifier {
    static V: OnceLock<NoteVerifier> = OnceLock::new();
    V.get_or_init(|| note_signer().verifier())
}

/// The trust bundle of the chain target: the fixture root and its CRLs.
pub fn chain_bundle() -> &'static TrustBundle {
    static B: OnceLock<TrustBundle> = OnceLock::new();
    B.get_or_init(|| {
        let mut bundle = match TrustBundle::from_roots_pem(CHAIN_ROOT_PEM) {
            Ok(b) => b,
            Err(e) => panic!("fixture root: {e}"),
        };
        for crl in CHAIN_CRLS {
            if let Err(e) = bundle.add_crl(crl) {
                panic!("fixture CRL: {e}");
            }
        }
        bundle
    })
}

/// The evaluation-certificate extension parser: the claims of one DER
/// certificate, read without a chain (as `warden` shows a certificate the
/// ledger already binds).
pub fn cert_extensions(data: &[u8]) {
    if let Ok(claims) = certificate_claims(data, &Profile::default()) {
        if let Err(e) = claims.validate() {
            panic!("claims read from a certificate are invalid: {e}");
        }
    }
}

/// The whole-chain check against [`chain_bundle`] at [`CHAIN_NOW_UNIX`].
///
/// Input starting with `-` is a PEM chain (as the API receives it); any
/// other input is DER certificates back to back, split at each outer
/// SEQUENCE's length, leaf first.
pub fn cert_chain(data: &[u8]) {
    let verifier = Verifier::new(true);
    let now = UnixTime::since_unix_epoch(Duration::from_secs(CHAIN_NOW_UNIX));
    let profile = Profile::default();
    let check = if data.first() == Some(&b'-') {
        let Ok(pem) = std::str::from_utf8(data) else {
            return;
        };
        verifier.verify(chain_bundle(), pem, now, &profile)
    } else {
        let certs: Vec<CertificateDer<'_>> = split_der(data)
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        verifier.verify_der(chain_bundle(), &certs, now, &profile)
    };
    match (&check.verified, check.problems.is_empty()) {
        (Some(v), true) => {
            if let Err(e) = v.claims.validate() {
                panic!("a verified certificate has invalid claims: {e}");
            }
        }
        (None, false) => {}
        (v, _) => panic!(
            "a check must either verify or report problems: verified {}, problems {:?}",
            v.is_some(),
            check.problems
        ),
    }
}

/// Splits back-to-back DER values at their outer lengths (at most 8; what
/// cannot be split is the last piece).
pub fn split_der(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < 7 {
        let Some(len) = der_len(data) else { break };
        let (one, rest) = data.split_at(len);
        out.push(one);
        data = rest;
    }
    if !data.is_empty() {
        out.push(data);
    }
    out
}

/// Total length (header included) of the DER value at the start of `data`,
/// if its header is complete and it fits.
fn der_len(data: &[u8]) -> Option<usize> {
    let first = *data.get(1)?;
    let (header, body) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = data.get(2..2 + n)?;
        let body = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (2 + n, body)
    };
    let total = header.checked_add(body)?;
    (total <= data.len()).then_some(total)
}

/// Signed notes and note keys: a verifier key, a signer key, and a note
/// checked against the fixed ledger key.
pub fn signed_note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = NoteVerifier::from_text(text) {
        let again = NoteVerifier::from_text(&v.to_text());
        assert_eq!(
            again.as_ref(),
            Ok(&v),
            "a verifier key must read back as itself"
        );
    }
    if let Ok(s) = Signer::from_text(text) {
        assert_eq!(
            Signer::from_text(&s.to_text()).map(|t| t.verifier()),
            Ok(s.verifier()),
            "a signer key must read back as itself"
        );
    }
    if let Ok(body) = note_verifier().open(text) {
        assert!(
            text.starts_with(body),
            "the signed text is the note's start"
        );
    }
}

/// Checkpoints: a body, and a signed checkpoint note under the fixed key.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse_body(text) {
        assert_eq!(
            Checkpoint::parse_body(&cp.body()).as_ref(),
            Ok(&cp),
            "a checkpoint body must read back as itself"
        );
    }
    if let Ok(cp) = Checkpoint::open(text, note_verifier()) {
        assert_eq!(cp.origin, NOTE_KEY_NAME);
    }
}

/// The OFAC SDN parser: `sdn.csv`, then after the first NUL byte (if any)
/// `alt.csv`. A list that parses is indexed.
pub fn sanctions_ofac(data: &[u8]) {
    let (sdn, alt) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let sdn = ListSource {
        file_name: "sdn.csv",
        bytes: sdn,
    };
    let alt = alt.map(|bytes| ListSource {
        file_name: "alt.csv",
        bytes,
    });
    if let Ok(list) = parse_ofac_sdn("OFAC SDN", "fuzz", sdn, alt) {
        index_list(&list);
    }
}

/// The generic sanctions CSV parser. A list that parses is indexed.
pub fn sanctions_generic(data: &[u8]) {
    let src = ListSource {
        file_name: "list.csv",
        bytes: data,
    };
    if let Ok(list) = parse_generic_csv("generic", "fuzz", src) {
        index_list(&list);
    }
}

fn index_list(list: &SanctionsList) {
    assert!(!list.entries.is_empty(), "a parsed list is never empty");
    let mut ids: Vec<&str> = list.entries.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), list.entries.len(), "ids are unique");
    if let Ok(screener) = Screener::new(list) {
        assert_eq!(screener.entry_count(), list.entries.len());
    }
}

/// Customer files (`warden customer add` and `update`), then the server's
/// checks of the request they become.
pub fn customer_json(data: &[u8]) {
    use crate::api::convert::{customer_kind_from_proto, details_from_proto};
    use crate::cli::customer::{parse_file, CustomerFile, CustomerUpdateFile};
    use crate::domain::customer::validate_identity;
    use crate::proto::CustomerKind;

    // 2027-01-01, so that "in the future" means the same on every run.
    let today = (CHAIN_NOW_UNIX * 1000) as i64;
    if let Ok(file) = parse_file::<CustomerFile>("customer.json", data, "") {
        if let Ok(request) = file.into_request() {
            let kind = CustomerKind::try_from(request.kind)
                .ok()
                .and_then(customer_kind_from_proto);
            if let (Some(kind), Ok(details)) = (kind, details_from_proto(request.details)) {
                let _ =
                    validate_identity(kind, &request.legal_name, &request.country, &details, today);
            }
        }
    }
    if let Ok(file) = parse_file::<CustomerUpdateFile>("update.json", data, "") {
        let _ = file.into_request("fuzz".into(), 1);
    }
}

/// The config file (parsed, paths resolved against a directory that does
/// not exist, validated).
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ =
        crate::config::Config::from_toml_str(text, Path::new("/nonexistent/warden/warden.toml"));
}

/// The backup file reader: the bytes as they are, then sealed with a valid
/// trailer (checksum and end marker) so the structure parser behind the
/// checksum is reached too.
pub fn backup(data: &[u8]) {
    use crate::store::backup::verify_bytes;
    let name = Path::new("fuzz.wbk");
    if let Ok(s) = verify_bytes(name, data) {
        assert_eq!(s.bytes, data.len() as u64);
    }
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&Sha256::digest(data));
    sealed.extend_from_slice(BACKUP_END_MARKER);
    if let Ok(s) = verify_bytes(name, &sealed) {
        assert_eq!(s.bytes, sealed.len() as u64);
    }
}

/// The licence parser, and the verifier over a note signed with the fixed
/// key: a body that parses reads back as itself (one spelling per licence),
/// and a note that verifies is a licence that parses.
pub fn licence(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(l) = crate::licence::parse(text) {
        let body = l.body();
        assert_eq!(body.as_deref(), Ok(text), "a licence has one spelling");
    }
    let expect = crate::licence::Expectations::default();
    if let Ok(l) = crate::licence::verify(text, note_verifier(), 0, Duration::ZERO, &expect) {
        assert!(l.expires_at > 0, "a verified licence has not expired");
    }
    // The same text as the body of a note the fixed key signed.
    if let Ok(note) = note_signer().sign(text) {
        let verified = crate::licence::verify(&note, note_verifier(), 0, Duration::ZERO, &expect);
        assert_eq!(
            verified.is_ok(),
            crate::licence::parse(text).is_ok_and(|l| l.expires_at > 0),
            "a signed note verifies exactly when its body is a current licence"
        );
    }
}

/// One fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz target and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("cert_extensions", cert_extensions),
    ("cert_chain", cert_chain),
    ("signed_note", signed_note),
    ("checkpoint", checkpoint),
    ("sanctions_ofac", sanctions_ofac),
    ("sanctions_generic", sanctions_generic),
    ("customer_json", customer_json),
    ("config_toml", config_toml),
    ("backup", backup),
    ("licence", licence),
];
