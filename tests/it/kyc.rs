//! The KYC registry end to end: validation, history, encryption at rest,
//! sanctions screening and its effect on admission, resolution, retention.
//! Every list here is synthetic; no name belongs to a real person.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{
    after_ticks, individual, org_details, organisation, organisation_named, TestEnv, TestServer,
};
use tonic::Code;
use warden::proto;
use warden::proto::ReasonCode as Rc;

// ---------------------------------------------------------------------------
// Helpers

const SANCTIONS_CSV: &str = "name,aliases,type,program,id\n\
Ivan Petrov,Ivan Sergeyevich Petrov,individual,SYN-1,syn-1\n\
Zephyrine Holdings,Zephyrine Group,entity,SYN-2,syn-2\n\
Quillon Varga,,individual,SYN-3,syn-3\n";

/// Synthetic entries in the OFAC SDN CSV format (no header, `-0- ` nulls),
/// with an alt.csv alias.
const SDN_CSV: &str = "36,\"MARVELLI, Octavian\",\"individual\",\"SYN\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,\"synthetic\"\r\n\
37,\"BRONTIDE SHIPPING LIMITED\",-0- ,\"SYN\",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- \r\n";
const ALT_CSV: &str = "36,101,\"aka\",\"OSTRAVIK, Tavian\",-0- \r\n";

async fn load_list(
    env: &TestEnv,
    server: &TestServer,
    csv: &str,
    version: &str,
) -> proto::LoadSanctionsListResponse {
    env.trust(server)
        .await
        .load_sanctions_list(proto::LoadSanctionsListRequest {
            name: "Synthetic list".into(),
            version: version.into(),
            format: proto::SanctionsListFormat::Csv as i32,
            content: csv.as_bytes().to_vec(),
            alt_content: vec![],
        })
        .await
        .unwrap()
        .into_inner()
}

async fn register(
    env: &TestEnv,
    server: &TestServer,
    r: proto::RegisterCustomerRequest,
) -> proto::Customer {
    env.customers(server)
        .await
        .register_customer(r)
        .await
        .unwrap()
        .into_inner()
}

async fn get(env: &TestEnv, server: &TestServer, id: &str) -> proto::Customer {
    env.customers(server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: id.into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
}

fn screening_status(c: &proto::Customer) -> proto::ScreeningStatus {
    proto::ScreeningStatus::try_from(c.screening.as_ref().unwrap().status).unwrap()
}

/// The fields named by an INVALID_ARGUMENT status.
fn violated_fields(s: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    s.get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in walkdir::WalkDir::new(dir) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let bytes = std::fs::read(e.path()).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(e.path().display().to_string());
            }
        }
    }
    hits
}

// ---------------------------------------------------------------------------
// Validation

#[tokio::test]
async fn every_invalid_field_is_named_and_nothing_is_written() {
    let env = TestEnv::new();
    let server = env.start().await;
    let mut r = organisation("bad-1", proto::CustomerStatus::Pending);
    let d = r.details.as_mut().unwrap();
    d.email = "not an email".into();
    d.phone = "0301234".into();
    d.jurisdiction = "XX".into();
    d.payment_fingerprint = "4111111111111111".into();
    d.addresses[0].country = "de".into();
    d.beneficial_owners = vec![
        proto::Person {
            name: "Owner One".into(),
            nationality: "DE".into(),
            date_of_birth: "1970-02-30".into(),
            ownership_percent: 60.0,
            ..Default::default()
        },
        proto::Person {
            name: "Owner Two".into(),
            nationality: "FR".into(),
            date_of_birth: "2999-01-01".into(),
            ownership_percent: 50.0,
            ..Default::default()
        },
    ];
    d.verification = Some(proto::Verification {
        method: "document".into(),
        evidence_sha256: "xyz".into(),
        verified_by: "kyc-team".into(),
        verified_at: None,
    });
    let err = env
        .customers(&server)
        .await
        .register_customer(r)
        .await
        .unwrap_err();
    let fields = violated_fields(&err);
    for f in [
        "details.email",
        "details.phone",
        "details.jurisdiction",
        "details.payment_fingerprint",
        "details.addresses[0].country",
        "details.beneficial_owners[0].date_of_birth",
        "details.beneficial_owners[1].date_of_birth",
        "details.beneficial_owners",
        "details.verification.evidence_sha256",
        "details.verification.verified_at",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
    let missing = env
        .customers(&server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: "bad-1".into(),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn required_fields_depend_on_the_kind() {
    let env = TestEnv::new();
    let server = env.start().await;
    // An organisation without registration data, with an individual's field.
    let mut r = organisation("org-1", proto::CustomerStatus::Pending);
    let d = r.details.as_mut().unwrap();
    d.registration_number.clear();
    d.legal_form.clear();
    d.jurisdiction.clear();
    d.date_of_birth = "1990-01-01".into();
    d.addresses.clear();
    d.declared_purpose.clear();
    let err = env
        .customers(&server)
        .await
        .register_customer(r)
        .await
        .unwrap_err();
    let fields = violated_fields(&err);
    for f in [
        "details.registration_number",
        "details.legal_form",
        "details.jurisdiction",
        "details.date_of_birth",
        "details.addresses",
        "details.declared_purpose",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
    }
    // An individual without a date of birth, with an organisation's field.
    let mut r = individual("ind-1");
    let d = r.details.as_mut().unwrap();
    d.date_of_birth.clear();
    d.legal_form = "GmbH".into();
    let err = env
        .customers(&server)
        .await
        .register_customer(r)
        .await
        .unwrap_err();
    let fields = violated_fields(&err);
    assert!(
        fields.contains(&"details.date_of_birth".to_string()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"details.legal_form".to_string()),
        "{fields:?}"
    );
    // The valid individual registers.
    let c = register(&env, &server, individual("ind-2")).await;
    assert_eq!(c.version, 1);
    assert_eq!(c.details.unwrap().date_of_birth, "1985-04-12");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// History

#[tokio::test]
async fn updates_write_versions_and_as_of_returns_the_one_in_force() {
    let mut env = TestEnv::new();
    let clock = env.manual_clock();
    let server = env.start().await;
    let v1 = register(
        &env,
        &server,
        organisation_named("hist-1", "First Name Ltd", proto::CustomerStatus::Verified),
    )
    .await;
    clock.advance(Duration::from_millis(20));
    let mut client = env.customers(&server).await;
    let v2 = client
        .update_customer(proto::UpdateCustomerRequest {
            customer_id: "hist-1".into(),
            expected_version: 1,
            legal_name: "Second Name Ltd".into(),
            country: "DE".into(),
            details: Some(org_details()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.legal_name, "Second Name Ltd");
    assert_eq!(
        v2.status,
        proto::CustomerStatus::Verified as i32,
        "status is kept"
    );
    // A stale expected version changes nothing.
    let stale = client
        .update_customer(proto::UpdateCustomerRequest {
            customer_id: "hist-1".into(),
            expected_version: 1,
            legal_name: "Third Name Ltd".into(),
            country: "DE".into(),
            details: Some(org_details()),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    // An invalid update names its field and changes nothing.
    let mut bad = org_details();
    bad.email = "nope".into();
    let invalid = client
        .update_customer(proto::UpdateCustomerRequest {
            customer_id: "hist-1".into(),
            expected_version: 0,
            legal_name: "Third Name Ltd".into(),
            country: "DE".into(),
            details: Some(bad),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&invalid), vec!["details.email".to_string()]);
    assert_eq!(get(&env, &server, "hist-1").await.version, 2);

    let at = |c: &proto::Customer| c.updated_at.unwrap();
    let as_of = |t: prost_types::Timestamp| {
        let mut client = client.clone();
        async move {
            client
                .get_customer(proto::GetCustomerRequest {
                    customer_id: "hist-1".into(),
                    as_of: Some(t),
                })
                .await
        }
    };
    let first = as_of(at(&v1)).await.unwrap().into_inner();
    assert_eq!(
        (first.version, first.legal_name.as_str()),
        (1, "First Name Ltd")
    );
    let later = as_of(at(&v2)).await.unwrap().into_inner();
    assert_eq!(later.version, 2);
    let before = prost_types::Timestamp {
        seconds: at(&v1).seconds - 3600,
        nanos: 0,
    };
    assert_eq!(as_of(before).await.unwrap_err().code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn list_customers_pages_and_filters_by_status_and_country() {
    let env = TestEnv::new();
    let server = env.start().await;
    for i in 0..5 {
        register(
            &env,
            &server,
            organisation(&format!("lc-{i}"), proto::CustomerStatus::Verified),
        )
        .await;
    }
    let mut fr = organisation("lc-fr", proto::CustomerStatus::Pending);
    fr.country = "FR".into();
    register(&env, &server, fr).await;
    let mut client = env.customers(&server).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_customers(proto::ListCustomersRequest {
                page_size: 2,
                page_token: token.clone(),
                status: 0,
                country: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.customers.len() <= 2);
        seen.extend(page.customers.into_iter().map(|c| c.customer_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["lc-0", "lc-1", "lc-2", "lc-3", "lc-4", "lc-fr"]);
    let only = |status: proto::CustomerStatus, country: &str| {
        let mut client = client.clone();
        let country = country.to_string();
        async move {
            client
                .list_customers(proto::ListCustomersRequest {
                    page_size: 100,
                    page_token: String::new(),
                    status: status as i32,
                    country,
                })
                .await
                .unwrap()
                .into_inner()
                .customers
                .into_iter()
                .map(|c| c.customer_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(only(proto::CustomerStatus::Pending, "").await, ["lc-fr"]);
    assert_eq!(
        only(proto::CustomerStatus::Unspecified, "FR").await,
        ["lc-fr"]
    );
    assert_eq!(
        only(proto::CustomerStatus::Verified, "FR").await,
        Vec::<String>::new()
    );
    let bad = client
        .list_customers(proto::ListCustomersRequest {
            page_size: 5000,
            page_token: String::new(),
            status: 0,
            country: "France".into(),
        })
        .await
        .unwrap_err();
    let fields = violated_fields(&bad);
    assert!(fields.contains(&"page_size".to_string()) && fields.contains(&"country".to_string()));
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Encryption at rest

#[tokio::test]
async fn personal_data_is_in_no_file_under_the_data_directory() {
    let env = TestEnv::new();
    let server = env.start().await;
    let mut r = organisation_named(
        "enc-1",
        "Xylocarpa Vendramin Trading",
        proto::CustomerStatus::Verified,
    );
    let d = r.details.as_mut().unwrap();
    d.email = "vendramin.kyc@example.net".into();
    d.aliases = vec!["Quasselbrink Aliasname".into()];
    d.beneficial_owners = vec![proto::Person {
        name: "Perpetua Ombrellino".into(),
        nationality: "IT".into(),
        date_of_birth: "1966-06-06".into(),
        id_number: "YB7734021".into(),
        id_issuing_country: "IT".into(),
        ownership_percent: 75.0,
        role: String::new(),
    }];
    register(&env, &server, r).await;
    // A second version and a status change with a reason.
    env.customers(&server)
        .await
        .set_customer_status(proto::SetCustomerStatusRequest {
            customer_id: "enc-1".into(),
            status: proto::CustomerStatus::Suspended as i32,
            reason: "Ombrellino passport expired".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        get(&env, &server, "enc-1").await.legal_name,
        "Xylocarpa Vendramin Trading"
    );
    server.stop().await;
    // The search does read the store: the customer id, which is not
    // personal data, is there in the clear.
    assert!(!files_containing(&env.config.data_dir, b"enc-1").is_empty());
    for secret in [
        "Xylocarpa",
        "Vendramin",
        "vendramin.kyc@example.net",
        "Quasselbrink",
        "Ombrellino",
        "YB7734021",
    ] {
        let found = files_containing(&env.config.data_dir, secret.as_bytes());
        assert!(found.is_empty(), "{secret:?} found in {found:?}");
    }
    // The record opens again after a restart.
    let server = env.start().await;
    assert_eq!(
        get(&env, &server, "enc-1")
            .await
            .details
            .unwrap()
            .beneficial_owners[0]
            .name,
        "Perpetua Ombrellino"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_key_fails_closed_and_rotation_keeps_old_versions_readable() {
    let env = TestEnv::new();
    let server = env.start().await;
    let registered = register(
        &env,
        &server,
        organisation("key-1", proto::CustomerStatus::Verified),
    )
    .await;
    server.stop().await;
    let key_file = env.config.kyc.pii_key_file.clone();
    let original = std::fs::read_to_string(&key_file).unwrap();

    // Same key id, different key: refuses to start, naming the key.
    warden::pii::Keyring::generate(&key_file, "test-1").unwrap();
    let err = warden::server::build_app(&env.config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("\"test-1\"") && err.contains("does not open"),
        "{err}"
    );
    // A key file without the key id that sealed the data.
    warden::pii::Keyring::generate(&key_file, "other").unwrap();
    let err = warden::server::build_app(&env.config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not in the key file"), "{err}");

    // Rotation: append a key; new versions are sealed with it, old ones
    // still open.
    std::fs::write(&key_file, &original).unwrap();
    warden::pii::Keyring::rotate(&key_file, "test-2").unwrap();
    let server = env.start().await;
    env.customers(&server)
        .await
        .set_customer_status(proto::SetCustomerStatusRequest {
            customer_id: "key-1".into(),
            status: proto::CustomerStatus::Suspended as i32,
            reason: String::new(),
        })
        .await
        .unwrap();
    let mut client = env.customers(&server).await;
    let v1 = client
        .get_customer(proto::GetCustomerRequest {
            customer_id: "key-1".into(),
            as_of: Some(registered.updated_at.unwrap()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v1.version, v1.legal_name.as_str()), (1, "key-1 Ltd"));
    assert_eq!(get(&env, &server, "key-1").await.version, 2);
    server.stop().await;
    // Without the new key the newest version (sealed by it) does not open.
    std::fs::write(&key_file, &original).unwrap();
    let err = warden::server::build_app(&env.config)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("\"test-2\""), "{err}");
}

// ---------------------------------------------------------------------------
// Screening

#[tokio::test]
async fn screening_hits_exact_reordered_accented_and_misspelled_names_only() {
    let env = TestEnv::new();
    let server = env.start().await;
    let loaded = load_list(&env, &server, SANCTIONS_CSV, "2026-11-01").await;
    assert_eq!(loaded.entries, 3);
    assert_eq!(loaded.sha256.len(), 64);
    let cases = [
        ("exact", "Zephyrine Holdings", true),
        ("reordered", "Petrov Ivan", true),
        ("accented", "Ívan Petróv", true),
        ("misspelled", "Quillon Vargas", true),
        ("alias", "Zephyrine Group", true),
        ("unrelated-1", "Northwind Analytics", false),
        ("unrelated-2", "Ivana Mueller", false),
        ("unrelated-3", "Blue Harbour Systems", false),
    ];
    for (id, name, hit) in cases {
        let c = register(
            &env,
            &server,
            organisation_named(id, name, proto::CustomerStatus::Verified),
        )
        .await;
        let s = c.screening.as_ref().unwrap();
        assert_eq!(s.list_name, "Synthetic list");
        assert_eq!(s.list_version, "2026-11-01");
        assert_eq!(s.list_sha256, loaded.sha256);
        let want = if hit {
            proto::ScreeningStatus::PotentialMatch
        } else {
            proto::ScreeningStatus::Clear
        };
        assert_eq!(screening_status(&c), want, "{name}: {s:?}");
        if hit {
            assert_eq!(s.hits[0].matched_field, "legal_name");
            assert!(s.hits[0].score >= 0.9, "{s:?}");
        }
    }
    // Beneficial owners are screened too.
    let mut r = organisation_named(
        "owned",
        "Harmless Name Ltd",
        proto::CustomerStatus::Verified,
    );
    r.details.as_mut().unwrap().beneficial_owners = vec![proto::Person {
        name: "Ivan Petrov".into(),
        nationality: "CY".into(),
        date_of_birth: "1971-03-03".into(),
        ownership_percent: 40.0,
        ..Default::default()
    }];
    let c = register(&env, &server, r).await;
    assert_eq!(screening_status(&c), proto::ScreeningStatus::PotentialMatch);
    assert_eq!(
        c.screening.unwrap().hits[0].matched_field,
        "details.beneficial_owners[0].name"
    );
    server.stop().await;
}

/// A list whose names could be dodged with invisible characters, look-alike
/// letters or another script.
const LOOKALIKE_CSV: &str = "name,aliases,type,program,id\n\
Dravon Ulmekk,,individual,SYN-L,syn-l1\n\
Велимир Ставрак,,individual,SYN-L,syn-l2\n";

#[tokio::test]
async fn look_alike_and_other_script_spellings_are_potential_matches_that_deny_admission() {
    let env = TestEnv::new();
    let server = env.start().await;
    load_list(&env, &server, LOOKALIKE_CSV, "2026-12-01").await;
    let leaf = env.leaf();
    let cases = [
        ("cyrillic-a-o", "Dr\u{430}v\u{43e}n Ulmekk", "syn-l1"),
        ("cyrillic", "Дравон Улмекк", "syn-l1"),
        ("greek", "Δράβον Ουλμέκκ", "syn-l1"),
        ("latin-of-cyrillic", "Velimir Stavrak", "syn-l2"),
    ];
    for (id, name, entry) in cases {
        let c = register(
            &env,
            &server,
            organisation_named(id, name, proto::CustomerStatus::Verified),
        )
        .await;
        assert_eq!(
            screening_status(&c),
            proto::ScreeningStatus::PotentialMatch,
            "{name}: {:?}",
            c.screening
        );
        let hit = &c.screening.as_ref().unwrap().hits[0];
        assert_eq!(
            (hit.entry_id.as_str(), hit.matched_field.as_str()),
            (entry, "legal_name")
        );
        let r = env.admit_chain(&server, id, &env.chain(&leaf)).await;
        assert_eq!(r.decision, proto::Decision::Deny as i32, "{name}");
        let codes: Vec<i32> = r.reasons.iter().map(|x| x.code).collect();
        assert_eq!(codes, vec![Rc::ScreeningUnresolved as i32], "{name}: {r:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn invisible_characters_in_screened_names_are_refused_and_nothing_is_stored() {
    let env = TestEnv::new();
    let server = env.start().await;
    load_list(&env, &server, LOOKALIKE_CSV, "2026-12-01").await;
    let person = |name: &str| proto::Person {
        name: name.into(),
        nationality: "DE".into(),
        date_of_birth: "1971-03-03".into(),
        ownership_percent: 40.0,
        ..Default::default()
    };
    for (i, c) in ['\u{200b}', '\u{200d}', '\u{ad}', '\u{2060}']
        .into_iter()
        .enumerate()
    {
        let dodged = format!("Dra{c}von Ulmekk");
        let id = format!("dodge-{i}");
        let mut r = organisation_named(&id, &dodged, proto::CustomerStatus::Verified);
        let d = r.details.as_mut().unwrap();
        d.aliases = vec![dodged.clone()];
        d.beneficial_owners = vec![person(&dodged)];
        d.key_personnel = vec![person(&dodged)];
        let err = env
            .customers(&server)
            .await
            .register_customer(r)
            .await
            .unwrap_err();
        let mut fields = violated_fields(&err);
        fields.sort();
        assert_eq!(
            fields,
            [
                "details.aliases[0]",
                "details.beneficial_owners[0].name",
                "details.key_personnel[0].name",
                "legal_name",
            ],
            "U+{:04X}",
            u32::from(c)
        );
        let missing = env
            .customers(&server)
            .await
            .get_customer(proto::GetCustomerRequest {
                customer_id: id,
                as_of: None,
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    }
    // An update cannot slip one in either.
    register(
        &env,
        &server,
        organisation_named(
            "plain",
            "Harmless Name Ltd",
            proto::CustomerStatus::Verified,
        ),
    )
    .await;
    let err = env
        .customers(&server)
        .await
        .update_customer(proto::UpdateCustomerRequest {
            customer_id: "plain".into(),
            expected_version: 0,
            legal_name: "Dra\u{200b}von Ulmekk".into(),
            country: "DE".into(),
            details: Some(org_details()),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["legal_name"]);
    let c = get(&env, &server, "plain").await;
    assert_eq!((c.legal_name.as_str(), c.version), ("Harmless Name Ltd", 1));
    // Nor a screening resolution's note.
    register(
        &env,
        &server,
        organisation_named("listed", "Dravon Ulmekk", proto::CustomerStatus::Verified),
    )
    .await;
    let err = env
        .customers(&server)
        .await
        .resolve_screening(proto::ResolveScreeningRequest {
            customer_id: "listed".into(),
            resolution: proto::ScreeningResolution::FalsePositive as i32,
            note: "different\u{200b} person".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["note"]);
    let c = get(&env, &server, "listed").await;
    assert_eq!(screening_status(&c), proto::ScreeningStatus::PotentialMatch);
    server.stop().await;
}

#[tokio::test]
async fn ofac_sdn_lists_load_with_their_aliases() {
    let env = TestEnv::new();
    let server = env.start().await;
    let r = env
        .trust(&server)
        .await
        .load_sanctions_list(proto::LoadSanctionsListRequest {
            name: "SDN (synthetic)".into(),
            version: "v1".into(),
            format: proto::SanctionsListFormat::OfacSdn as i32,
            content: SDN_CSV.as_bytes().to_vec(),
            alt_content: ALT_CSV.as_bytes().to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entries, 2);
    let c = register(
        &env,
        &server,
        organisation_named("sdn-1", "Tavian Ostravik", proto::CustomerStatus::Verified),
    )
    .await;
    assert_eq!(screening_status(&c), proto::ScreeningStatus::PotentialMatch);
    assert_eq!(c.screening.unwrap().hits[0].entry_id, "36");
    let c = register(
        &env,
        &server,
        organisation_named(
            "sdn-2",
            "Brontide Shipping",
            proto::CustomerStatus::Verified,
        ),
    )
    .await;
    assert_eq!(screening_status(&c), proto::ScreeningStatus::PotentialMatch);
    // A malformed list names the problem and changes nothing.
    let bad = env
        .trust(&server)
        .await
        .load_sanctions_list(proto::LoadSanctionsListRequest {
            name: "broken".into(),
            version: "v2".into(),
            format: proto::SanctionsListFormat::Csv as i32,
            content: b"name,aliases\nonly two columns,x\n".to_vec(),
            alt_content: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), vec!["content".to_string()]);
    let c = register(
        &env,
        &server,
        organisation_named(
            "sdn-3",
            "Octavian Marvelli",
            proto::CustomerStatus::Verified,
        ),
    )
    .await;
    assert_eq!(
        c.screening.unwrap().list_version,
        "v1",
        "the old list stays loaded"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_list_load_rescreens_customers_blocks_renewal_until_resolved() {
    let env = TestEnv::new();
    let server = env.start().await;
    register(
        &env,
        &server,
        organisation_named(
            "renew-1",
            "Zephyrine Holdings",
            proto::CustomerStatus::Verified,
        ),
    )
    .await;
    register(
        &env,
        &server,
        organisation_named(
            "renew-2",
            "Quillon Varga Ltd",
            proto::CustomerStatus::Verified,
        ),
    )
    .await;
    let mut admission = env.admission(&server).await;
    let leaf = env.leaf();
    let mut deployments = Vec::new();
    for id in ["renew-1", "renew-2"] {
        let r = admission
            .admit(env.admit_request(id, &env.chain(&leaf)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision, proto::Decision::Allow as i32, "{r:?}");
        deployments.push(r.deployment_id);
    }
    // Not screened before any list is loaded.
    assert_eq!(
        screening_status(&get(&env, &server, "renew-1").await),
        proto::ScreeningStatus::NotScreened
    );
    let loaded = load_list(&env, &server, SANCTIONS_CSV, "v1").await;
    assert_eq!(loaded.customers_screened, 2);
    assert_eq!(loaded.potential_matches, 2);
    let renewer = admission.clone();
    let renew = |id: String| {
        let mut a = renewer.clone();
        async move {
            a.renew(proto::RenewRequest {
                deployment_id: id,
                endpoints: vec![],
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    for d in &deployments {
        let r = renew(d.clone()).await;
        assert_eq!(r.decision, proto::Decision::Deny as i32);
        let codes: Vec<i32> = r.reasons.iter().map(|x| x.code).collect();
        assert_eq!(codes, vec![Rc::ScreeningUnresolved as i32], "{r:?}");
    }
    // New admissions are denied too.
    let denied = admission
        .admit(env.admit_request("renew-1", &env.chain(&leaf)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.decision, proto::Decision::Deny as i32);

    // Resolution needs a note; a scheduler may not resolve.
    let mut kyc = env.customers(&server).await;
    let no_note = kyc
        .resolve_screening(proto::ResolveScreeningRequest {
            customer_id: "renew-1".into(),
            resolution: proto::ScreeningResolution::FalsePositive as i32,
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_note), vec!["note".to_string()]);
    let as_scheduler =
        proto::customers_client::CustomersClient::new(env.channel(&server, "scheduler").await)
            .resolve_screening(proto::ResolveScreeningRequest {
                customer_id: "renew-1".into(),
                resolution: proto::ScreeningResolution::FalsePositive as i32,
                note: "x".into(),
            })
            .await
            .unwrap_err();
    assert_eq!(as_scheduler.code(), Code::PermissionDenied);

    // False positive: renewals work again, and stay working on a reload of
    // the same list.
    let c = kyc
        .resolve_screening(proto::ResolveScreeningRequest {
            customer_id: "renew-1".into(),
            resolution: proto::ScreeningResolution::FalsePositive as i32,
            note: "different registration number".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let s = c.screening.unwrap();
    assert_eq!(s.status, proto::ScreeningStatus::FalsePositive as i32);
    assert_eq!(s.resolution_note, "different registration number");
    assert!(s.resolved_by.contains("/kyc/"), "{}", s.resolved_by);
    assert_eq!(
        renew(deployments[0].clone()).await.decision,
        proto::Decision::Allow as i32
    );
    load_list(&env, &server, SANCTIONS_CSV, "v1-again").await;
    assert_eq!(
        renew(deployments[0].clone()).await.decision,
        proto::Decision::Allow as i32
    );
    // Resolving twice is refused.
    let again = kyc
        .resolve_screening(proto::ResolveScreeningRequest {
            customer_id: "renew-1".into(),
            resolution: proto::ScreeningResolution::ConfirmedMatch as i32,
            note: "second thoughts".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    // Confirmed: the customer is suspended in the same step.
    let c = kyc
        .resolve_screening(proto::ResolveScreeningRequest {
            customer_id: "renew-2".into(),
            resolution: proto::ScreeningResolution::ConfirmedMatch as i32,
            note: "matches the listed party".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.status, proto::CustomerStatus::Suspended as i32);
    assert_eq!(
        c.screening.unwrap().status,
        proto::ScreeningStatus::ConfirmedMatch as i32
    );
    let r = renew(deployments[1].clone()).await;
    let mut codes: Vec<i32> = r.reasons.iter().map(|x| x.code).collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        vec![
            Rc::CustomerNotVerified as i32,
            Rc::ScreeningUnresolved as i32
        ]
    );

    // A list without the name clears the screening.
    load_list(
        &env,
        &server,
        "name,aliases,type,program,id\nSomeone Else,,individual,X,x-1\n",
        "v2",
    )
    .await;
    assert_eq!(
        screening_status(&get(&env, &server, "renew-1").await),
        proto::ScreeningStatus::Clear
    );
    // The list survives a restart.
    server.stop().await;
    let server = env.start().await;
    let c = register(
        &env,
        &server,
        organisation_named("after", "Someone Else", proto::CustomerStatus::Verified),
    )
    .await;
    assert_eq!(screening_status(&c), proto::ScreeningStatus::PotentialMatch);
    assert_eq!(c.screening.unwrap().list_version, "v2");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Retention

#[tokio::test]
async fn closed_customers_are_purged_to_tombstones_whose_entries_still_verify() {
    let mut env = TestEnv::new();
    env.config.kyc.retention_days = 0;
    env.config.kyc.purge_interval_seconds = 1;
    let clock = env.manual_clock();
    let server = env.start().await;
    let r = organisation_named(
        "purge-1",
        "Gwendolyn Thrushcross",
        proto::CustomerStatus::Verified,
    );
    let c = register(&env, &server, r).await;
    register(
        &env,
        &server,
        organisation("keep-1", proto::CustomerStatus::Verified),
    )
    .await;
    let registered_at = c.updated_at.unwrap();
    // Closed later than registered, so `as_of` tells the versions apart.
    clock.advance(Duration::from_millis(10));
    env.customers(&server)
        .await
        .set_customer_status(proto::SetCustomerStatusRequest {
            customer_id: "purge-1".into(),
            status: proto::CustomerStatus::Closed as i32,
            reason: "account closed".into(),
        })
        .await
        .unwrap();
    let interval = Duration::from_secs(env.config.kyc.purge_interval_seconds);
    let (e, s) = (&env, &server);
    after_ticks(
        &clock,
        interval,
        "retention purges purge-1",
        || async move { get(e, s, "purge-1").await.purged },
    )
    .await;
    let purged = get(&env, &server, "purge-1").await;
    assert_eq!(purged.legal_name, "");
    assert_eq!(purged.status_reason, "");
    assert!(purged.details.is_none());
    assert_eq!(purged.status, proto::CustomerStatus::Closed as i32);
    assert_eq!(purged.version, 2);
    // Every version remains, as a tombstone.
    let v1 = env
        .customers(&server)
        .await
        .get_customer(proto::GetCustomerRequest {
            customer_id: "purge-1".into(),
            as_of: Some(registered_at),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v1.version, v1.purged), (1, true));
    // Other customers are untouched.
    assert!(!get(&env, &server, "keep-1").await.purged);
    // The ledger still holds the registration entry, which still proves
    // against a signed checkpoint.
    let mut ledger = proto::ledger_client::LedgerClient::new(env.channel(&server, "auditor").await);
    // The purge's state is visible once committed; its entry is signed into
    // a checkpoint just after. Wait for the checkpoint that covers it.
    let mut signed = None;
    for _ in 0..50 {
        let cp = ledger
            .get_checkpoint(proto::GetCheckpointRequest { first_size: 0 })
            .await
            .unwrap()
            .into_inner();
        let checkpoint =
            warden::ledger::checkpoint::Checkpoint::open(&cp.checkpoint, &env.ledger).unwrap();
        let entries = ledger
            .get_entries(proto::GetEntriesRequest {
                start: 0,
                count: u32::try_from(checkpoint.size).unwrap(),
            })
            .await
            .unwrap()
            .into_inner()
            .entries;
        if entries
            .iter()
            .any(|e| String::from_utf8_lossy(&e.data).contains("\"kind\":\"customer_purged\""))
        {
            signed = Some((checkpoint, entries));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (checkpoint, entries) = signed.expect("no checkpoint covered the purge within 5 s");
    let registration = entries
        .iter()
        .find(|e| {
            let s = String::from_utf8_lossy(&e.data);
            s.contains("customer_registered") && s.contains("purge-1")
        })
        .unwrap();
    let proof = ledger
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            index: registration.index,
            tree_size: checkpoint.size,
        })
        .await
        .unwrap()
        .into_inner();
    let hashes: Vec<[u8; 32]> = proof
        .proof
        .iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect();
    warden::ledger::tree::check_record(
        &hashes,
        checkpoint.size,
        checkpoint.root,
        registration.index,
        warden::ledger::tree::leaf_hash(&registration.data),
    )
    .unwrap();
    server.stop().await;
    let found = files_containing(&env.config.data_dir, b"Thrushcross");
    assert!(found.is_empty(), "{found:?}");
}
