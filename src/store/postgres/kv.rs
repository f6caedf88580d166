//! The tables read as the [`Kv`] the shared planner and reads use. Reads
//! are synchronous there, so each one waits here for its query on the
//! engine's own runtime; callers run them on blocking threads, never on a
//! runtime's workers.

use std::collections::VecDeque;
use std::ops::Bound;

use deadpool_postgres::GenericClient;
use tokio::runtime::Handle;
use tokio_postgres::types::ToSql;

use crate::store::kv::keys::t;
use crate::store::kv::{Direction, Item, Items, Kv};
use crate::store::StoreError;

/// Reads through one connection or transaction.
pub struct Tables<C> {
    pub(crate) client: C,
    pub(crate) runtime: Handle,
}

/// The point read of each tree, written once (every admission makes
/// several).
static GET: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    t::NAMES
        .iter()
        .map(|name| format!("SELECT value FROM {name} WHERE key = $1"))
        .collect()
});

/// Rows a range reads per query: a first small page (most ranges stop
/// after one or two rows), then larger ones.
const FIRST_PAGE: i64 = 16;
const PAGE: i64 = 512;

impl<C: GenericClient> Tables<C> {
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        tree: usize,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.runtime
            .block_on(async {
                let statement = self.client.prepare_cached(sql).await?;
                self.client.query(&statement, params).await
            })
            .map_err(|e| super::db_error(e).in_tree(t::NAMES[tree]))
    }
}

impl<C: GenericClient> Kv for Tables<C> {
    type Bytes = Vec<u8>;

    fn get(&self, tree: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self.query(&GET[tree], &[&key], tree)?;
        Ok(rows.into_iter().next().map(|row| row.get(0)))
    }

    fn range(
        &self,
        tree: usize,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        direction: Direction,
    ) -> Items<'_, Vec<u8>> {
        Box::new(Pages {
            tables: self,
            tree,
            from: from.map(<[u8]>::to_vec),
            to: to.map(<[u8]>::to_vec),
            direction,
            rows: VecDeque::new(),
            limit: FIRST_PAGE,
            done: false,
        })
    }
}

/// A range read page by page: each query continues after the last key
/// the one before returned.
struct Pages<'t, C> {
    tables: &'t Tables<C>,
    tree: usize,
    from: Bound<Vec<u8>>,
    to: Bound<Vec<u8>>,
    direction: Direction,
    rows: VecDeque<(Vec<u8>, Vec<u8>)>,
    limit: i64,
    done: bool,
}

impl<C: GenericClient> Pages<'_, C> {
    fn next_page(&mut self) -> Result<(), StoreError> {
        let mut conditions = Vec::new();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        for (bound, inclusive, exclusive) in [(&self.from, ">=", ">"), (&self.to, "<=", "<")] {
            match bound {
                Bound::Included(k) => {
                    params.push(k);
                    conditions.push(format!("key {inclusive} ${}", params.len()));
                }
                Bound::Excluded(k) => {
                    params.push(k);
                    conditions.push(format!("key {exclusive} ${}", params.len()));
                }
                Bound::Unbounded => {}
            }
        }
        params.push(&self.limit);
        let sql = format!(
            "SELECT key, value FROM {} {} ORDER BY key {} LIMIT ${}",
            t::NAMES[self.tree],
            if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            },
            match self.direction {
                Direction::Forward => "ASC",
                Direction::Reverse => "DESC",
            },
            params.len()
        );
        let rows = self.tables.query(&sql, &params, self.tree)?;
        let got = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        self.done = got < self.limit;
        self.limit = PAGE;
        self.rows
            .extend(rows.into_iter().map(|row| (row.get(0), row.get(1))));
        if let Some((last, _)) = self.rows.back() {
            match self.direction {
                Direction::Forward => self.from = Bound::Excluded(last.clone()),
                Direction::Reverse => self.to = Bound::Excluded(last.clone()),
            }
        }
        Ok(())
    }
}

impl<C: GenericClient> Iterator for Pages<'_, C> {
    type Item = Item<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rows.is_empty() && !self.done {
            if let Err(e) = self.next_page() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.rows.pop_front().map(Ok)
    }
}
