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
//!
//! * this module — the subcommands and `run`, which sends each request.
//! * `file` — the record files, their parsing and their conversion to and
//!   from the proto messages.
//! * `render` — how a record and a list are printed (text and `--json`).

use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;

use super::commands::status_error;
use super::ClientArgs;
use crate::api::convert::timestamp;
use crate::proto;
use crate::proto::customers_client::CustomersClient;

mod file;
mod render;

pub(crate) use file::parse_file;
pub(super) use file::read_input;
pub use file::{
    parse_rfc3339, AddressFile, CustomerFile, CustomerUpdateFile, DetailsFile, Kind, PersonFile,
    Risk, Status, VerificationFile,
};
use render::{customer_view, print_customer, print_list, CustomerView};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resolution {
    /// The customer is not the listed party.
    FalsePositive,
    /// The customer is the listed party (suspends it).
    #[value(alias = "confirmed-match")]
    Confirmed,
}

const UPDATE_HINT: &str =
    "(an update file holds legal_name, country and details; see `warden customer update --help`)";
const ADD_HINT: &str = "(see `warden customer add --help` for the file format)";

async fn connect(c: &ClientArgs) -> anyhow::Result<CustomersClient<tonic::transport::Channel>> {
    Ok(CustomersClient::new(c.connect("kyc").await?))
}

// One arm per subcommand, each a request built (and checked) and sent; they
// share the error mapping and the printing at the end.
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
