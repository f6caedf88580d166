//! The one paging rule for every list call: a page holds at most the
//! requested number of items (1 to 1000, 100 when zero) and at most
//! `PAGE_BYTES` of them encoded, so that no answer approaches the message
//! limit however large the stored items are. A page cut short by either
//! bound carries a token for the rest.
//!
//! Tokens are opaque to callers: hex of the list they belong to, the
//! position after which the next page starts, and a check value. A token
//! that is not hex, is cut or altered, or belongs to another list is
//! refused as INVALID_ARGUMENT naming `page_token`. The check value only
//! catches mistakes; a token grants nothing, since every page is read with
//! the caller's own permissions and filters.

use prost::Message;

use super::status::ApiError;
use crate::domain::customer::{check_identifier, FieldViolation};
use crate::domain::limits::PAGE_BYTES;

/// Items read from the store per call while a page fills.
const FETCH_CHUNK: usize = 64;
/// Bytes of the check value at the end of a token.
const CHECK_BYTES: usize = 8;
/// Longest token accepted (hex characters); real ones are far shorter.
const MAX_TOKEN_CHARS: usize = 1024;

/// A list call's page size: 1 to 1000, 100 when zero.
pub fn limit(page_size: u32, v: &mut Vec<FieldViolation>) -> usize {
    match page_size {
        0 => 100,
        1..=1000 => page_size as usize,
        _ => {
            v.push(FieldViolation::new("page_size", "at most 1000"));
            0
        }
    }
}

/// The list a page token continues; a token of one is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Customers = 1,
    Deployments = 2,
    Orders = 3,
    AttributionRequests = 4,
}

fn check_value(raw: &[u8]) -> [u8; CHECK_BYTES] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"warden page token\0");
    h.update(raw);
    let digest = h.finalize();
    let mut out = [0u8; CHECK_BYTES];
    out.copy_from_slice(&digest[..CHECK_BYTES]);
    out
}

fn encode(list: List, position: &[u8]) -> String {
    let mut raw = Vec::with_capacity(1 + position.len() + CHECK_BYTES);
    raw.push(list as u8);
    raw.extend_from_slice(position);
    let check = check_value(&raw);
    raw.extend_from_slice(&check);
    hex::encode(raw)
}

/// The position a token of `list` carries; `None` when the token is not
/// one (not hex, cut, altered, or of another list).
fn decode(list: List, token: &str) -> Option<Vec<u8>> {
    if token.len() > MAX_TOKEN_CHARS {
        return None;
    }
    let raw = hex::decode(token).ok()?;
    if raw.len() <= 1 + CHECK_BYTES || raw[0] != list as u8 {
        return None;
    }
    let (body, check) = raw.split_at(raw.len() - CHECK_BYTES);
    (check == check_value(body)).then(|| body[1..].to_vec())
}

fn refuse(v: &mut Vec<FieldViolation>) {
    v.push(FieldViolation::new(
        "page_token",
        "not a page token of this list; pass next_page_token from the previous answer unchanged",
    ));
}

/// A token that continues `list` after the item with this id.
pub fn id_token(list: List, id: &str) -> String {
    encode(list, id.as_bytes())
}

/// The id a token of `list` continues after: `None` for no token, and
/// for a bad one (then a violation naming `page_token` is pushed).
pub fn parse_id_token(list: List, token: &str, v: &mut Vec<FieldViolation>) -> Option<String> {
    if token.is_empty() {
        return None;
    }
    let id = decode(list, token).and_then(|p| String::from_utf8(p).ok());
    let mut bad_id = Vec::new();
    if let Some(id) = &id {
        check_identifier("page_token", id, &mut bad_id);
    }
    match id {
        Some(id) if bad_id.is_empty() => Some(id),
        _ => {
            refuse(v);
            None
        }
    }
}

/// A token that continues `list` at the positions below `index`.
pub fn index_token(list: List, index: u64) -> String {
    encode(list, &index.to_be_bytes())
}

/// The index a token of `list` carries, as `parse_id_token`.
pub fn parse_index_token(list: List, token: &str, v: &mut Vec<FieldViolation>) -> Option<u64> {
    if token.is_empty() {
        return None;
    }
    match decode(list, token).and_then(|p| <[u8; 8]>::try_from(p).ok()) {
        Some(b) => Some(u64::from_be_bytes(b)),
        None => {
            refuse(v);
            None
        }
    }
}

/// The bytes an item adds to an answer as one element of a repeated
/// message field (tag, length, body).
pub fn element_bytes(body: usize) -> usize {
    1 + prost::encoding::encoded_len_varint(body as u64) + body
}

/// Room left in one answer: items up to a count and `PAGE_BYTES`.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    items: usize,
    bytes: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            items: 0,
            bytes: 0,
        }
    }

    /// Takes room for one more item of `bytes`; false, taking nothing, when
    /// the page is full. The first item always fits, so that every page
    /// makes progress.
    pub fn take(&mut self, bytes: usize) -> bool {
        let fits = self.items < self.limit
            && (self.items == 0 || self.bytes.saturating_add(bytes) <= PAGE_BYTES);
        if fits {
            self.items += 1;
            self.bytes += bytes;
        }
        fits
    }
}

/// One page of a list, read from `fetch(after, n)`, which returns up to `n`
/// stored items following the position `after` (from the start when
/// `None`) in list order. (`after` is owned, so that the future `fetch`
/// returns borrows nothing of the call it came from.) `position` names an item's position and
/// `convert` makes its wire form. Returns the page and, when items remain
/// after it, the position of its last item: the next page starts there.
pub async fn fill<S, K, T, F>(
    limit: usize,
    start: Option<K>,
    mut fetch: impl FnMut(Option<K>, usize) -> F,
    position: impl Fn(&S) -> K,
    mut convert: impl FnMut(&S) -> Result<T, ApiError>,
) -> Result<(Vec<T>, Option<K>), ApiError>
where
    T: Message,
    K: Clone,
    F: std::future::Future<Output = Result<Vec<S>, ApiError>>,
{
    let mut budget = Budget::new(limit);
    let mut page = Vec::new();
    let mut last: Option<K> = None;
    let mut after = start;
    loop {
        // One more than the page can take, to learn whether any remain.
        let want = (limit.saturating_sub(page.len()) + 1).min(FETCH_CHUNK);
        let chunk = fetch(after.clone(), want).await?;
        let exhausted = chunk.len() < want;
        for item in &chunk {
            let wire = convert(item)?;
            if !budget.take(element_bytes(wire.encoded_len())) {
                return Ok((page, last));
            }
            page.push(wire);
            last = Some(position(item));
        }
        match chunk.last() {
            Some(item) if !exhausted => after = Some(position(item)),
            _ => return Ok((page, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_every_other_string() {
        let t = id_token(List::Customers, "cust-42");
        let mut v = Vec::new();
        assert_eq!(
            parse_id_token(List::Customers, &t, &mut v).as_deref(),
            Some("cust-42")
        );
        assert_eq!(parse_id_token(List::Customers, "", &mut v), None);
        assert!(v.is_empty());
        let i = index_token(List::AttributionRequests, 77);
        assert_eq!(
            parse_index_token(List::AttributionRequests, &i, &mut v),
            Some(77)
        );
        assert!(v.is_empty());

        let mut altered = t.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        let altered = String::from_utf8(altered).unwrap();
        for bad in [
            "cust-42".to_string(),
            "zz".into(),
            "abc".into(),
            "00".into(),
            t[..t.len() - 2].to_string(),
            altered,
            id_token(List::Orders, "cust-42"),
            id_token(List::Customers, "not an id"),
            "0".repeat(2000),
        ] {
            let mut v = Vec::new();
            assert_eq!(parse_id_token(List::Customers, &bad, &mut v), None, "{bad}");
            assert_eq!(v.len(), 1, "{bad}");
            assert_eq!(v[0].field, "page_token");
        }
        for bad in [t.as_str(), "12", &index_token(List::Customers, 5)] {
            let mut v = Vec::new();
            assert_eq!(
                parse_index_token(List::AttributionRequests, bad, &mut v),
                None
            );
            assert_eq!(v.len(), 1, "{bad}");
        }
    }

    #[test]
    fn page_sizes_are_one_to_a_thousand() {
        let mut v = Vec::new();
        assert_eq!(limit(0, &mut v), 100);
        assert_eq!(limit(1000, &mut v), 1000);
        assert!(v.is_empty());
        limit(1001, &mut v);
        assert_eq!(v[0].field, "page_size");
    }

    /// Items `0..n`, each `size` bytes of payload, paged as the list calls
    /// page them.
    fn pages(n: u64, size: usize, limit: usize) -> Vec<(Vec<Vec<u8>>, Option<u64>)> {
        let store: Vec<u64> = (0..n).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let (page, next) = rt
                .block_on(fill(
                    limit,
                    start,
                    |after: Option<u64>, want| {
                        let chunk = store
                            .iter()
                            .copied()
                            .filter(|i| after.is_none_or(|a| *i > a))
                            .take(want)
                            .collect();
                        std::future::ready(Ok(chunk))
                    },
                    |i| *i,
                    |_| Ok(vec![7u8; size]),
                ))
                .unwrap();
            out.push((page, next));
            match next {
                Some(n) => start = Some(n),
                None => return out,
            }
        }
    }

    #[test]
    fn a_page_ends_at_the_count_or_the_byte_budget_and_the_pages_cover_everything() {
        // Small items: the count decides, and an exact fit ends without a
        // token.
        let p = pages(250, 10, 100);
        let sizes: Vec<usize> = p.iter().map(|(items, _)| items.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(pages(200, 10, 100).len(), 2);
        assert_eq!(pages(0, 10, 100), vec![(Vec::new(), None)]);

        // Large items: bytes decide, every page stays under the budget.
        let big = 300 * 1024;
        let p = pages(10, big, 1000);
        for (items, _) in &p {
            let bytes: usize = items.iter().map(|i| element_bytes(i.encoded_len())).sum();
            assert!(bytes <= PAGE_BYTES, "{bytes}");
        }
        let sizes: Vec<usize> = p.iter().map(|(items, _)| items.len()).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        assert_eq!(p.iter().map(|(i, _)| i.len()).sum::<usize>(), 10);

        // An item over the budget on its own still makes a page.
        let p = pages(2, PAGE_BYTES + 1, 1000);
        assert_eq!(p.iter().map(|(i, _)| i.len()).collect::<Vec<_>>(), [1, 1]);
    }
}
