//! KYC rules that span the store and the sanctions screener: screening a
//! customer version, loading a list and re-screening everyone, resolving a
//! potential match, and the retention purge. The API layer calls these;
//! so does the retention task.

use std::sync::{Arc, RwLock};

use crate::domain::customer::{Customer, CustomerStatus, Screening, ScreeningHit, ScreeningStatus};
use crate::domain::UnixMillis;
use crate::ledger::entry::{Entry, Event, ScreeningRef};
use crate::screening::{SanctionsList, Screener};
use crate::store::{
    retry_on_conflict, Conflict, CustomerFilter, Store, StoreError, CONFLICT_ATTEMPTS,
};

/// The loaded list's screener, swapped whole when a list is loaded.
pub struct ScreeningState {
    current: RwLock<Option<Arc<Screener>>>,
    pub threshold: f64,
    /// One list load at a time, so the screener in memory is the stored
    /// list's.
    loading: tokio::sync::Mutex<()>,
    /// Screenings stored with a potential match (see [`Self::stored`]).
    pub hits: crate::metrics::Counter,
}

/// How many customers one ledger entry of a re-screen covers.
const RESCREEN_CHUNK: usize = 500;

impl ScreeningState {
    /// Builds the screener of the stored list, if one was loaded.
    pub async fn load(store: &dyn Store, threshold: f64) -> Result<Self, String> {
        let current = match store.sanctions_list().await.map_err(|e| e.to_string())? {
            Some(list) => Some(Arc::new(
                Screener::new(&list).map_err(|e| format!("stored sanctions list: {e}"))?,
            )),
            None => None,
        };
        Ok(Self {
            current: RwLock::new(current),
            threshold,
            loading: tokio::sync::Mutex::new(()),
            hits: crate::metrics::Counter::default(),
        })
    }

    pub fn screener(&self) -> Option<Arc<Screener>> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Counts the potential matches among screenings just stored.
    pub fn stored<'a>(&self, screenings: impl IntoIterator<Item = &'a Screening>) {
        let hits = screenings
            .into_iter()
            .filter(|s| s.status == ScreeningStatus::PotentialMatch)
            .count();
        self.hits.add(hits as u64);
    }

    fn replace(&self, screener: Arc<Screener>) {
        match self.current.write() {
            Ok(mut g) => *g = Some(screener),
            Err(p) => *p.into_inner() = Some(screener),
        }
    }

    /// Screens `customer` against the loaded list. The result is one
    /// revision past `previous`; a resolution of `previous` carries over
    /// when the new result hits exactly the same entries through the same
    /// fields, so a resolved false positive does not block again until
    /// something about the match changes.
    pub fn screen(
        &self,
        customer: &Customer,
        previous: Option<&Screening>,
        now: UnixMillis,
    ) -> Screening {
        let screener = self.screener();
        let revision = previous.map_or(0, |p| p.revision) + 1;
        let Some(screener) = screener else {
            return Screening {
                customer_id: customer.customer_id.clone(),
                revision,
                status: ScreeningStatus::NotScreened,
                list_name: String::new(),
                list_version: String::new(),
                list_sha256: String::new(),
                threshold: self.threshold,
                screened_at: now,
                hits: Vec::new(),
                customer_version: customer.version,
                resolution_note: String::new(),
                resolution_salt: String::new(),
                resolved_by: String::new(),
                resolved_at: None,
            };
        };
        let names = customer.screened_names();
        let queries: Vec<&str> = names.iter().map(|(_, n)| *n).collect();
        let mut hits: Vec<ScreeningHit> = screener
            .screen(&queries, self.threshold)
            .into_iter()
            .map(|h| {
                let field = names
                    .iter()
                    .find(|(_, n)| *n == h.query)
                    .map_or_else(String::new, |(f, _)| f.clone());
                ScreeningHit {
                    entry_id: h.entry_id,
                    entry_name: h.entry_name,
                    list_name: h.list_name,
                    matched_field: field,
                    score: (h.score * 1e4).round() / 1e4,
                }
            })
            .collect();
        hits.sort_by(|a, b| {
            (a.entry_id.as_str(), a.matched_field.as_str())
                .cmp(&(b.entry_id.as_str(), b.matched_field.as_str()))
        });
        let mut result = Screening {
            customer_id: customer.customer_id.clone(),
            revision,
            status: if hits.is_empty() {
                ScreeningStatus::Clear
            } else {
                ScreeningStatus::PotentialMatch
            },
            list_name: screener.list_name().to_string(),
            list_version: screener.list_version().to_string(),
            list_sha256: screener.list_sha256().to_string(),
            threshold: self.threshold,
            screened_at: now,
            hits,
            customer_version: customer.version,
            resolution_note: String::new(),
            resolution_salt: String::new(),
            resolved_by: String::new(),
            resolved_at: None,
        };
        if let Some(p) = previous {
            let resolved = matches!(
                p.status,
                ScreeningStatus::FalsePositive | ScreeningStatus::ConfirmedMatch
            );
            let same_hits = p.hits.len() == result.hits.len()
                && p.hits
                    .iter()
                    .zip(&result.hits)
                    .all(|(a, b)| a.entry_id == b.entry_id && a.matched_field == b.matched_field);
            if resolved && same_hits && !result.hits.is_empty() {
                result.status = p.status;
                result.resolution_note.clone_from(&p.resolution_note);
                result.resolution_salt.clone_from(&p.resolution_salt);
                result.resolved_by.clone_from(&p.resolved_by);
                result.resolved_at = p.resolved_at;
            }
        }
        result
    }
}

/// What loading a list did.
#[derive(Debug, Clone)]
pub struct ListLoaded {
    pub entries: usize,
    pub screened: u64,
    pub potential_matches: u64,
}

/// Stores `list`, makes it the one screening uses, and re-screens every
/// customer's newest version against it. Results that changed are written
/// in chunks, each with one ledger entry naming them.
pub async fn load_list(
    store: &dyn Store,
    state: &ScreeningState,
    list: SanctionsList,
    principal: &str,
    request_id: &str,
    now: UnixMillis,
) -> Result<ListLoaded, KycError> {
    let screener = Arc::new(Screener::new(&list).map_err(|e| KycError::Invalid(e.to_string()))?);
    let _one_at_a_time = state.loading.lock().await;
    let entry = Entry::new(
        now,
        principal,
        request_id,
        Event::SanctionsListLoaded {
            name: list.name.clone(),
            version: list.version.clone(),
            sha256: list.sha256.clone(),
            entries: list.entries.len() as u64,
        },
    );
    store.put_sanctions_list(&list, entry).await?;
    state.replace(screener);
    let mut after: Option<String> = None;
    let mut screened = 0u64;
    let mut potential = 0u64;
    loop {
        let page = store
            .list_customers(&CustomerFilter::default(), after.as_deref(), RESCREEN_CHUNK)
            .await?;
        let Some(last) = page.last() else { break };
        let next_after = last.customer_id.clone();
        let page = &page;
        // A customer changed while the chunk was screened (the only
        // conflicts a screening write reports): read the chunk's newest
        // versions and screen them again.
        let (n, p) = retry_on_conflict(
            CONFLICT_ATTEMPTS,
            |_| true,
            |attempt| async move {
                let chunk = if attempt == 1 {
                    page.clone()
                } else {
                    let mut newest = Vec::with_capacity(page.len());
                    for c in page {
                        newest.extend(store.customer(&c.customer_id).await?);
                    }
                    newest
                };
                match rescreen(store, state, &chunk, principal, request_id, now).await {
                    Err(KycError::Store(StoreError::Conflict(c))) => Ok(Err(c)),
                    r => r.map(Ok),
                }
            },
        )
        .await?
        .map_err(|c| KycError::Store(StoreError::Conflict(c)))?;
        screened += n;
        potential += p;
        after = Some(next_after);
    }
    Ok(ListLoaded {
        entries: list.entries.len(),
        screened,
        potential_matches: potential,
    })
}

async fn rescreen(
    store: &dyn Store,
    state: &ScreeningState,
    customers: &[Customer],
    principal: &str,
    request_id: &str,
    now: UnixMillis,
) -> Result<(u64, u64), KycError> {
    let mut changed = Vec::new();
    let mut potential = 0;
    let mut screened = 0;
    for c in customers {
        if c.purged {
            continue;
        }
        screened += 1;
        let previous = store.screening(&c.customer_id).await?;
        let next = state.screen(c, previous.as_ref(), now);
        if next.status == ScreeningStatus::PotentialMatch {
            potential += 1;
        }
        changed.push(next);
    }
    if changed.is_empty() {
        return Ok((0, 0));
    }
    let list_sha256 = changed
        .first()
        .map(|s| s.list_sha256.clone())
        .unwrap_or_default();
    // Only results whose outcome changed are named in the ledger; every
    // customer's stored result records the list it was screened against.
    let named: Vec<ScreeningRef> = changed
        .iter()
        .filter(|s| s.status != ScreeningStatus::Clear || s.revision == 1)
        .map(ScreeningRef::of)
        .collect();
    let entry = Entry::new(
        now,
        principal,
        request_id,
        Event::CustomersScreened {
            list_sha256,
            screened: changed.len() as u64,
            changed: named,
        },
    );
    store.put_screenings(&changed, entry).await?;
    state.stored(&changed);
    Ok((screened, potential))
}

#[derive(Debug, thiserror::Error)]
pub enum KycError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Purges the personal data of every customer CLOSED for longer than
/// `retention_millis`. Returns how many customers were purged.
pub async fn purge_due(
    store: &dyn Store,
    retention_millis: i64,
    principal: &str,
    now: UnixMillis,
) -> Result<u64, StoreError> {
    let filter = CustomerFilter {
        status: Some(CustomerStatus::Closed),
        country: None,
    };
    let mut after: Option<String> = None;
    let mut purged = 0;
    loop {
        let page = store.list_customers(&filter, after.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer_id.clone());
        for c in page {
            if c.purged || now.saturating_sub(c.updated_at) < retention_millis {
                continue;
            }
            // Versions run from 1 to the newest.
            let entry = Entry::new(
                now,
                principal,
                "",
                Event::CustomerPurged {
                    customer_id: c.customer_id.clone(),
                    versions: c.version,
                },
            );
            match store.purge_customer(&c.customer_id, c.version, entry).await {
                Ok(_) => purged += 1,
                // Changed meanwhile (a newer version, or nothing left to
                // purge): the next run looks again; no retry now.
                Err(StoreError::Conflict(
                    Conflict::CustomerChanged { .. } | Conflict::NothingToPurge,
                )) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(purged)
}
