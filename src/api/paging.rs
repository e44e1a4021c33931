//! Cursor pagination of the management lists: `?limit=` (default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]) and `?cursor=`, the opaque `next_cursor` of the previous page (null on the
//! last). Lists are ordered by creation time, then id, so paging while items are added never
//! shows an existing item twice or skips one.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::store::Page;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: u32 = 1000;

/// A page of a list in the success envelope, with the cursor of the next page (null on the
/// last).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageOf<T> {
    /// Always `true`.
    ok: bool,
    data: Vec<T>,
    /// The `cursor` of the next page; null on the last page.
    next_cursor: Option<String>,
}

impl<T> PageOf<T> {
    pub fn new(data: Vec<T>, next_cursor: Option<String>) -> Self {
        PageOf {
            ok: true,
            data,
            next_cursor,
        }
    }
}

/// The paging parameters of a list request.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page: 1 to 1000, 100 when not given.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page; the first page without it.
    cursor: Option<String>,
}

/// A validated page request: how many items the caller wants, and from where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub limit: u32,
    pub after: Option<(i64, Uuid)>,
}

impl PageQuery {
    /// The paging parameters of a query that has others too.
    pub fn new(limit: Option<String>, cursor: Option<String>) -> Self {
        PageQuery { limit, cursor }
    }

    /// The page asked for; 422 naming `limit` or `cursor` when malformed.
    pub fn wanted(&self) -> Result<Wanted, ApiError> {
        self.wanted_or(DEFAULT_LIMIT)
    }

    /// The page asked for, `default` items when no `limit` is given.
    pub fn wanted_or(&self, default: u32) -> Result<Wanted, ApiError> {
        let limit = match self.limit.as_deref() {
            None => default,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| ApiError::Validation(format!("limit: must be 1 to {MAX_LIMIT}")))?,
        };
        let after = match self.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(decode(cursor).ok_or_else(|| {
                ApiError::Validation("cursor: not a cursor this list returned".into())
            })?),
        };
        Ok(Wanted { limit, after })
    }
}

impl Wanted {
    /// The store page: one item more than asked, to tell whether another page follows.
    pub fn page(&self) -> Page {
        Page {
            after: self.after,
            limit: self.limit + 1,
        }
    }

    /// Cuts `items` (fetched with [`Wanted::page`]) to the page, returning the cursor of the
    /// next page if there is one.
    pub fn cut<T>(
        &self,
        items: &mut Vec<T>,
        position: impl Fn(&T) -> (i64, Uuid),
    ) -> Option<String> {
        if items.len() <= self.limit as usize {
            return None;
        }
        items.truncate(self.limit as usize);
        items.last().map(|last| encode(position(last)))
    }
}

/// The answer to a list call: the page `query` asks for, read by `fetch` from the store (one
/// item more than asked, to know whether another page follows), cut at `position` (an item's
/// creation time and id) and turned into its answer by `view`.
pub async fn answer<T, V, Fut>(
    query: &PageQuery,
    fetch: impl FnOnce(Page) -> Fut,
    position: impl Fn(&T) -> (i64, Uuid),
    view: impl FnMut(T) -> V,
) -> Result<axum::Json<PageOf<V>>, ApiError>
where
    Fut: std::future::Future<Output = Result<Vec<T>, crate::store::StoreError>>,
{
    let wanted = query.wanted()?;
    let mut items = fetch(wanted.page())
        .await
        .map_err(crate::manage::ManageError::from)?;
    let next_cursor = wanted.cut(&mut items, position);
    let data = items.into_iter().map(view).collect();
    Ok(axum::Json(PageOf::new(data, next_cursor)))
}

fn encode((at, id): (i64, Uuid)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at}.{id}"))
}

fn decode(cursor: &str) -> Option<(i64, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let (at, id) = text.split_once('.')?;
    Some((at.parse().ok()?, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, cursor: Option<&str>) -> PageQuery {
        PageQuery {
            limit: limit.map(str::to_string),
            cursor: cursor.map(str::to_string),
        }
    }

    #[test]
    fn limits_default_and_are_bounded_and_cursors_round_trip() {
        assert_eq!(query(None, None).wanted().unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(query(Some("1000"), None).wanted().unwrap().limit, 1000);
        for bad in ["0", "1001", "-1", "ten", ""] {
            let err = query(Some(bad), None).wanted().unwrap_err();
            assert!(err.to_string().starts_with("limit:"), "{bad}: {err}");
        }
        let id = Uuid::new_v4();
        let cursor = encode((1_795_435_200, id));
        let wanted = query(None, Some(&cursor)).wanted().unwrap();
        assert_eq!(wanted.after, Some((1_795_435_200, id)));
        for bad in ["nope", "!!", &URL_SAFE_NO_PAD.encode("12.not-a-uuid")] {
            let err = query(None, Some(bad)).wanted().unwrap_err();
            assert!(err.to_string().starts_with("cursor:"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_page_is_cut_to_its_limit_with_a_cursor_only_when_more_follow() {
        let wanted = Wanted {
            limit: 2,
            after: None,
        };
        assert_eq!(wanted.page().limit, 3);
        let ids: Vec<(i64, Uuid)> = (0..3).map(|i| (i, Uuid::new_v4())).collect();
        let mut full = ids.clone();
        let next = wanted.cut(&mut full, |x| *x).expect("a third item follows");
        assert_eq!(full, ids[..2]);
        assert_eq!(decode(&next), Some(ids[1]));
        let mut last = ids[..2].to_vec();
        assert_eq!(wanted.cut(&mut last, |x| *x), None, "the last page");
        assert_eq!(last.len(), 2);
    }
}
